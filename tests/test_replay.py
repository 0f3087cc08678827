"""`python -m service replay`: the group moved back to a time on the real broker, and the
orders stored again by the next consumer."""

import re
import time
from datetime import UTC, datetime

import pytest
from confluent_kafka import Consumer, Message

from service.config import Settings, load_settings
from service.errors import OPERATOR_ERROR_EXIT, ReplayRefused
from service.ingest.kafka import checked_admin, consumer_config, ensure_topics
from service.model import Order, encode_order
from service.recovery import replay
from service.recovery.replay import Move
from tests.fix_db import Conn, assert_stored_exactly, stored_count
from tests.fix_kafka import assignment, committed, produce, read_all, topic_size, topics, unread
from tests.fix_processes import Completed, consume_all, run_service, service_process, wait_for
from tests.orders import random_orders

pytestmark = pytest.mark.integration

_MOVE = re.compile(r"partition (\d+): (none|\d+) → (\d+)")
_TABLES = ("orders", "deliveries", "payments", "items", "order_documents")


def _produce(env: dict[str, str], orders: list[Order]) -> list[Message]:
    """Send `orders` and read them back from the topic, with their timestamps."""
    brokers, topic = env["KAFKA_BROKERS"], env["KAFKA_TOPIC"]
    values = [encode_order(o) for o in orders]
    produce(brokers, topic, values, [o.order_uid for o in orders])
    mine = {o.order_uid.encode() for o in orders}
    messages = read_all(brokers, topic, topic_size(brokers, topic))
    return [m for m in messages if m.key() in mine]


def _millis(message: Message) -> int:
    return message.timestamp()[1]


def _iso(millis: int) -> str:
    """The instant as ISO 8601 without an offset (UTC), to the millisecond."""
    return datetime.fromtimestamp(millis / 1000, UTC).replace(tzinfo=None).isoformat()


def _assigned(member: Consumer) -> bool:
    """Whether `member` has partitions, after serving its group protocol for a moment."""
    member.poll(0.2)
    return bool(member.assignment())


def _forget(db: Conn, orders: list[Order]) -> None:
    """Delete the orders from every table, as a restore from an older backup would."""
    uids = [o.order_uid for o in orders]
    for table in _TABLES:
        db.execute(f"DELETE FROM {table} WHERE order_uid = ANY(%s)", (uids,))
    assert stored_count(db, uids) == 0


def _replay(env: dict[str, str], *args: str) -> Completed:
    result = run_service(env, "replay", *args)
    assert result.returncode == 0, result.stderr
    return result


def _moves(result: Completed) -> dict[int, tuple[int | None, int]]:
    """partition → (old, new) as printed."""
    return {
        int(p): (None if old == "none" else int(old), int(new))
        for p, old, new in _MOVE.findall(result.stdout)
    }


@pytest.fixture
def missing_topic_env(service_env: dict[str, str], settings: Settings) -> dict[str, str]:
    """A test's own topic and group, the topic not created."""
    return {**service_env, "KAFKA_BROKERS": settings.kafka_brokers}


@pytest.fixture
def env(missing_topic_env: dict[str, str]) -> dict[str, str]:
    """A test's own topic and group, the topic created as the service creates it."""
    ensure_topics(load_settings(missing_topic_env))
    return missing_topic_env


def test_replay_since_a_time_stores_again_exactly_what_came_after_it(
    env: dict[str, str], db: Conn
) -> None:
    first, second = random_orders(120, seed=9101), random_orders(80, seed=9102)
    first_messages = _produce(env, first)
    last_of_first = max(_millis(m) for m in first_messages)
    # The second phase starts in a later millisecond, so T separates the phases exactly.
    wait_for(lambda: time.time() * 1000 > last_of_first + 1, what="a later millisecond")
    since = min(_millis(m) for m in _produce(env, second))
    assert since > last_of_first
    consume_all(env)
    assert_stored_exactly(db, first + second)
    at_end = committed(env["KAFKA_BROKERS"], env["KAFKA_GROUP"], env["KAFKA_TOPIC"])

    _forget(db, first + second)
    moves = _moves(_replay(env, "--since", _iso(since)))
    assert {p: old for p, (old, _) in moves.items()} == at_end
    # Each partition goes back by as many messages as it holds of the second phase.
    assert sum(old - new for old, new in moves.values() if old is not None) == len(second)
    consume_all(env)
    assert_stored_exactly(db, second)
    assert stored_count(db, [o.order_uid for o in first]) == 0

    moves = _moves(_replay(env, "--since", "1d"))
    assert {new for _, new in moves.values()} == {0}
    consume_all(env)
    # The second phase read a third time, and still stored once.
    assert_stored_exactly(db, first + second)


