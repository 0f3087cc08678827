import logging
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ConfigResource,
    NewTopic,
)
from psycopg.conninfo import conninfo_to_dict

from service.config import KafkaSecurity, load_settings
from service.errors import OPERATOR_ERROR_EXIT, ConfigError
from service.ingest.kafka import admin_config, consumer_config, ensure_topics, producer_config


def test_defaults_work_with_the_local_infrastructure() -> None:
    settings = load_settings({})
    assert settings.postgres_port == "55432"
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
        (
            "ORDER_UNKNOWN_FIELDS",
            "ignore",
            "Config 'ORDER_UNKNOWN_FIELDS' has value 'ignore'. Expected one of refuse, keep.",
        ),
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


def test_kafka_security_settings_are_read(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    settings = load_settings(
        {
            "KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
            "KAFKA_SASL_MECHANISM": "scram-sha-256",
            "KAFKA_SASL_USERNAME": "svc",
            "KAFKA_SASL_PASSWORD": "p w",
            "KAFKA_SSL_CA_FILE": str(ca),
            "KAFKA_PROPERTY_SOCKET_KEEPALIVE_ENABLE": "true",
        }
    )
    assert settings.kafka_security == KafkaSecurity(
        protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_username="svc",
        sasl_password="p w",
        ca_file=str(ca),
    )
    assert settings.kafka_properties == (("socket.keepalive.enable", "true"),)


def test_every_kafka_client_gets_the_security_settings_and_the_passthrough(
    tmp_path: Path,
) -> None:
    cert, key = tmp_path / "client.crt", tmp_path / "client.key"
    cert.touch()
    key.touch()
    settings = load_settings(
        {
            "KAFKA_SECURITY_PROTOCOL": "SSL",
            "KAFKA_SSL_CERT_FILE": str(cert),
            "KAFKA_SSL_KEY_FILE": str(key),
            "KAFKA_PROPERTY_LINGER_MS": "50",
        }
    )
    expected = {
        "security.protocol": "SSL",
        "ssl.certificate.location": str(cert),
        "ssl.key.location": str(key),
    }
    for config in (
        consumer_config(settings),
        producer_config(settings),
        admin_config(settings),
    ):
        assert expected.items() <= config.items()
        assert "sasl.username" not in config
        assert config["linger.ms"] == "50"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        (
            {"KAFKA_SECURITY_PROTOCOL": "TLS"},
            "Config 'KAFKA_SECURITY_PROTOCOL' has value 'TLS'. Expected one of PLAINTEXT, SSL",
        ),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "svc"},
            "Config 'KAFKA_SECURITY_PROTOCOL' is SASL_SSL, which needs 'KAFKA_SASL_USERNAME' "
            "and 'KAFKA_SASL_PASSWORD'",
        ),
        (
            {"KAFKA_SASL_USERNAME": "svc", "KAFKA_SASL_PASSWORD": "pw"},
            "Config 'KAFKA_SASL_USERNAME'/'KAFKA_SASL_PASSWORD' are set, but "
            "'KAFKA_SECURITY_PROTOCOL' is PLAINTEXT",
        ),
        (
            {"KAFKA_SSL_CA_FILE": "/nonexistent/ca.crt"},
            "Config 'KAFKA_SSL_CA_FILE' has value '/nonexistent/ca.crt', which is not a "
            "readable file.",
        ),
        (
            {"KAFKA_SASL_MECHANISM": "GSSAPI"},
            "Config 'KAFKA_SASL_MECHANISM' has value 'GSSAPI'. Expected one of PLAIN",
        ),
        (
            {"KAFKA_PROPERTY_ENABLE_AUTO_COMMIT": "true"},
            "Config 'KAFKA_PROPERTY_ENABLE_AUTO_COMMIT' sets 'enable.auto.commit', which the "
            "service sets itself",
        ),
        (
            {"KAFKA_PROPERTY_SASL_PASSWORD": "pw"},
            "Config 'KAFKA_PROPERTY_SASL_PASSWORD' sets 'sasl.password', which the service",
        ),
    ],
)
def test_a_bad_kafka_security_setting_names_the_variable(
    environ: dict[str, str], expected: str
) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(environ)
    assert str(error.value).startswith(expected)


