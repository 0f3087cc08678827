"""The live status page in headless Chromium, against a whole service (`run`) on the real broker
and PostgreSQL: the figures move while orders flow, the page reads at a phone's width and a
desktop's, and it stays up, saying so, while PostgreSQL or Kafka is down.

Every wait is on the page's own state (`data-updates` counts the documents it has shown) or on
text; each outage starts when the test stops the server and ends when the test sees it.
"""

import json
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from service.config import Settings
from service.model import encode_order
from tests.fix_browser import SCREENSHOTS
from tests.fix_kafka import produce
from tests.fix_processes import outage, service_process, service_url, wait_until_ready
from tests.orders import random_orders

pytestmark = pytest.mark.integration

ORDERS = 2_000
INVALID = 25

# The consumer reports Kafka every 5 s (librdkafka's statistics) and the page polls every 2 s.
expect.set_options(timeout=20_000)


@pytest.fixture
def running(service_env: dict[str, str]) -> Iterator[str]:
    """A whole service of this test alone; its URL."""
    url = service_url(service_env)
    with service_process(service_env, "run"):
        wait_until_ready(url)
        yield url


@pytest.fixture
def status_page(chromium: Browser, running: str) -> Iterator[Page]:
    context = chromium.new_context(base_url=running, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    page.on("console", lambda m: problems.append(m.text) if "Content Security" in m.text else None)
    page.goto("/status")
    expect(page.locator("body")).to_have_attribute("data-state", "live")
    yield page
    context.close()
    assert problems == []


def updates(page: Page) -> int:
    return int(page.locator("body").get_attribute("data-updates") or 0)


def wait_for_updates(page: Page, more: int) -> None:
    """Until the page has shown `more` documents fetched after this moment."""
    # The count goes up by one every 2 s, so an attribute check that polls sees each value
    # (a predicate run in the page would need 'unsafe-eval', which the page's CSP refuses).
    target = updates(page) + more
    expect(page.locator("body")).to_have_attribute("data-updates", str(target))


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"status-{name}.png", full_page=True)


def test_the_figures_move_while_orders_flow(
    status_page: Page, service_env: dict[str, str], settings: Settings
) -> None:
    page = status_page
    expect(page.locator("#consumer")).to_have_text("running")
    expect(page.locator("#kafka")).to_have_text("1 of 1 up")
    expect(page.locator("#postgres")).to_have_text("answering")
    expect(page.locator("#banner")).to_have_text("Everything answers.")
    orders = random_orders(ORDERS, seed=7301)
    produce(
        settings.kafka_brokers,
        service_env["KAFKA_TOPIC"],
        [encode_order(o) for o in orders] + [b"{not json"] * INVALID,
    )
    expect(page.locator("#stored-total")).to_have_text(f"{ORDERS:,}", timeout=60_000)
    expect(page.locator("#dead-letters tr[data-key=malformed_json] td").last).to_have_text(
        str(INVALID)
    )
    # A point per document: the stored-per-second line has risen above the floor somewhere.
    wait_for_updates(page, 2)
    points = page.locator("#chart-stored polyline").get_attribute("points") or ""
    heights = [float(point.split(",")[1]) for point in points.split()]
    assert len(heights) >= 2
    assert min(heights) < 58
    for order in orders[:20]:
        assert httpx.get(f"{service_url(service_env)}/order/{order.order_uid}").status_code == 200
    wait_for_updates(page, 2)
    expect(page.locator("#requests tr[data-key='200'] td").last).not_to_have_text("0")
    document = json.loads(page.request.get("/status.json").body())
    assert document["orders"]["stored"] == ORDERS
    assert document["dead_letters"]["malformed_json"] == INVALID


@pytest.mark.parametrize("width", [375, 1280])
def test_the_page_reads_at_a_phone_and_a_desktop_width(status_page: Page, width: int) -> None:
    page = status_page
    page.set_viewport_size({"width": width, "height": 900})
    wait_for_updates(page, 1)
    overflow = page.evaluate("document.documentElement.scrollWidth")
    assert overflow <= width, f"the page is {overflow} px wide in a {width} px window"
    for figure in ("#consumer", "#kafka", "#postgres", "#stored-rate", "#cache"):
        assert page.locator(figure).is_visible()
    screenshot(page, f"{width}px")


@pytest.mark.parametrize(
    ("server", "stop", "start", "figure", "up", "down", "banner"),
    [
        (
            "postgres.sh",
            "stop",
            "start",
            "#postgres",
            "answering",
            "down",
            "PostgreSQL is unavailable",
        ),
        ("kafka.sh", "down", "up", "#kafka", "1 of 1 up", "0 of 1 up", "Kafka is unreachable"),
    ],
    ids=["postgresql", "kafka"],
)
def test_the_page_stays_up_and_says_so_while_a_server_is_down(
    status_page: Page,
    settings: Settings,
    server: str,
    stop: str,
    start: str,
    figure: str,
    up: str,
    down: str,
    banner: str,
) -> None:
    page = status_page
    expect(page.locator(figure)).to_have_text(up)
    with outage(settings, server, stop, start):
        expect(page.locator(figure)).to_have_text(down, timeout=60_000)
        expect(page.locator("#banner")).to_contain_text(banner)
        wait_for_updates(page, 2)
        screenshot(page, f"{server.removesuffix('.sh')}-down")
    expect(page.locator(figure)).to_have_text(up, timeout=60_000)
