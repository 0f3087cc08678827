"""The service under granian's Rust task implementation (`GRANIAN_TASK_IMPL=rust`), the layout
the sweep found fastest on an Intel Xeon: the page's assets, a lookup in Chromium, and the
API's answers, as under asyncio tasks. Litestar's static-files router answered 500 there."""

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.config import Settings
from service.model import encode_order
from tests.fix_db import store
from tests.fix_processes import free_port, service_process, service_url, wait_until_ready
from tests.orders import random_orders
from tests.test_web import (
    page,
    store_order,
    test_a_deep_link_opens_the_order,
    test_an_unknown_order_id_shows_not_found,
    test_searching_an_existing_order_shows_its_fields_and_items,
)

pytestmark = pytest.mark.integration

WEB = Path(__file__).resolve().parents[1] / "web"
ASSETS = ["app.js", "style.css", "status.css", "status.js"]

__all__ = [
    "page",
    "store_order",
    "test_a_deep_link_opens_the_order",
    "test_an_unknown_order_id_shows_not_found",
    "test_searching_an_existing_order_shows_its_fields_and_items",
]


@pytest.fixture(scope="module")
def api_url(settings: Settings, base_env: dict[str, str]) -> Iterator[str]:
    """`serve` with Rust tasks, its own port, cache region and metrics directory; the browser
    tests imported above run against it instead of the run's service."""
    name = f"rust-{free_port()}"
    env = {
        **base_env,
        "GRANIAN_TASK_IMPL": "rust",
        "HTTP_PORT": str(free_port()),
        "CACHE_NAME": name,
        "METRICS_DIR": f"/tmp/order-service-{name}",
    }
    url = service_url(env)
    with service_process(env, "serve"):
        wait_until_ready(url)
        yield url


@pytest.mark.parametrize("asset", ASSETS)
def test_each_asset_is_served_as_it_is_on_disk(api_url: str, asset: str) -> None:
    answer = httpx.get(f"{api_url}/static/{asset}")
    assert answer.status_code == 200
    assert answer.content == (WEB / asset).read_bytes()
    assert "default-src 'none'" in answer.headers["content-security-policy"]
    again = httpx.get(
        f"{api_url}/static/{asset}", headers={"If-None-Match": answer.headers["etag"]}
    )
    assert again.status_code == 304
    assert again.content == b""


def test_the_pages_and_the_api_answer(api_url: str, settings: Settings) -> None:
    for path in ("/", "/status"):
        assert httpx.get(f"{api_url}{path}").status_code == 200
    assert httpx.get(f"{api_url}/static/nothing.js").status_code == 404
    order = random_orders(1, seed=9501)[0]
    store(settings, [order])
    miss = httpx.get(f"{api_url}/order/{order.order_uid}")
    assert (miss.status_code, miss.content) == (200, encode_order(order))
    hit = httpx.get(f"{api_url}/order/{order.order_uid}")
    assert (hit.status_code, hit.content) == (200, encode_order(order))
    assert httpx.get(f"{api_url}/order/{'z' * 19}").status_code == 404
    assert httpx.get(f"{api_url}/order/not%20an%20id").status_code == 400
    assert httpx.get(f"{api_url}/readyz").status_code == 200
