"""The web page in headless Chromium, against the real service (PostgreSQL and Kafka).

Orders are stored with the real writer; every wait is Playwright auto-waiting on the page's
`data-state` attribute or on text, never a sleep. Each test leaves a full-page screenshot in
tests/artifacts/screenshots/<test name>.png.
"""

import itertools
import json
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Locator, Page, Route, expect

from bench.common import write_orders
from service.model import decode_order
from service.store.writer import OrderWriter
from tests.fix_browser import SCREENSHOTS

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "web" / "example-order.json"
SCRIPT_PAYLOAD = "<script>window.__pwned=1</script>"
IMG_PAYLOAD = '<img src=x onerror="window.__pwned=1">'

expect.set_options(timeout=15_000)

# A year ahead: later than any order other tests store with the current time.
RECENT_START = datetime.now(UTC).replace(microsecond=0) + timedelta(days=365)
RECENT_TICKS = itertools.count()

StoreOrder = Callable[[dict[str, Any]], dict[str, Any]]


# ------------------------------------------------------------------ fixtures and helpers


@pytest.fixture
def page(chromium: Browser, api_url: str, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh page on the running service (en-US, UTC), screenshotted at the end of the test.

    The page must not raise uncaught errors or trip the Content-Security-Policy.
    """
    context = chromium.new_context(
        base_url=api_url,
        viewport={"width": 1280, "height": 900},
        locale="en-US",
        timezone_id="UTC",
    )
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    page.on(
        "console",
        lambda message: (
            problems.append(f"CSP: {message.text}")
            if "Content Security Policy" in message.text
            else None
        ),
    )
    try:
        yield page
    finally:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^\w.-]+", "_", request.node.name).strip("_")
        page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)
        context.close()
    assert problems == []


@pytest.fixture
def store_order(writer: OrderWriter) -> StoreOrder:
    """Store an order (a dict in the wire shape) through the real writer; returns it."""

    def store(order: dict[str, Any]) -> dict[str, Any]:
        decoded = decode_order(json.dumps(order).encode())
        assert isinstance(decoded, tuple), decoded
        assert write_orders(writer, [decoded[0]]) == [decoded[0]]
        return order

    return store


def example_order(*, recent: bool = False) -> dict[str, Any]:
    """The example order (dated 2021) under a new random id. A `recent` order is dated later
    than every order stored before it in this run, so it heads the recent-orders list."""
    order: dict[str, Any] = json.loads(EXAMPLE.read_bytes())
    order["order_uid"] = uuid.uuid4().hex
    if recent:
        created = RECENT_START + timedelta(seconds=next(RECENT_TICKS))
        order["date_created"] = created.isoformat().replace("+00:00", "Z")
    return order


def status(page: Page) -> Locator:
    return page.locator("#status")


def search(page: Page, uid: str, *, with_button: bool = False) -> None:
    page.get_by_label("Order ID").fill(uid)
    if with_button:
        page.get_by_role("button", name="Find order").click()
    else:
        page.get_by_label("Order ID").press("Enter")


def order_requests(page: Page) -> list[str]:
    """The URLs of the order lookups the page makes from now on."""
    urls: list[str] = []
    page.on("request", lambda req: urls.append(req.url) if "/order/" in req.url else None)
    return urls


# ------------------------------------------------------------------ tests


@pytest.mark.browser
def test_searching_an_existing_order_shows_its_fields_and_items(
    page: Page, store_order: StoreOrder
) -> None:
    order = example_order()
    order["items"].append(
        {
            **order["items"][0],
            "chrt_id": 9934931,
            "name": "Lip balm",
            "brand": "Nivea",
            "size": "M",
            "price": 1000,
            "sale": 0,
            "total_price": 1000,
            "rid": "ab4219087a764ae0bsecond",
        }
    )
    order["payment"].update(goods_total=1317, amount=2817)
    uid = store_order(order)["order_uid"]

    page.goto("/")
    expect(status(page)).to_have_attribute("data-state", "idle")
    search(page, uid)

    expect(status(page)).to_have_attribute("data-state", "found")
    expect(page).to_have_url(re.compile(rf"\?uid={uid}$"))
    expect(page.locator("#order-title")).to_have_text(uid)
    header = page.locator("#order-facts")
    expect(header).to_contain_text("WBILMTESTTRACK")
    expect(header).to_contain_text("Nov 26, 2021")  # date_created in the viewer's locale
    expect(header).to_contain_text("meest")
    expect(header).to_contain_text("WBIL")
    expect(page.locator("#delivery-facts")).to_contain_text("Test Testov")
    expect(page.locator("#delivery-facts")).to_contain_text("Kiryat Mozkin")
    expect(page.locator("#delivery-facts")).to_contain_text("test@gmail.com")
    expect(page.locator("#payment-amount")).to_contain_text("$2,817.00")
    payment = page.locator("#payment-facts")
    expect(payment).to_contain_text("$1,500.00")  # delivery cost
    expect(payment).to_contain_text("Nov 26, 2021")  # payment_dt 1637907727
    expect(payment).to_contain_text("wbpay")

    rows = page.locator("#items-body tr")
    expect(rows).to_have_count(2)
    first = rows.nth(0).locator("th, td")
    expect(first).to_have_text(
        [re.compile("^Mascaras"), "Vivienne Sabo", "0", "$453.00", "30%", "$317.00", "202"]
    )
    expect(rows.nth(1)).to_contain_text("Lip balm")
    totals = page.locator("#items-foot tr").locator("th, td")
    expect(totals).to_have_text(["Total, 2 items", "$1,453.00", "", "$1,317.00", ""])


@pytest.mark.browser
def test_an_unknown_order_id_shows_not_found(page: Page) -> None:
    page.goto("/info/")
    search(page, uuid.uuid4().hex, with_button=True)

    expect(status(page)).to_have_attribute("data-state", "not-found")
    expect(status(page)).to_contain_text("No order with this ID")
    expect(page.locator("#order")).to_be_hidden()


@pytest.mark.browser
@pytest.mark.parametrize("uid", ["not an id!", "a" * 65, "<b>x</b>"])
def test_an_invalid_order_id_shows_invalid_without_asking_the_server(page: Page, uid: str) -> None:
    page.goto("/")
    requests = order_requests(page)
    search(page, uid)

    expect(status(page)).to_have_attribute("data-state", "invalid")
    expect(page.get_by_label("Order ID")).to_have_attribute("aria-invalid", "true")
    expect(page).not_to_have_url(re.compile(r"uid="))
    assert requests == []


@pytest.mark.browser
@pytest.mark.parametrize("path", ["/info/", "/", "/order.html"])
def test_a_deep_link_opens_the_order(page: Page, store_order: StoreOrder, path: str) -> None:
    uid = store_order(example_order())["order_uid"]

    page.goto(f"{path}?uid={uid}")

    expect(status(page)).to_have_attribute("data-state", "found")
    expect(page.locator("#order-title")).to_have_text(uid)
    expect(page.get_by_label("Order ID")).to_have_value(uid)
    expect(page).to_have_title(re.compile(uid))


@pytest.mark.browser
def test_a_deep_link_with_a_malformed_id_shows_invalid(page: Page) -> None:
    requests = order_requests(page)
    page.goto("/info/?uid=%3Cscript%3E")

    expect(status(page)).to_have_attribute("data-state", "invalid")
    assert requests == []


@pytest.mark.browser
def test_back_and_forward_move_between_looked_up_orders(
    page: Page, store_order: StoreOrder
) -> None:
    first = store_order(example_order())["order_uid"]
    second = store_order(example_order())["order_uid"]
    page.goto("/info/")
    search(page, first)
    expect(page.locator("#order-title")).to_have_text(first)
    search(page, second)
    expect(page.locator("#order-title")).to_have_text(second)

    page.go_back()
    expect(page).to_have_url(re.compile(rf"\?uid={first}$"))
    expect(page.locator("#order-title")).to_have_text(first)
    expect(status(page)).to_have_attribute("data-state", "found")

    page.go_back()
    expect(status(page)).to_have_attribute("data-state", "idle")
    expect(page.locator("#order")).to_be_hidden()

    page.go_forward()
    page.go_forward()
    expect(page.locator("#order-title")).to_have_text(second)
    expect(status(page)).to_have_attribute("data-state", "found")


@pytest.mark.browser
def test_markup_in_order_fields_is_shown_as_literal_text(
    page: Page, store_order: StoreOrder
) -> None:
    order = example_order(recent=True)
    order["delivery"]["name"] = SCRIPT_PAYLOAD
    order["delivery"]["address"] = IMG_PAYLOAD
    order["delivery"]["city"] = SCRIPT_PAYLOAD
    order["items"][0]["name"] = IMG_PAYLOAD
    order["items"][0]["brand"] = SCRIPT_PAYLOAD
    order["customer_id"] = IMG_PAYLOAD
    order["delivery_service"] = SCRIPT_PAYLOAD
    order["track_number"] = IMG_PAYLOAD
    order["payment"]["bank"] = IMG_PAYLOAD
    uid = store_order(order)["order_uid"]

    page.goto(f"/info/?uid={uid}")

    expect(status(page)).to_have_attribute("data-state", "found")
    delivery = page.locator("#delivery-facts dd")
    expect(delivery.nth(0)).to_have_text(SCRIPT_PAYLOAD)
    expect(page.locator("#delivery-facts address")).to_have_text(
        IMG_PAYLOAD + "2639809 " + SCRIPT_PAYLOAD + "Kraiot"
    )
    expect(page.locator("#items-body .items__title")).to_have_text(IMG_PAYLOAD)
    expect(page.locator("#items-body td").first).to_have_text(SCRIPT_PAYLOAD)
    expect(page.locator("#order-facts")).to_contain_text(IMG_PAYLOAD)
    expect(page.locator("#order-facts")).to_contain_text(SCRIPT_PAYLOAD)
    expect(page.locator("#payment-facts")).to_contain_text(IMG_PAYLOAD)
    recent = page.locator(f'#recent-list a[data-uid="{uid}"]')
    expect(recent).to_contain_text(IMG_PAYLOAD)  # the customer id, in the list too

    assert page.locator("#main img, #main script, #recent-list img").count() == 0
    assert page.evaluate("typeof window.__pwned") == "undefined"


@pytest.mark.browser
def test_the_recent_orders_list_opens_an_order_on_click(
    page: Page, store_order: StoreOrder
) -> None:
    older = store_order(example_order(recent=True))["order_uid"]
    newer = store_order(example_order(recent=True))["order_uid"]

    page.goto("/info/")
    links = page.locator("#recent-list a[data-uid]")
    expect(links.first).to_have_attribute("data-uid", newer)  # newest first
    expect(links.nth(1)).to_have_attribute("data-uid", older)
    expect(links.first).to_contain_text("$1,817.00")
    expect(links.first).to_contain_text("1 item")

    links.first.click()
    expect(status(page)).to_have_attribute("data-state", "found")
    expect(page.locator("#order-title")).to_have_text(newer)
    expect(page).to_have_url(re.compile(rf"/info/\?uid={newer}$"))
    expect(links.first).to_have_attribute("aria-current", "true")

    links.nth(1).focus()
    page.keyboard.press("Enter")
    expect(page.locator("#order-title")).to_have_text(older)
    expect(page).to_have_url(re.compile(rf"\?uid={older}$"))
    expect(page.locator("#order-title")).to_be_focused()


@pytest.mark.browser
def test_refreshing_the_recent_orders_list_shows_a_new_order(
    page: Page, store_order: StoreOrder
) -> None:
    page.goto("/info/")
    expect(page.locator("#recent-status")).to_have_attribute(
        "data-state", re.compile("ready|empty")
    )
    uid = store_order(example_order(recent=True))["order_uid"]

    page.get_by_role("button", name="Refresh").click()

    expect(page.locator("#recent-list a[data-uid]").first).to_have_attribute("data-uid", uid)


@pytest.mark.browser
def test_the_raw_json_toggle_shows_the_order_and_copy_json_copies_it(
    page: Page, store_order: StoreOrder, api_url: str
) -> None:
    order = store_order(example_order())
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=api_url)
    page.goto(f"/info/?uid={order['order_uid']}")
    expect(status(page)).to_have_attribute("data-state", "found")
    toggle = page.locator("#raw-toggle")
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(page.locator("#raw-json")).to_be_hidden()

    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    raw = page.locator("#raw-json")
    expect(raw).to_be_visible()
    assert json.loads(raw.text_content() or "") == order

    page.get_by_role("button", name="Copy JSON").click()
    expect(page.locator("#copy-status")).to_have_attribute("data-state", "copied")
    assert json.loads(page.evaluate("navigator.clipboard.readText()")) == order

    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(raw).to_be_hidden()


@pytest.mark.browser
def test_copy_json_without_a_clipboard_selects_the_json_and_says_how_to_copy(
    page: Page, store_order: StoreOrder
) -> None:
    order = store_order(example_order())
    page.add_init_script(
        "Object.defineProperty(navigator, 'clipboard', {value: undefined});"
        "document.execCommand = () => false;"
    )
    page.goto(f"/info/?uid={order['order_uid']}")
    expect(status(page)).to_have_attribute("data-state", "found")

    page.get_by_role("button", name="Copy JSON").click()

    expect(page.locator("#copy-status")).to_have_attribute("data-state", "failed")
    expect(page.locator("#copy-status")).to_contain_text("Ctrl+C")
    expect(page.locator("#raw-json")).to_be_visible()
    assert json.loads(page.evaluate("window.getSelection().toString()")) == order


def problem(route: Route, status_code: int, title: str) -> None:
    route.fulfill(
        status=status_code,
        content_type="application/problem+json",
        body=json.dumps(
            {"type": "about:blank", "title": title, "status": status_code, "detail": title}
        ),
    )


@pytest.mark.browser
@pytest.mark.parametrize(
    ("answer", "state"),
    [
        (lambda route: problem(route, 400, "Bad Request"), "invalid"),
        (lambda route: problem(route, 503, "Service Unavailable"), "unavailable"),
        (lambda route: problem(route, 500, "Internal Server Error"), "unavailable"),
        (lambda route: route.abort("connectionrefused"), "network-error"),
    ],
    ids=["400", "503", "500", "network-down"],
)
def test_server_errors_and_network_failures_have_their_own_state(
    page: Page, answer: Callable[[Route], None], state: str
) -> None:
    page.goto("/info/")
    page.route("**/order/*", answer)
    search(page, uuid.uuid4().hex)

    expect(status(page)).to_have_attribute("data-state", state)
    expect(page.locator("#order")).to_be_hidden()
    if state != "invalid":
        expect(page.get_by_role("button", name="Try again")).to_be_visible()


@pytest.mark.browser
def test_each_state_looks_different(page: Page, store_order: StoreOrder) -> None:
    uid = store_order(example_order())["order_uid"]
    page.goto("/info/")
    looks: dict[str, tuple[str, str]] = {}

    def look(state: str) -> None:
        expect(status(page)).to_have_attribute("data-state", state)
        looks[state] = page.locator("#status").evaluate(
            "e => [getComputedStyle(e).backgroundColor, getComputedStyle(e).borderLeftColor]"
        )

    page.route("**/order/*", lambda route: None)  # never answered: stays loading
    search(page, uid)
    look("loading")
    page.unroute("**/order/*")
    search(page, uid)  # a new lookup cancels the held one
    look("found")
    search(page, uuid.uuid4().hex)
    look("not-found")
    search(page, "no spaces allowed")
    look("invalid")
    page.route("**/order/*", lambda route: problem(route, 503, "Service Unavailable"))
    search(page, uid)
    look("unavailable")
    page.unroute("**/order/*")
    page.route("**/order/*", lambda route: route.abort("internetdisconnected"))
    search(page, uid)
    look("network-error")

    assert len({tuple(colours) for colours in looks.values()}) == len(looks) == 6


@pytest.mark.browser
def test_the_page_at_375px_wide_has_no_horizontal_overflow(
    page: Page, store_order: StoreOrder
) -> None:
    order = example_order(recent=True)
    order["order_uid"] = uuid.uuid4().hex + uuid.uuid4().hex  # 64 characters
    order["delivery"]["address"] = "Ploshad-Mira-" * 19
    order["items"][0]["name"] = "Mascara-with-a-very-long-unbroken-product-name-" * 5
    order["items"].extend([{**order["items"][0], "rid": f"rid{n}"} for n in range(3)])
    uid = store_order(order)["order_uid"]
    page.set_viewport_size({"width": 375, "height": 812})

    page.goto(f"/info/?uid={uid}")

    expect(status(page)).to_have_attribute("data-state", "found")
    expect(page.locator("#recent-list a[data-uid]").first).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    table = page.locator(".table-scroll")
    assert table.evaluate("e => e.scrollWidth > e.clientWidth")  # scrolls inside its card
    delivery = page.locator("#delivery-title").bounding_box()
    payment = page.locator("#payment-title").bounding_box()
    assert delivery is not None
    assert payment is not None
    assert payment["y"] > delivery["y"] + delivery["height"]  # the cards stack
    page.get_by_role("button", name="Show JSON").click()
    expect(page.locator("#raw-json")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 375


def test_the_placeholder_is_an_order_id_the_page_can_find() -> None:
    """Typed as shown, the example in the search box is the example order's own order_uid."""
    page = (REPO / "web" / "index.html").read_text()
    shown = re.search(r'placeholder="e\.g\. ([^"]+)"', page)
    assert shown is not None
    assert shown.group(1) == json.loads(EXAMPLE.read_text())["order_uid"]
