"""`python -m service`: run everything, or one part (consume, serve, produce, migrate); print
the message contract (schema); replay the order topic from a time; read and re-drive the dead
letters (dlq)."""

import argparse
import logging
import sys
from datetime import datetime
from pathlib import Path

from service.config import Settings, load_settings
from service.errors import OPERATOR_ERROR_EXIT, OperatorError, ServiceError
from service.observability import logs
from service.run import gc_tuning

log = logging.getLogger("service")

_SINCE_HELP = "ISO 8601 time (UTC unless it has an offset) or a duration ago: 30m, 6h, 2d"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m service", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="consumer + API workers (+ demo producer)")
    run.add_argument(
        "--demo-rate",
        type=float,
        default=None,
        help="also run the demo producer at this many orders per second",
    )
    commands.add_parser("consume", help="the Kafka consumer only")
    commands.add_parser("serve", help="the HTTP API workers only").set_defaults(demo_rate=None)
    produce = commands.add_parser("produce", help="send demo orders to the topic")
    produce.add_argument("--count", type=int, default=100)
    produce.add_argument("--rate", type=float, default=None, help="orders per second")
    produce.add_argument(
        "--invalid-ratio",
        type=float,
        default=0.0,
        help="share of deliberately broken messages, 0-1",
    )
    produce.add_argument(
        "--reference",
        action="store_true",
        help="also send the reference order (web/example-order.json)",
    )
    produce.add_argument("--seed", type=int, default=None)
    commands.add_parser("schema", help="print the JSON Schema of a message on the order topic")
    migrate = commands.add_parser("migrate", help="database schema migrations")
    migrate.add_argument("direction", choices=["up", "down", "version"])
    migrate.add_argument("steps", nargs="?", type=int, default=1, help="for down: how many")
    replay = commands.add_parser(
        "replay", help="move the consumer group back to the first message at or after a time"
    )
    replay.add_argument(
        "--since",
        required=True,
        help=_SINCE_HELP,
    )
    replay.add_argument(
        "--dry-run", action="store_true", help="print the offsets it would set, change nothing"
    )
    _add_dlq(commands)
    return parser


def _add_dlq(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    from typing import get_args

    from service.model.codec import RejectionKind

    kinds = [*get_args(RejectionKind), "db_rejected"]
    dlq = commands.add_parser("dlq", help="read the dead-letter topic, re-drive what now passes")
    actions = dlq.add_subparsers(dest="action", required=True)
    actions.add_parser("stats", help="dead letters by kind and by hour, and how many re-driven")
    show = actions.add_parser("show", help="the dead letters with their headers")
    redrive = actions.add_parser(
        "redrive", help="store the dead letters this build now accepts (first write wins)"
    )
    for action in (show, redrive):
        action.add_argument("--kind", choices=kinds, default=None)
        action.add_argument(
            "--since", default=None, help=f"dead-lettered at or after: {_SINCE_HELP}"
        )
    show.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    redrive.add_argument("--until", default=None, help=f"dead-lettered before: {_SINCE_HELP}")
    redrive.add_argument(
        "--dry-run", action="store_true", help="report what it would do, change nothing"
    )


def _run(settings: Settings, args: argparse.Namespace) -> int:
    from service.run.runner import Parts, run

    gc_tuning.tune_for_bulk()
    return run(settings, Parts(consumer=args.command == "run", demo_rate=args.demo_rate))


def _consume(settings: Settings, _: argparse.Namespace) -> int:
    from service.ingest.consumer import run_consumer

    gc_tuning.tune_for_bulk()
    run_consumer(settings)
    return 0


def _produce(settings: Settings, args: argparse.Namespace) -> int:
    from service.produce import produce

    reference = Path(settings.web_dir) / "example-order.json" if args.reference else None
    produce(settings, args.count, args.rate, args.invalid_ratio, reference, args.seed)
    return 0


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    from service.store import migrate
    from service.store.db import connect

    directory = Path(settings.migrations_dir)
    with connect(settings) as conn:
        if args.direction == "up":
            applied = migrate.up(conn, directory)
            print(f"applied {applied or 'nothing'}; version {migrate.current_version(conn)}")
        elif args.direction == "down":
            reverted = migrate.down(conn, directory, args.steps)
            print(f"reverted {reverted or 'nothing'}; version {migrate.current_version(conn)}")
        else:
            print(migrate.current_version(conn))
    return 0


def _schema(settings: Settings, _: argparse.Namespace) -> int:
    from service.model.contract import order_schema_json

    sys.stdout.buffer.write(order_schema_json(settings.unknown_fields) + b"\n")
    return 0


def _replay(settings: Settings, args: argparse.Namespace) -> int:
    from service.recovery.replay import replay
    from service.recovery.when import parse_instant

    since = parse_instant(args.since)
    moves = replay(settings, since, args.dry_run)
    verb = "would move (dry run)" if args.dry_run else "moved"
    print(
        f"group {settings.kafka_group!r} {verb} to the first message at or after "
        f"{since.isoformat()} on topic {settings.kafka_topic!r}:"
    )
    for move in moves:
        old = "none" if move.old is None else str(move.old)
        print(f"  partition {move.partition}: {old} → {move.new}")
    return 0


def _dlq(settings: Settings, args: argparse.Namespace) -> int:
    from service.recovery import dlq_commands
    from service.recovery.dead_letters import Selection
    from service.recovery.when import parse_instant

    def instant(text: str | None) -> datetime | None:
        return None if text is None else parse_instant(text)

    if args.action == "stats":
        dlq_commands.stats(settings)
        return 0
    selection = Selection(args.kind, instant(args.since), instant(getattr(args, "until", None)))
    if args.action == "show":
        dlq_commands.show(settings, selection, args.limit)
    else:
        dlq_commands.run_redrive(settings, selection, args.dry_run)
    return 0


# Imported inside each command: the metrics module must see METRICS_DIR before
# prometheus_client loads.
_COMMANDS = {
    "run": _run,
    "serve": _run,
    "consume": _consume,
    "produce": _produce,
    "migrate": _migrate,
    "schema": _schema,
    "replay": _replay,
    "dlq": _dlq,
}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = load_settings()
    logs.configure(settings)
    return _COMMANDS[args.command](settings, args)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except OperatorError as exc:
        logs.report_fatal(str(exc))
        sys.exit(OPERATOR_ERROR_EXIT)
    except ServiceError as exc:
        logs.report_fatal(str(exc))
        sys.exit(1)
