import json
import re
import uuid
from collections.abc import Iterator

import httpx
import pytest

from service.config import Settings
from service.model import Order, encode_order
from service.model.contract import order_schema_json
from tests.fix_db import store
from tests.fix_load import metric
from tests.fix_processes import free_port, infra, service_process, service_url, wait_until_ready
from tests.orders import as_order, random_orders, reference_dict

pytestmark = pytest.mark.integration


def test_a_stored_order_is_a_miss_then_a_hit_with_identical_bytes(
    api_url: str, settings: Settings
) -> None:
    order = as_order(reference_dict())
    store(settings, [order])
    misses = metric(api_url, "cache_misses_total")
    first = httpx.get(f"{api_url}/order/{order.order_uid}")
    assert first.status_code == 200
    assert first.headers["content-type"] == "application/json"
    assert first.content == encode_order(order)
    assert metric(api_url, "cache_misses_total") == misses + 1
    hits = metric(api_url, "cache_hits_total")
    # Whichever worker answers, the shared cache holds the order now.
    for _ in range(4):
        again = httpx.get(f"{api_url}/order/{order.order_uid}")
        assert again.content == first.content
    assert metric(api_url, "cache_hits_total") == hits + 4
    assert metric(api_url, "cache_misses_total") == misses + 1


def test_every_field_of_the_reference_order_comes_back(api_url: str, settings: Settings) -> None:
    sent = reference_dict()
    store(settings, [as_order(sent)])
    assert httpx.get(f"{api_url}/order/{sent['order_uid']}").json() == sent


def test_an_unknown_order_is_404_with_a_problem_body(api_url: str) -> None:
    response = httpx.get(f"{api_url}/order/{uuid.uuid4().hex}")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["status"] == 404
    assert "no order with order_uid" in response.json()["detail"]


@pytest.mark.parametrize(
    "bad", ["x" * 65, "a b", "semi;colon", "quote'or'1=1", "ünïcode", "x" * 10_000]
)
def test_a_malformed_order_id_is_400(api_url: str, bad: str) -> None:
    response = httpx.get(f"{api_url}/order/{bad}")
    assert response.status_code == 400
    assert response.json()["title"] == "Bad Request"


def test_path_traversal_does_not_escape_the_route(api_url: str) -> None:
    response = httpx.get(f"{api_url}/order/..%2F..%2Fetc%2Fpasswd")
    assert response.status_code in {400, 404}


def test_recent_orders_lists_the_newest_first(api_url: str, settings: Settings) -> None:
    orders = random_orders(3, seed=40)
    store(settings, orders)
    response = httpx.get(f"{api_url}/orders", params={"limit": 200})
    assert response.status_code == 200
    listed = {row["order_uid"]: row for row in response.json()}
    for order in orders:
        row = listed[order.order_uid]
        assert row["item_count"] == len(order.items)
        assert row["amount"] == order.payment.amount
    assert httpx.get(f"{api_url}/orders", params={"limit": 0}).status_code == 400


def test_health_readiness_metrics_and_schema_answer(api_url: str) -> None:
    assert httpx.get(f"{api_url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{api_url}/readyz").status_code == 200
    text = httpx.get(f"{api_url}/metrics").text
    for name in ("cache_entries", "cache_evictions_total", "http_requests_total"):
        assert name in text
    schema = httpx.get(f"{api_url}/schema/openapi.json").json()
    assert "/order/{order_uid}" in schema["paths"]
    contract = httpx.get(f"{api_url}/schema/order.json")
    assert contract.headers["content-type"] == "application/schema+json"
    assert contract.content == order_schema_json("refuse")


def test_with_postgresql_down_hits_still_work_and_misses_are_503(
    api_url: str, settings: Settings
) -> None:
    cached = as_order(reference_dict())
    store(settings, [cached])
    assert httpx.get(f"{api_url}/order/{cached.order_uid}").status_code == 200
    infra("postgres.sh", "stop")
    try:
        assert httpx.get(f"{api_url}/order/{cached.order_uid}").status_code == 200
        missing = httpx.get(f"{api_url}/order/{uuid.uuid4().hex}", timeout=30)
        assert missing.status_code == 503
        assert missing.json()["title"] == "Service Unavailable"
        assert httpx.get(f"{api_url}/readyz", timeout=30).status_code == 503
    finally:
        infra("postgres.sh", "start")
    wait_until_ready(api_url)
    assert httpx.get(f"{api_url}/order/{uuid.uuid4().hex}").status_code == 404


