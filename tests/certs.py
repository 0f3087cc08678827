"""Throwaway certificate authorities and certificates made with `openssl`, for the tests that
talk TLS to a real Kafka broker or PostgreSQL server."""

import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Authority:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def make_authority(directory: Path, name: str) -> Authority:
    """A self-signed CA with a unique subject, so two runs' CAs never trust each other."""
    directory.mkdir(parents=True, exist_ok=True)
    authority = Authority(directory / f"{name}.crt", directory / f"{name}.key")
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-keyout", authority.key, "-out", authority.cert,
        "-subj", f"/CN={name}-{uuid.uuid4().hex[:8]}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return authority


def make_certificate(authority: Authority, directory: Path, name: str) -> Certificate:
    """A certificate for `name` (also valid for localhost and 127.0.0.1), signed by
    `authority`, usable by a server and a client alike. The key is unencrypted PKCS#8."""
    directory.mkdir(parents=True, exist_ok=True)
    made = Certificate(directory / f"{name}.crt", directory / f"{name}.key")
    request = directory / f"{name}.csr"
    extensions = directory / f"{name}.ext"
    extensions.write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
        "extendedKeyUsage=serverAuth,clientAuth\n"
        "basicConstraints=CA:FALSE\n"
    )
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", made.key, "-out", request,
        "-subj", f"/CN={name}",
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", request, "-CA", authority.cert, "-CAkey", authority.key,
        "-CAcreateserial", "-days", "2", "-out", made.cert, "-extfile", extensions,
    )  # fmt: skip
    return made
