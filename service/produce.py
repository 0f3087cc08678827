"""The demo producer: realistic random orders (and, on request, broken ones) onto the topic.

Orders follow the reference order's shape and pass the model's validation: 1-5 items whose
totals add up, E.164 phones, ISO currencies, current timestamps.
"""

import logging
import random
import string
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka import Producer

from service.config import Settings
from service.ingest.kafka import ensure_topics, producer_config
from service.model import Delivery, Item, Order, Payment, encode_order

log = logging.getLogger(__name__)

_CITIES = [
    ("Moscow", "Moscow"),
    ("Kazan", "Tatarstan"),
    ("Haifa", "Haifa"),
    ("Kiryat Mozkin", "Kraiot"),
    ("Novosibirsk", "Novosibirsk"),
    ("Almaty", "Almaty"),
]
_NAMES = [
    "Anna Ivanova",
    "Test Testov",
    "Ivan Petrov",
    "Maria Cohen",
    "Oleg Smirnov",
    "Dana Levi",
    "Aigerim Sadykova",
]
_PRODUCTS = [
    ("Mascaras", "Vivienne Sabo"),
    ("Sneakers", "Nike"),
    ("T-shirt", "Uniqlo"),
    ("Phone case", "Spigen"),
    ("Kettle", "Bosch"),
    ("Notebook", "Moleskine"),
    ("Headphones", "Sony"),
    ("Backpack", "Xiaomi"),
]
_CURRENCIES = ["USD", "EUR", "RUB", "KZT", "ILS"]
_PROVIDERS = ["wbpay", "sbp", "card"]
_BANKS = ["alpha", "sber", "tinkoff", "leumi"]
_SERVICES = ["meest", "cdek", "boxberry", "russian-post"]


def _token(rng: random.Random, length: int) -> str:
    return "".join(rng.choices(string.ascii_lowercase + string.digits, k=length))


def random_order(rng: random.Random, now: datetime | None = None) -> Order:
    """One valid order with 1 to 5 items."""
    uid = _token(rng, 19)
    track = "WB" + "".join(rng.choices(string.ascii_uppercase, k=12))
    items = []
    for _ in range(rng.randint(1, 5)):
        name, brand = rng.choice(_PRODUCTS)
        price = rng.randint(100, 20_000)
        sale = rng.choice([0, 0, 10, 25, 30, 50])
        items.append(
            Item(
                chrt_id=rng.randint(1_000_000, 99_999_999),
                track_number=track,
                price=price,
                rid=_token(rng, 21),
                name=name,
                sale=sale,
                size=rng.choice(["0", "S", "M", "L", "42"]),
                total_price=price * (100 - sale) // 100,
                nm_id=rng.randint(1_000_000, 9_999_999),
                brand=brand,
                status=rng.choice([202, 200, 201]),
            )
        )
    goods_total = sum(item.total_price for item in items)
    delivery_cost = rng.choice([0, 500, 1500])
    created = (now or datetime.now(UTC)).replace(microsecond=0)
    city, region = rng.choice(_CITIES)
    return Order(
        order_uid=uid,
        track_number=track,
        entry="WBIL",
        delivery=Delivery(
            name=rng.choice(_NAMES),
            phone="+" + str(rng.randint(10**9, 10**12)),
            zip=str(rng.randint(100_000, 9_999_999)),
            city=city,
            address=f"Street {rng.randint(1, 200)}, {rng.randint(1, 300)}",
            region=region,
            email=f"{_token(rng, 8)}@example.com",
        ),
        payment=Payment(
            transaction=uid,
            request_id="",
            currency=rng.choice(_CURRENCIES),
            provider=rng.choice(_PROVIDERS),
            amount=goods_total + delivery_cost,
            payment_dt=int(created.timestamp()),
            bank=rng.choice(_BANKS),
            delivery_cost=delivery_cost,
            goods_total=goods_total,
            custom_fee=0,
        ),
        items=items,
        locale=rng.choice(["en", "ru"]),
        internal_signature="",
        customer_id=_token(rng, 8),
        delivery_service=rng.choice(_SERVICES),
        shardkey=str(rng.randint(0, 9)),
        sm_id=rng.randint(1, 100),
        date_created=created,
        oof_shard=str(rng.randint(0, 9)),
    )


def _broken(rng: random.Random) -> bytes:
    """A message the consumer must dead-letter, of a randomly chosen kind."""
    good = encode_order(random_order(rng))
    breakers: list[Callable[[bytes], bytes]] = [
        lambda raw: raw[: len(raw) // 2],
        lambda raw: raw.replace(b"@example.com", b" at example.com"),
        lambda raw: raw.replace(b'"sale":', b'"sale":1000', 1),
        lambda raw: raw.replace(b'"sm_id":', b'"sm_id":"x",  "_":', 1),
        lambda raw: b"not json at all",
    ]
    return rng.choice(breakers)(good)


def produce(
    settings: Settings,
    count: int,
    rate: float | None = None,
    invalid_ratio: float = 0.0,
    reference: Path | None = None,
    seed: int | None = None,
) -> int:
    """Send `count` messages (optionally at `rate` per second); return how many were sent."""
    ensure_topics(settings)
    rng = random.Random(seed)
    producer = Producer(producer_config(settings))
    if reference is not None:
        raw = reference.read_bytes()
        producer.produce(settings.kafka_topic, raw)
        log.info("sent the reference order from %s", reference)
    started = time.monotonic()
    for sent in range(count):
        if rate:
            delay = started + sent / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        if rng.random() < invalid_ratio:
            producer.produce(settings.kafka_topic, _broken(rng))
        else:
            order = random_order(rng)
            producer.produce(settings.kafka_topic, encode_order(order), order.order_uid)
        producer.poll(0)
    producer.flush()
    total = count + (reference is not None)
    log.info("sent %d messages in %.1f s", total, time.monotonic() - started)
    return total