@pytest.fixture
def restarted_service(
    settings: Settings, base_env: dict[str, str]
) -> Iterator[tuple[str, list[Order]]]:
    """A second service (own port and cache) started after orders were stored."""
    orders = random_orders(50, seed=41)
    store(settings, orders)
    env = {
        **base_env,
        "HTTP_PORT": str(free_port()),
        "CACHE_NAME": f"warm-{uuid.uuid4().hex[:8]}",
        "METRICS_DIR": f"/tmp/order-service-warm-{uuid.uuid4().hex[:8]}",
    }
    url = service_url(env)
    with service_process(env, "serve"):
        wait_until_ready(url)
        yield url, orders


def test_a_restarted_service_answers_from_the_warmed_cache_without_database_queries(
    restarted_service: tuple[str, list[Order]],
) -> None:
    url, orders = restarted_service
    for order in orders:
        assert httpx.get(f"{url}/order/{order.order_uid}").content == encode_order(order)
    assert metric(url, "cache_hits_total") == len(orders)
    assert metric(url, "cache_misses_total") == 0
    assert metric(url, "cache_entries") >= len(orders)
    assert json.loads(httpx.get(f"{url}/readyz").content) == {"status": "ready"}


def test_head_of_an_order_answers_like_get_without_a_body(api_url: str, settings: Settings) -> None:
    order = random_orders(1, seed=42)[0]
    store(settings, [order])
    for _ in range(2):  # a miss, then a hit
        head = httpx.head(f"{api_url}/order/{order.order_uid}")
        assert head.status_code == 200
        assert head.content == b""
        assert head.headers["content-type"] == "application/json"
        assert int(head.headers["content-length"]) == len(encode_order(order))
    unknown = httpx.head(f"{api_url}/order/{uuid.uuid4().hex}")
    assert (unknown.status_code, unknown.content) == (404, b"")
    malformed = httpx.head(f"{api_url}/order/a%20b")
    assert (malformed.status_code, malformed.content) == (400, b"")


@pytest.mark.parametrize("path", ["/order/nobody-has-this-id", "/order/a%20b", "/nowhere"])
def test_problem_bodies_carry_their_type(api_url: str, path: str) -> None:
    problem = httpx.get(f"{api_url}{path}").json()
    assert problem["type"] == "about:blank"
    assert {"title", "status", "detail"} <= problem.keys()


def test_the_page_names_one_charset(api_url: str) -> None:
    assert httpx.get(f"{api_url}/").headers["content-type"] == "text/html; charset=utf-8"


def test_http_requests_total_counts_a_healthz_200(api_url: str) -> None:
    ok = 'http_requests_total{status="200"}'
    before = metric(api_url, re.escape(ok))
    assert httpx.get(f"{api_url}/healthz").status_code == 200
    # The scrape that read `before` was counted after it rendered, then the /healthz.
    assert metric(api_url, re.escape(ok)) == before + 2


def test_three_workers_share_one_cache_one_miss_then_hits_and_summed_metrics(
    service_env: dict[str, str], settings: Settings
) -> None:
    order = random_orders(1, seed=43)[0]
    url = service_url(service_env)
    with service_process({**service_env, "HTTP_WORKERS": "3"}, "serve"):
        wait_until_ready(url)
        store(settings, [order])  # after the warm-up, so the first GET is a miss
        # A new connection per request, so the kernel spreads them over the workers.
        answers = {httpx.get(f"{url}/order/{order.order_uid}").content for _ in range(30)}
        assert answers == {encode_order(order)}
        assert metric(url, "cache_misses_total") == 1
        assert metric(url, "cache_hits_total") == 29