def test_replay_is_refused_while_the_group_has_a_member(env: dict[str, str]) -> None:
    brokers, group, topic = env["KAFKA_BROKERS"], env["KAFKA_GROUP"], env["KAFKA_TOPIC"]
    _produce(env, random_orders(30, seed=9103))
    with service_process(env, "consume"):
        wait_for(lambda: unread(brokers, group, topic) == 0, what="the topic committed")
        wait_for(lambda: bool(assignment(brokers, group)), what="the consumer in the group")
        before = committed(brokers, group, topic)
        result = run_service(env, "replay", "--since", "1d")
        assert committed(brokers, group, topic) == before
    assert result.returncode == OPERATOR_ERROR_EXIT, result.stderr
    assert f"Consumer group {group!r} has 1 active member(s)" in result.stderr
    assert re.search(r"member \S+ \(client \S+ on \S+\)", result.stderr), result.stderr
    assert "Stop its consumers first" in result.stderr
    assert "→" not in result.stdout


def test_kafka_refuses_the_move_itself_when_a_member_joins_after_the_check(
    env: dict[str, str],
) -> None:
    """The move of a member joining between replay's look at the group and its commit."""
    settings = load_settings(env)
    brokers, group, topic = env["KAFKA_BROKERS"], env["KAFKA_GROUP"], env["KAFKA_TOPIC"]
    _produce(env, random_orders(30, seed=9105))
    member = Consumer(consumer_config(settings))
    member.subscribe([topic])
    try:
        wait_for(lambda: _assigned(member), what="a member assigned")
        moves = [Move(p, None, 0) for p in committed(brokers, group, topic)]
        with pytest.raises(ReplayRefused, match="A consumer joined group"):
            replay._alter(settings, checked_admin(settings), moves)
        assert set(committed(brokers, group, topic).values()) == {None}
    finally:
        member.close()


def test_a_dry_run_prints_the_moves_and_changes_nothing(env: dict[str, str]) -> None:
    brokers, group, topic = env["KAFKA_BROKERS"], env["KAFKA_GROUP"], env["KAFKA_TOPIC"]
    _produce(env, random_orders(30, seed=9104))
    untouched = run_service(env, "replay", "--since", "1d", "--dry-run")
    assert untouched.returncode == 0, untouched.stderr
    assert "would move (dry run)" in untouched.stdout
    assert set(_moves(untouched).values()) == {(None, 0)}
    assert set(committed(brokers, group, topic).values()) == {None}

    consume_all(env)
    at_end = committed(brokers, group, topic)
    moves = _moves(_replay(env, "--since", "1d", "--dry-run"))
    assert moves == {p: (offset, 0) for p, offset in at_end.items()}
    assert committed(brokers, group, topic) == at_end


def test_a_bad_since_is_an_operator_error_naming_the_value(env: dict[str, str]) -> None:
    result = run_service(env, "replay", "--since", "last tuesday")
    assert result.returncode == OPERATOR_ERROR_EXIT
    assert "Time 'last tuesday' is neither an ISO 8601 time nor a duration" in result.stderr
    assert "'6h'" in result.stderr


def test_a_topic_that_does_not_exist_is_an_operator_error_and_is_not_created(
    missing_topic_env: dict[str, str],
) -> None:
    env = missing_topic_env
    result = run_service(env, "replay", "--since", "1h")
    assert result.returncode == OPERATOR_ERROR_EXIT
    assert f"has no topic {env['KAFKA_TOPIC']!r}" in result.stderr
    assert "Check 'KAFKA_TOPIC'" in result.stderr
    assert env["KAFKA_TOPIC"] not in topics(env["KAFKA_BROKERS"])
