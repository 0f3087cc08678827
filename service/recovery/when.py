"""The instants operators type on the command line: an ISO 8601 time, or a duration ago."""

import re
from datetime import UTC, datetime, timedelta

from service.errors import ConfigError

_DURATION = re.compile(r"([0-9]{1,9})([smhd])")
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_instant(text: str, now: datetime | None = None) -> datetime:
    """`text` as an aware UTC datetime: ISO 8601 (UTC unless it gives an offset), or a
    duration such as `30m`, `6h`, `2d` before `now` (default: the current time)."""
    value = text.strip()
    duration = _DURATION.fullmatch(value)
    if duration is not None:
        start = now if now is not None else datetime.now(UTC)
        try:
            return _utc(start) - timedelta(**{_UNIT[duration[2]]: int(duration[1])})
        except OverflowError:
            raise ConfigError(
                f"Duration {text!r} reaches back before the year 1. Expected a shorter one, "
                "such as '30m', '6h', '2d'."
            ) from None
    try:
        return _utc(datetime.fromisoformat(value))
    except ValueError:
        raise ConfigError(
            f"Time {text!r} is neither an ISO 8601 time nor a duration. Expected e.g. "
            "'2026-12-06T09:30' (UTC unless an offset is given, as in '2026-12-06T09:30+01:00') "
            "or a duration ago: '30s', '30m', '6h', '2d'."
        ) from None


def _utc(instant: datetime) -> datetime:
    if instant.tzinfo is None:
        return instant.replace(tzinfo=UTC)
    return instant.astimezone(UTC)
