# Recipes for the order service. On a fresh machine run them through ./dev (it creates the
# virtualenv that provides `just`): ./dev up, ./dev test.

set dotenv-load := true

python := ".venv/bin/python"

# List the recipes.
default:
    @just --list

# Everything, locally: PostgreSQL, Kafka, migrations, consumer, API workers and demo producer.
up: infra-up migrate-up
    exec {{python}} -m service run --demo-rate ${DEMO_RATE:-20}

# Start PostgreSQL and Kafka (idempotent).
infra-up:
    bash infra/postgres.sh up
    bash infra/kafka.sh up

# Stop PostgreSQL and Kafka (their data stays under .local/ and the Debian cluster).
infra-down:
    bash infra/kafka.sh down
    bash infra/postgres.sh down

# Three KRaft brokers for the replicated-cluster tests: up|down|status|brokers, or
# start|stop|kill 1|2|3 (ports from KAFKA_CLUSTER_BASE_PORT, 9400 by default).
kafka-cluster *args="up":
    bash infra/kafka-cluster.sh {{args}}

# Apply every pending migration.
migrate-up:
    {{python}} -m service migrate up

# Revert the newest migration (or N: just migrate-down 2).
migrate-down steps="1":
    {{python}} -m service migrate down {{steps}}

# Print the schema version.
migrate-version:
    {{python}} -m service migrate version

# The JSON Schema every message on the order topic must meet (ORDER_UNKNOWN_FIELDS decides).
schema:
    {{python}} -m service schema

# Send demo orders: just produce 1000, or at a rate: just produce 100000 --rate 500.
produce count="100" *args="":
    {{python}} -m service produce --count {{count}} {{args}}

# Re-read the order topic from a time, with every consumer stopped: just replay --since 6h,
# just replay --since 2026-12-06T09:30 --dry-run (see the README's Operations).
replay *args="":
    {{python}} -m service replay {{args}}

# The dead letters: just dlq stats, just dlq show --kind invalid_order, just dlq redrive
# --kind invalid_order --dry-run (see the README's Operations).
dlq *args="":
    {{python}} -m service dlq {{args}}

# The full test suite against real PostgreSQL, Kafka and Chromium.
test *args="": test-deps
    {{python}} -m pytest {{args}}

# The quick set: everything not marked slow.
test-fast *args="": test-deps
    {{python}} -m pytest -m "not slow" {{args}}

# Run the suite (or chosen tests) N times; every failure is printed with its run number.
# just test-repeat 10 tests/test_faults.py -k sigkill
test-repeat runs *args="": test-deps
    bash infra/test-repeat.sh {{runs}} {{args}}

# Versions already pinned stay unless asked: ./dev lock --upgrade, ./dev lock --upgrade-package granian
# Re-pin the dependencies with hashes (requirements*.lock) after editing pyproject.toml.
lock *args="":
    .venv/bin/uv pip compile pyproject.toml --extra dev {{lock_flags}} {{args}} -o requirements-dev.lock
    .venv/bin/uv pip compile pyproject.toml {{lock_flags}} -c requirements-dev.lock -o requirements.lock
    echo setuptools | .venv/bin/uv pip compile - {{lock_flags}} -c requirements-dev.lock -o requirements-build.lock

lock_flags := "--universal --python-version 3.11 --generate-hashes --custom-compile-command './dev lock' -q"

# Linters and type checks.
lint:
    .venv/bin/ruff check service tests bench
    .venv/bin/ruff format --check service tests bench
    .venv/bin/mypy service bench tests

# Every benchmark, each with its ceiling in the same run (minutes); --quick, --plots (sweeps).
bench *args="": infra-up bench-deps
    {{python}} -m bench {{args}}

# py-spy flamegraphs of the consumer and the API workers under load into profiles/ (--only hit).
profile *args="": infra-up bench-deps
    {{python}} -m bench.profile {{args}}

# System packages the benchmarks use beyond PostgreSQL and Kafka (wrk).
bench-deps:
    bash infra/bench-deps.sh

# System packages the tests use beyond PostgreSQL and Kafka (Chromium for the page).
test-deps:
    bash infra/test-deps.sh
