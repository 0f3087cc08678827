"""Who sees what: /metrics can move to an internal listener (METRICS_PORT) and the recent
orders, which carry customer ids, can be turned off or put behind a token; by default both
stay on the public port, as `./dev up` has always served them."""

import socket
import uuid

import httpx
import pytest

from service.api.app import create_app
from service.cache import SharedCache
from service.config import load_settings
from service.errors import ConfigError
from service.observability.metrics_listener import start_metrics_listener
from tests.fix_processes import free_port, service_process, service_url, wait_until_ready


def paths(environ: dict[str, str]) -> set[str]:
    return {route.path for route in create_app(load_settings(environ)).routes}


def test_by_default_metrics_status_and_recent_orders_are_on_the_public_port() -> None:
    assert {"/metrics", "/status", "/status.json", "/orders"} <= paths({})


def test_recent_orders_can_be_turned_off() -> None:
    assert "/orders" not in paths({"RECENT_ORDERS": "off"})


def test_an_internal_metrics_port_takes_metrics_and_status_off_the_public_one() -> None:
    assert not {"/metrics", "/status", "/status.json"} & paths({"METRICS_PORT": "9464"})


@pytest.mark.integration
def test_internal_metrics_and_a_token_for_recent_orders(service_env: dict[str, str]) -> None:
    metrics_port = free_port()
    env = {
        **service_env,
        "METRICS_PORT": str(metrics_port),
        "RECENT_ORDERS_TOKEN": "s3cret",
        "HTTP_WORKERS": "1",
    }
    url = service_url(env)
    with service_process(env, "serve"):
        wait_until_ready(url)
        assert httpx.get(f"{url}/metrics").status_code == 404
        internal = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert internal.status_code == 200
        assert "cache_entries " in internal.text
        assert httpx.get(f"http://127.0.0.1:{metrics_port}/orders").status_code == 404
        assert httpx.get(f"{url}/status").status_code == 404
        page = httpx.get(f"http://127.0.0.1:{metrics_port}/status")
        assert page.status_code == 200
        assert "content-security-policy" in page.headers
        for asset in ("status.js", "status.css", "style.css"):
            assert httpx.get(f"http://127.0.0.1:{metrics_port}/static/{asset}").status_code == 200
        document = httpx.get(f"http://127.0.0.1:{metrics_port}/status.json").json()
        assert document["postgres"] == {"up": True, "detail": "answering"}
        assert document["consumer"] is None

        refused = httpx.get(f"{url}/orders")
        assert refused.status_code == 401
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert "Authorization: Bearer" in refused.json()["detail"]
        wrong = httpx.get(f"{url}/orders", headers={"Authorization": "Bearer guess"})
        assert wrong.status_code == 401
        allowed = httpx.get(f"{url}/orders", headers={"Authorization": "Bearer s3cret"})
        assert allowed.status_code == 200
        assert isinstance(allowed.json(), list)


def test_a_metrics_port_in_use_stops_the_start_naming_the_setting() -> None:
    name = f"exposure-{uuid.uuid4().hex[:10]}"
    cache = SharedCache.create(name, 10, 1 << 20)
    try:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            settings = load_settings({"METRICS_PORT": str(port)})
            with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}"):
                start_metrics_listener(settings, cache)
    finally:
        cache.close()
        cache.unlink()
