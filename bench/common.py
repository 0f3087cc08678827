"""What every benchmark shares: progress lines, a fresh migrated database, machine facts, and
writing results to bench/results/<name>-latest.json."""

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

from service.config import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def fresh_database(base: dict[str, str], name: str) -> Settings:
    """Drop and recreate database `name`, migrate it, and return settings pointing at it."""
    admin = load_settings({**base, "POSTGRES_DB": "postgres"}).postgres_conninfo
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    env = {**base, "POSTGRES_DB": name}
    subprocess.run(
        [sys.executable, "-m", "service", "migrate", "up"],
        env=env,
        check=True,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
    )
    return load_settings(env)


def machine(**extra: str) -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        **extra,
    }


def save_result(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}-latest.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    log(f"wrote {path.relative_to(REPO)}")
    return path
