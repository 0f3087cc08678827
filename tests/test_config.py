import subprocess
import sys

import pytest

from service.config import load_settings
from service.errors import OPERATOR_ERROR_EXIT, ConfigError


def test_defaults_work_with_the_local_infrastructure() -> None:
    settings = load_settings({})
    assert settings.postgres_port == 55432
    assert settings.kafka_brokers == "localhost:9092"
    assert settings.kafka_dlq_topic == "orders.dlq"
    assert settings.http_port == 8082


def test_the_predecessors_variable_names_are_read() -> None:
    settings = load_settings(
        {
            "POSTGRES_USER": "u",
            "POSTGRES_PASSWORD": "p w",
            "POSTGRES_DB": "d",
            "KAFKA_BROKERS": "k:1",
            "KAFKA_TOPIC": "t",
            "KAFKA_GROUP": "g",
            "CACHE_SIZE": "7",
            "HTTP_PORT": "9000",
        }
    )
    assert (settings.postgres_user, settings.postgres_db, settings.kafka_brokers) == (
        "u",
        "d",
        "k:1",
    )
    assert (settings.kafka_topic, settings.kafka_group, settings.kafka_dlq_topic) == (
        "t",
        "g",
        "t.dlq",
    )
    assert (settings.cache_size, settings.http_port) == (7, 9000)
    assert "password='p w'" in settings.postgres_conninfo


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        (
            "HTTP_PORT",
            "abc",
            "Config 'HTTP_PORT' has value 'abc'. Expected an integer from 1 to 65535.",
        ),
        ("HTTP_PORT", "70000", "Config 'HTTP_PORT' has value '70000'. Expected an integer"),
        ("CACHE_SIZE", "0", "Config 'CACHE_SIZE' has value '0'. Expected an integer from 1"),
        ("HTTP_WORKERS", "-1", "Config 'HTTP_WORKERS' has value '-1'"),
        (
            "KAFKA_TOPIC",
            "orders topic",
            "Config 'KAFKA_TOPIC' has value 'orders topic'. Expected letters",
        ),
        ("KAFKA_BROKERS", "  ", "Config 'KAFKA_BROKERS' is empty"),
        ("LOG_LEVEL", "loud", "Config 'LOG_LEVEL' has value 'LOUD'. Expected one of DEBUG"),
        ("HTTP_PORT", "--5", "Config 'HTTP_PORT' has value '--5'. Expected an integer"),
        ("HTTP_PORT", "8\u00b2", "Config 'HTTP_PORT' has value '8\u00b2'. Expected an integer"),
        ("CACHE_SIZE", "1_000", "Config 'CACHE_SIZE' has value '1_000'. Expected an integer"),
    ],
)
def test_a_bad_value_names_the_variable_and_what_was_expected(
    name: str, value: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings({name: value})
    assert str(error.value).startswith(expected)


def test_the_service_refuses_to_start_with_a_bad_value() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service", "migrate", "version"],
        env={"HTTP_PORT": "eighty", "PATH": ""},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == OPERATOR_ERROR_EXIT
    assert "error: Config 'HTTP_PORT' has value 'eighty'" in result.stderr