def test_a_client_certificate_needs_its_key(tmp_path: Path) -> None:
    cert = tmp_path / "client.crt"
    cert.touch()
    with pytest.raises(ConfigError, match="'KAFKA_SSL_CERT_FILE' and 'KAFKA_SSL_KEY_FILE' go"):
        load_settings({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CERT_FILE": str(cert)})


def test_an_unknown_librdkafka_property_stops_the_start_naming_the_passthrough() -> None:
    settings = load_settings({"KAFKA_PROPERTY_NO_SUCH_THING": "1"})
    with pytest.raises(ConfigError) as error:
        ensure_topics(settings)
    assert "no.such.thing" in str(error.value)
    assert "KAFKA_PROPERTY_" in str(error.value)


def test_postgres_tls_settings_reach_the_connection_string(tmp_path: Path) -> None:
    root = tmp_path / "root.crt"
    root.touch()
    settings = load_settings({"POSTGRES_SSLMODE": "Verify-Full", "POSTGRES_SSLROOTCERT": str(root)})
    params = conninfo_to_dict(settings.postgres_conninfo)
    assert (params["sslmode"], params["sslrootcert"]) == ("verify-full", str(root))


def test_a_postgres_url_replaces_the_parts() -> None:
    settings = load_settings(
        {
            "POSTGRES_HOST": "ignored",
            "POSTGRES_PORT": "1",
            "POSTGRES_URL": "postgresql://svc:s%20ecret@db.example.com/orders_prod"
            "?sslmode=require&target_session_attrs=read-write",
        }
    )
    assert (settings.postgres_host, settings.postgres_port, settings.postgres_db) == (
        "db.example.com",
        "5432",
        "orders_prod",
    )
    params = conninfo_to_dict(settings.postgres_conninfo)
    assert params["password"] == "s ecret"
    assert params["sslmode"] == "require"
    assert params["target_session_attrs"] == "read-write"


def test_comma_separated_hosts_and_ports_reach_libpq_as_lists() -> None:
    settings = load_settings({"POSTGRES_HOST": "db1, db2", "POSTGRES_PORT": "55432, 55433"})
    params = conninfo_to_dict(settings.postgres_conninfo)
    assert (params["host"], params["port"]) == ("db1,db2", "55432,55433")


def test_one_port_serves_every_host() -> None:
    settings = load_settings({"POSTGRES_HOST": "db1,db2,db3", "POSTGRES_PORT": "6432"})
    assert conninfo_to_dict(settings.postgres_conninfo)["port"] == "6432"


def test_a_url_with_several_hosts_keeps_them_all_and_defaults_a_missing_port() -> None:
    settings = load_settings(
        {"POSTGRES_URL": "postgresql://u:p@db1:55432,db2/orders?target_session_attrs=any"}
    )
    assert (settings.postgres_host, settings.postgres_port) == ("db1,db2", "55432,5432")
    assert conninfo_to_dict(settings.postgres_conninfo)["target_session_attrs"] == "any"


def test_writers_always_ask_libpq_for_the_host_that_accepts_writes() -> None:
    settings = load_settings(
        {"POSTGRES_URL": "postgresql://u:p@db1,db2/orders?target_session_attrs=prefer-standby"}
    )
    params = conninfo_to_dict(settings.postgres_primary_conninfo)
    assert params["target_session_attrs"] == "read-write"
    assert params["host"] == "db1,db2"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        (
            {"POSTGRES_PORT": "55432,abc"},
            "Config 'POSTGRES_PORT' has value '55432,abc'. Expected an integer from 1 to 65535, "
            "or several separated by commas",
        ),
        (
            {"POSTGRES_HOST": "db1,db2,db3", "POSTGRES_PORT": "1,2"},
            "Config 'POSTGRES_PORT' has value '1,2': 2 ports for the 3 hosts",
        ),
        ({"POSTGRES_HOST": "db1,,db2"}, "has an empty host between its commas"),
    ],
)
def test_a_host_list_that_libpq_cannot_use_stops_the_start(
    environ: dict[str, str], expected: str
) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(environ)
    assert expected in str(error.value)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        (
            {"POSTGRES_SSLMODE": "strict"},
            "Config 'POSTGRES_SSLMODE' has value 'strict'. Expected one of disable, allow, "
            "prefer, require, verify-ca, verify-full.",
        ),
        (
            {"POSTGRES_SSLROOTCERT": "/nonexistent/root.crt"},
            "Config 'POSTGRES_SSLROOTCERT' has value '/nonexistent/root.crt', which is not a "
            "readable file.",
        ),
        (
            {"POSTGRES_URL": "postgresql://svc:hunter2@db/orders?sslmode=sometimes"},
            "Config 'POSTGRES_SSLMODE' has value 'sometimes'",
        ),
        (
            {"POSTGRES_URL": "postgresql://svc:hunter2@db/orders?no_such_option=1"},
            "Config 'POSTGRES_URL' is not a PostgreSQL connection URL",
        ),
    ],
)
def test_a_bad_postgres_tls_setting_names_the_variable(
    environ: dict[str, str], expected: str
) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(environ)
    assert str(error.value).startswith(expected)
    assert "hunter2" not in str(error.value)


