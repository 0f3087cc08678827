from datetime import UTC, datetime, timedelta, timezone

import pytest

from service.errors import ConfigError
from service.recovery.when import parse_instant

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "ago"),
    [
        ("45s", timedelta(seconds=45)),
        ("30m", timedelta(minutes=30)),
        ("6h", timedelta(hours=6)),
        ("2d", timedelta(days=2)),
        (" 0h ", timedelta(0)),
    ],
)
def test_a_duration_is_that_long_before_now(text: str, ago: timedelta) -> None:
    assert parse_instant(text, NOW) == NOW - ago


def test_a_duration_counts_back_from_the_current_time_by_default() -> None:
    before = datetime.now(UTC)
    instant = parse_instant("1h")
    assert before - timedelta(hours=1) <= instant <= datetime.now(UTC) - timedelta(hours=1)


def test_a_time_without_an_offset_is_utc() -> None:
    assert parse_instant("2026-12-06T09:30") == datetime(2026, 12, 6, 9, 30, tzinfo=UTC)
    assert parse_instant("2026-12-06") == datetime(2026, 12, 6, tzinfo=UTC)


def test_a_time_with_an_offset_is_the_same_instant_in_utc() -> None:
    instant = parse_instant("2026-12-06T10:30:15.250+01:00")
    assert instant == datetime(2026, 12, 6, 9, 30, 15, 250_000, tzinfo=UTC)
    assert instant.tzinfo == UTC
    assert parse_instant("2026-12-06T09:30Z") == datetime(2026, 12, 6, 9, 30, tzinfo=UTC)


def test_a_naive_now_is_taken_as_utc() -> None:
    assert parse_instant("1h", datetime(2026, 12, 6, 12, 0)) == NOW - timedelta(hours=1)
    local = NOW.astimezone(timezone(timedelta(hours=3)))
    assert parse_instant("1h", local) == NOW - timedelta(hours=1)


@pytest.mark.parametrize(
    "text", ["", "yesterday", "6 h", "6H", "-6h", "1w", "2026-13-01", "12345678901d"]
)
def test_anything_else_is_refused_naming_the_value_and_the_accepted_forms(text: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_instant(text, NOW)
    message = str(refused.value)
    assert repr(text) in message
    assert "ISO 8601" in message
    assert "6h" in message


def test_a_duration_before_the_year_1_is_refused() -> None:
    with pytest.raises(ConfigError, match="before the year 1"):
        parse_instant("999999999d", NOW)
