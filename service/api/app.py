"""The application granian runs in every worker process (`service.api.app:app`): the RSGI
dispatcher in front of the Litestar app, which owns every route but the order fast path."""

from pathlib import Path

from litestar import Litestar
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig

from service.api.contract import message_schema
from service.api.dispatch import Dispatcher
from service.api.health import healthz, prometheus_metrics, readyz
from service.api.orders import get_order, recent_orders
from service.api.problems import EXCEPTION_HANDLERS
from service.api.state import lifespan
from service.api.status import status_document, status_page
from service.api.web import page, static_router
from service.config import Settings, load_settings


def create_app(settings: Settings) -> Litestar:
    # What a deployment may keep off the public port (docs/deploying.md): the recent orders
    # carry customer ids, and METRICS_PORT moves /metrics and the status page to an internal
    # listener.
    optional = [
        *([recent_orders] if settings.recent_orders else []),
        *([] if settings.metrics_port else [prometheus_metrics, status_page, status_document]),
    ]
    return Litestar(
        route_handlers=[
            get_order,
            healthz,
            readyz,
            message_schema,
            *optional,
            page,
            static_router(Path(settings.web_dir)),
        ],
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        openapi_config=OpenAPIConfig(title="Order service", version="1.0.0", path="/schema"),
        state=State({"settings": settings}),
    )


app = Dispatcher(create_app(load_settings()))
