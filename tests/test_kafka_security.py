"""The service over TLS and SASL against a real broker (tests/secure_kafka.py): it ingests and
dead-letters through a SASL_SSL listener with SCRAM, produces through an SSL listener that
requires a client certificate, and stops at start, naming the setting, when the broker refuses
its password or it does not trust the broker's certificate."""

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import Consumer, Message, Producer

from service.config import Settings, load_settings
from service.errors import OPERATOR_ERROR_EXIT
from service.ingest.kafka import consumer_config, producer_config
from service.model import encode_order
from tests.certs import make_authority
from tests.fix_db import stored_count
from tests.fix_kafka import headers
from tests.fix_processes import run_service, service_process, wait_for
from tests.orders import random_orders
from tests.secure_kafka import SCRAM_MECHANISM, SecureKafka, secure_kafka

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def broker(infrastructure: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    with secure_kafka(tmp_path_factory.mktemp("secure-kafka")) as started:
        yield started


def sasl_env(base: dict[str, str], broker: SecureKafka) -> dict[str, str]:
    topic = f"secure-{uuid.uuid4().hex[:10]}"
    return {
        **base,
        "KAFKA_BROKERS": broker.sasl_ssl,
        "KAFKA_TOPIC": topic,
        "KAFKA_GROUP": topic,
        "KAFKA_DLQ_TOPIC": f"{topic}.dlq",
        "KAFKA_PARTITIONS": "1",
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": SCRAM_MECHANISM,
        "KAFKA_SASL_USERNAME": broker.username,
        "KAFKA_SASL_PASSWORD": broker.password,
        "KAFKA_SSL_CA_FILE": str(broker.authority.cert),
    }


def produce_with(settings: Settings, values: list[bytes]) -> None:
    producer = Producer(producer_config(settings))
    for value in values:
        producer.produce(settings.kafka_topic, value)
    assert producer.flush(60) == 0


def read_with(settings: Settings, topic: str, expected: int) -> list[Message]:
    """`expected` messages from the start of `topic`, read with the service's client settings."""
    consumer = Consumer({**consumer_config(settings), "group.id": f"reader-{uuid.uuid4().hex}"})
    consumer.subscribe([topic])
    messages: list[Message] = []
    deadline = time.monotonic() + 60
    try:
        while len(messages) < expected and time.monotonic() < deadline:
            messages.extend(m for m in consumer.consume(100, 0.5) if m.error() is None)
    finally:
        consumer.close()
    assert len(messages) == expected, f"{len(messages)} of {expected} messages on {topic}"
    return messages


def start_error(env: dict[str, str]) -> str:
    """What `python -m service consume` says when it refuses to start (it must, in time)."""
    result = run_service(env, "consume")
    assert result.returncode == OPERATOR_ERROR_EXIT, result.stderr[-2000:]
    return result.stderr


def test_the_service_ingests_and_dead_letters_over_sasl_ssl_with_scram(
    broker: SecureKafka, base_env: dict[str, str], settings: Settings
) -> None:
    env = sasl_env(base_env, broker)
    secure = load_settings(env)
    orders = random_orders(5, seed=16)
    with service_process(env, "consume"), psycopg.connect(settings.postgres_conninfo) as db:
        produce_with(secure, [encode_order(o) for o in orders[:3]] + [b"not json"])
        produce_with(secure, [encode_order(o) for o in orders[3:]])
        uids = [o.order_uid for o in orders]
        wait_for(lambda: stored_count(db, uids) == len(orders), what="the orders stored")
        db.rollback()
    (dead,) = read_with(secure, secure.kafka_dlq_topic, 1)
    assert dead.value() == b"not json"
    assert headers(dead)["error.kind"] == "malformed_json"


def test_the_demo_producer_sends_over_tls_with_a_client_certificate(
    broker: SecureKafka, base_env: dict[str, str], settings: Settings
) -> None:
    topic = f"mtls-{uuid.uuid4().hex[:10]}"
    env = {
        **base_env,
        "KAFKA_BROKERS": broker.ssl,
        "KAFKA_TOPIC": topic,
        "KAFKA_PARTITIONS": "1",
        "KAFKA_SECURITY_PROTOCOL": "SSL",
        "KAFKA_SSL_CA_FILE": str(broker.authority.cert),
        "KAFKA_SSL_CERT_FILE": str(broker.client.cert),
        "KAFKA_SSL_KEY_FILE": str(broker.client.key),
    }
    subprocess.run(
        [sys.executable, "-m", "service", "produce", "--count", "3", "--seed", "1"],
        env=env,
        cwd=REPO,
        check=True,
        timeout=120,
    )
    assert len(read_with(load_settings(env), topic, 3)) == 3


def test_a_wrong_password_stops_the_start_naming_the_setting(
    broker: SecureKafka, base_env: dict[str, str], settings: Settings
) -> None:
    env = {**sasl_env(base_env, broker), "KAFKA_SASL_PASSWORD": "not-the-password"}
    error = start_error(env)
    assert f"refused the SASL login of {broker.username!r}" in error
    assert "KAFKA_SASL_PASSWORD" in error


def test_an_untrusted_broker_certificate_stops_the_start_naming_the_setting(
    broker: SecureKafka,
    base_env: dict[str, str],
    settings: Settings,
    tmp_path: Path,
) -> None:
    stranger = make_authority(tmp_path, "another-ca")
    env = {**sasl_env(base_env, broker), "KAFKA_SSL_CA_FILE": str(stranger.cert)}
    error = start_error(env)
    assert "TLS handshake" in error
    assert "certificate verify failed" in error
    assert "KAFKA_SSL_CA_FILE" in error