def test_an_unusable_metrics_dir_is_a_config_error_with_exit_78(tmp_path: Path) -> None:
    a_file = tmp_path / "not-a-directory"
    a_file.write_text("")
    result = subprocess.run(
        [sys.executable, "-m", "service", "migrate", "version"],
        env={"METRICS_DIR": str(a_file / "metrics"), "PATH": ""},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == OPERATOR_ERROR_EXIT
    assert f"error: Config 'METRICS_DIR' has value '{a_file / 'metrics'}'" in result.stderr
    assert "Traceback" not in result.stderr


def test_metrics_dir_is_created_when_missing(tmp_path: Path) -> None:
    wanted = tmp_path / "new" / "metrics"
    assert load_settings({"METRICS_DIR": str(wanted)}).metrics_dir == str(wanted)
    assert wanted.is_dir()


class _Recording(dict[str, str]):
    """An empty environment that remembers every variable looked up in it."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self.asked.add(str(key))
        return super().__contains__(key)

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return super().__getitem__(key)


REPO = Path(__file__).resolve().parents[1]
# Read by the local infrastructure scripts and docker compose, not by the service.
NOT_SERVICE_SETTINGS = {
    "POSTGRES_CLUSTER",
    "KAFKA_LOCAL_PORT",
    "KAFKA_CONTROLLER_PORT",
    "GRAFANA_ADMIN_PASSWORD",
}


def test_readme_env_example_and_load_settings_name_the_same_variables() -> None:
    environ = _Recording()
    load_settings(environ)
    readme = (REPO / "README.md").read_text()
    table = re.findall(r"^\| (`[A-Z][A-Z0-9_]+`(?: / `[A-Z][A-Z0-9_]+`)*) \|", readme, re.M)
    documented = {name for cell in table for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", cell)}
    example = set(
        re.findall(r"^(?:# )?([A-Z][A-Z0-9_]+)=", (REPO / ".env.example").read_text(), re.M)
    )
    assert documented == environ.asked
    assert example - NOT_SERVICE_SETTINGS == environ.asked


def test_min_insync_replicas_defaults_to_one_below_the_replication() -> None:
    assert load_settings({}).kafka_min_insync_replicas == 1
    assert load_settings({"KAFKA_REPLICATION": "3"}).kafka_min_insync_replicas == 2
    settings = load_settings({"KAFKA_REPLICATION": "3", "KAFKA_MIN_INSYNC_REPLICAS": "3"})
    assert settings.kafka_min_insync_replicas == 3
    with pytest.raises(ConfigError, match="'KAFKA_MIN_INSYNC_REPLICAS' has value '2'"):
        load_settings({"KAFKA_MIN_INSYNC_REPLICAS": "2"})


def test_a_topic_weaker_than_the_settings_is_used_with_a_warning_naming_both(
    service_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    settings = load_settings(service_env)
    admin = AdminClient({"bootstrap.servers": settings.kafka_brokers})
    weak = {"min.insync.replicas": "1"}
    topics = [
        NewTopic(t, 1, 1, config=weak) for t in (settings.kafka_topic, settings.kafka_dlq_topic)
    ]
    for future in admin.create_topics(topics).values():
        future.result(timeout=30)
    wanted = load_settings(
        {**service_env, "KAFKA_REPLICATION": "3", "KAFKA_MIN_INSYNC_REPLICAS": "2"}
    )
    with caplog.at_level(logging.WARNING, logger="service.ingest.kafka"):
        ensure_topics(wanted)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for topic in (settings.kafka_topic, settings.kafka_dlq_topic):
        assert (
            f"topic {topic!r} exists with replication factor 1, below KAFKA_REPLICATION=3; "
            in " ".join(warnings)
        )
        assert (
            f"topic {topic!r} exists with min.insync.replicas=1, below "
            "KAFKA_MIN_INSYNC_REPLICAS=2; " in " ".join(warnings)
        )


def test_the_topics_the_service_creates_carry_min_insync_replicas(
    service_env: dict[str, str],
) -> None:
    settings = load_settings(service_env)
    ensure_topics(settings)
    admin = AdminClient({"bootstrap.servers": settings.kafka_brokers})
    resources = [
        ConfigResource(ConfigResource.Type.TOPIC, t)
        for t in (settings.kafka_topic, settings.kafka_dlq_topic)
    ]
    for future in admin.describe_configs(resources).values():
        assert future.result(timeout=30)["min.insync.replicas"].value == "1"


def test_the_session_timeout_reaches_the_consumer_and_is_not_a_passthrough() -> None:
    assert consumer_config(load_settings({}))["session.timeout.ms"] == 10_000
    settings = load_settings({"KAFKA_SESSION_TIMEOUT_MS": "30000"})
    assert consumer_config(settings)["session.timeout.ms"] == 30_000
    with pytest.raises(ConfigError, match=r"sets .session\.timeout\.ms., which the service sets"):
        load_settings({"KAFKA_PROPERTY_SESSION_TIMEOUT_MS": "30000"})


def test_reads_go_where_postgres_read_url_says_and_writers_stay_on_the_primary() -> None:
    settings = load_settings(
        {
            "POSTGRES_HOST": "primary",
            "POSTGRES_READ_URL": "postgresql://u:p@replica:5433/orders",
        }
    )
    assert settings.reads_from_replica
    assert conninfo_to_dict(settings.postgres_read_conninfo)["host"] == "replica"
    assert conninfo_to_dict(settings.postgres_primary_conninfo)["host"] == "primary"


def test_without_postgres_read_url_reads_go_to_the_configured_hosts() -> None:
    settings = load_settings({"POSTGRES_HOST": "db1,db2"})
    assert not settings.reads_from_replica
    assert settings.postgres_read_conninfo == settings.postgres_conninfo


def test_a_malformed_read_url_names_its_variable_and_hides_its_password() -> None:
    with pytest.raises(ConfigError) as error:
        load_settings({"POSTGRES_READ_URL": "postgresql://u:secret@h/db?no_such_option=1"})
    assert "'POSTGRES_READ_URL'" in str(error.value)
    assert "secret" not in str(error.value)
