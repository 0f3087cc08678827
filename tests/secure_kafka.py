"""A second KRaft broker from the local broker's jars, for the TLS and SASL tests: a SASL_SSL
listener with SCRAM users (added when its storage is formatted) and an SSL listener that
requires a client certificate, both with a broker certificate from a CA made by `openssl`.
Its ports are free ones and its data lives in the test's temporary directory."""

import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.certs import Authority, Certificate, make_authority, make_certificate
from tests.fix_processes import REPO, free_port

LIBS = Path(os.environ.get("ORDERS_STATE_DIR", REPO / ".local")) / "kafka" / "libs"
SINGLE_NODE = REPO / "infra" / "kafka" / "single-node.properties"
SCRAM_MECHANISM = "SCRAM-SHA-512"


@dataclass(frozen=True)
class SecureKafka:
    sasl_ssl: str
    ssl: str
    authority: Authority
    client: Certificate
    username: str
    password: str


def _properties(home: Path, ports: dict[str, int], broker: Certificate, ca: Path) -> str:
    listeners = ",".join(f"{name}://localhost:{port}" for name, port in ports.items())
    keystore = home / "broker.pem"
    keystore.write_text(broker.key.read_text() + broker.cert.read_text())
    jaas = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    return f"""
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=localhost:{ports["CONTROLLER"]}
listeners={listeners}
advertised.listeners={listeners}
controller.listener.names=CONTROLLER
inter.broker.listener.name=INTERNAL
listener.security.protocol.map=CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL
sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config={jaas}
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={jaas}
ssl.keystore.type=PEM
ssl.keystore.location={keystore}
ssl.truststore.type=PEM
ssl.truststore.location={ca}
listener.name.ssl.ssl.client.auth=required
log.dirs={home / "data"}
offsets.topic.num.partitions=2
{SINGLE_NODE.read_text()}"""


def _java(*args: str | Path) -> list[str]:
    return ["java", "-Xms128m", "-Xmx512m", "-cp", f"{LIBS}/*", *map(str, args)]


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the TLS broker exited:\n{log.read_text()[-3000:]}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"the TLS broker did not open port {port}:\n{log.read_text()[-3000:]}")


@contextmanager
def secure_kafka(home: Path) -> Iterator[SecureKafka]:
    """Start the broker in `home`; stopped (SIGTERM, then SIGKILL) on leaving."""
    authority = make_authority(home / "ca", "kafka-test-ca")
    broker = make_certificate(authority, home / "broker", "localhost")
    client = make_certificate(authority, home / "client", "orders-client")
    ports = {name: free_port() for name in ("SASL_SSL", "SSL", "INTERNAL", "CONTROLLER")}
    config = home / "server.properties"
    config.write_text(_properties(home, ports, broker, authority.cert))
    username, password = "orders", uuid.uuid4().hex
    cluster = subprocess.run(
        _java("kafka.tools.StorageTool", "random-uuid"), check=True, capture_output=True, text=True
    ).stdout.strip()
    subprocess.run(
        _java(
            "kafka.tools.StorageTool", "format", "-t", cluster, "-c", config, "--standalone",
            "--add-scram", f"{SCRAM_MECHANISM}=[name={username},password={password}]",
        ),
        check=True,
        capture_output=True,
    )  # fmt: skip
    log = home / "broker.out"
    with log.open("wb") as out:
        process = subprocess.Popen(
            _java(
                f"-Dlog4j2.configurationFile={REPO / 'infra' / 'kafka' / 'log4j2.yaml'}",
                f"-Dkafka.logs.dir={home}",
                "kafka.Kafka",
                config,
            ),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for_port(ports["SASL_SSL"], process, log)
        yield SecureKafka(
            sasl_ssl=f"localhost:{ports['SASL_SSL']}",
            ssl=f"localhost:{ports['SSL']}",
            authority=authority,
            client=client,
            username=username,
            password=password,
        )
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
