"""Test helpers around the real broker: producing raw messages, reading the dead-letter topic,
running the consumer as its own process, and waiting for rows."""

import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from confluent_kafka import Consumer, KafkaError, Message, Producer

REPO = Path(__file__).resolve().parents[1]


def produce(
    brokers: str, topic: str, values: list[bytes], keys: list[str | None] | None = None
) -> None:
    producer = Producer(
        {"bootstrap.servers": brokers, "linger.ms": 5, "message.max.bytes": 4_000_000}
    )
    failures: list[str] = []

    def delivered(error: KafkaError | None, _: Message) -> None:
        if error is not None:
            failures.append(str(error))

    for index, value in enumerate(values):
        key = keys[index] if keys else None
        while True:
            try:
                producer.produce(topic, value, key, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(30) == 0
    assert not failures, failures[:3]


def read_all(brokers: str, topic: str, expected: int, seconds: float = 60.0) -> list[Message]:
    """Read `expected` messages from the start of `topic` (fewer if the time runs out)."""
    consumer = Consumer(
        {
            "bootstrap.servers": brokers,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    messages: list[Message] = []
    deadline = time.monotonic() + seconds
    try:
        while len(messages) < expected and time.monotonic() < deadline:
            for message in consumer.consume(500, 0.5):
                if message.error() is None:
                    messages.append(message)
    finally:
        consumer.close()
    return messages


def headers(message: Message) -> dict[str, str]:
    return {key: (value or b"").decode() for key, value in message.headers() or []}


@contextmanager
def consumer_process(env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen([sys.executable, "-m", "service", "consume"], env=env, cwd=REPO)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(60)


def wait_for(condition: Callable[[], bool], seconds: float = 90.0, what: str = "condition") -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} not reached within {seconds:.0f} s")


def scalar(conn: psycopg.Connection[tuple[object, ...]], sql: str, *params: object) -> int:
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return int(str(row[0]))
