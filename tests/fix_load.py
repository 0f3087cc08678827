"""The fault and scale tests' traffic and their report: request paths of cached and unknown
orders, the service's metrics read back, and the RELIABILITY lines."""

import random
import re
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from service.model import Order, encode_order
from tests.http_load import HttpLoad, statuses


def consumed(metrics_dir: Path) -> int:
    """Messages read from the topic by the processes that kept their metrics in `metrics_dir`."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(metrics_dir))  # type: ignore[no-untyped-call]
    return int(registry.get_sample_value("orders_consumed_total") or 0)


def metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    match = re.search(rf"^{name} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match[1]) if match else 0.0


def report(fault: str, **counts: object) -> None:
    print(f"\nRELIABILITY {fault}: " + " ".join(f"{k}={v}" for k, v in counts.items()), flush=True)


def uids_of(orders: list[Order]) -> list[str]:
    return [o.order_uid for o in orders]


def values_of(orders: list[Order]) -> list[bytes]:
    return [encode_order(o) for o in orders]


@dataclass(frozen=True)
class Cached:
    """Paths of orders the cache holds."""

    uids: list[str]

    def __call__(self, rng: random.Random) -> str:
        return f"/order/{rng.choice(self.uids)}"


def unknown(rng: random.Random) -> str:
    """The path of an order nobody stored: a miss."""
    return f"/order/unknown-{rng.getrandbits(64):x}"


def cached_orders(url: str, orders: list[Order]) -> list[str]:
    """Ids of `orders`, each fetched once so it is in the cache whatever the consumer did."""
    for order in orders:
        assert httpx.get(f"{url}/order/{order.order_uid}").status_code == 200
    return uids_of(orders)


def answered_404(load: HttpLoad, since: float) -> int:
    return statuses(load.outcomes(since))[404]
