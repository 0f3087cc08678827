"""`python -m service dlq stats|show|redrive`: what the operator reads on the terminal.

`stats` and `show` only read the dead-letter topic (and, for stats, the re-drive ledger);
`redrive` is `redrive.py`'s, with its report printed here.
"""

import sys
from collections import Counter
from datetime import datetime
from typing import TextIO

from service.config import Settings
from service.errors import ServiceError
from service.recovery import ledger
from service.recovery.dead_letters import DeadLetter, DeadLetterTopic, Selection, dead_letter
from service.recovery.progress_bar import ProgressBar
from service.recovery.redrive import Report, redrive
from service.store.db import connect, translated_errors

SHOWN_VALUE_CHARS = 600


def _letters(topic: DeadLetterTopic, selection: Selection) -> list[DeadLetter]:
    """The selected letters, the first copy of each identity."""
    letters: dict[object, DeadLetter] = {}
    for message in topic:
        letter = dead_letter(message)
        if selection.takes(letter):
            letters.setdefault(letter.identity, letter)
    return list(letters.values())


def _time(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def stats(settings: Settings, out: TextIO = sys.stdout) -> None:
    topic = DeadLetterTopic(settings)
    try:
        copies = topic.expected
        letters = _letters(topic, Selection())
    finally:
        topic.close()
    out.write(f"dead-letter topic {topic.topic!r}: {len(letters):,} dead letters")
    out.write(f" ({copies:,} messages; copies of one origin count once)\n")
    if not letters:
        return
    out.write(
        f"oldest {_time(min(x.at for x in letters))}, newest {_time(max(x.at for x in letters))}\n"
    )
    out.write("by kind:\n")
    for kind, count in Counter(x.kind for x in letters).most_common():
        out.write(f"  {kind or '(no kind header)':<16} {count:>10,}\n")
    out.write("by hour (UTC):\n")
    hours = Counter(x.at.strftime("%Y-%m-%d %H:00") for x in letters)
    for hour in sorted(hours):
        out.write(f"  {hour}  {hours[hour]:>10,}\n")
    out.write(_redriven_line(settings, letters))


def _redriven_line(settings: Settings, letters: list[DeadLetter]) -> str:
    try:
        with translated_errors(), connect(settings) as conn:
            outcomes = ledger.outcomes(conn, (x.identity for x in letters))
    except ServiceError as exc:
        return f"re-driven: unknown, the ledger could not be read ({exc})\n"
    total = outcomes.total()
    return (
        f"re-driven: {total:,} (stored {outcomes['stored']:,}, already stored "
        f"{outcomes['already_stored']:,}); not re-driven: {len(letters) - total:,}\n"
    )


def show(settings: Settings, selection: Selection, limit: int, out: TextIO = sys.stdout) -> None:
    topic = DeadLetterTopic(settings, selection.since)
    try:
        letters = _letters(topic, selection)
    finally:
        topic.close()
    for letter in letters[:limit]:
        out.write(_readable(letter))
    out.write(f"{min(limit, len(letters)):,} of {len(letters):,} selected dead letters shown\n")


def _readable(letter: DeadLetter) -> str:
    origin = letter.origin
    value = letter.value.decode(errors="replace")
    shown = value if len(value) <= SHOWN_VALUE_CHARS else value[:SHOWN_VALUE_CHARS] + " …"
    key = letter.key.decode(errors="replace") if letter.key is not None else "(none)"
    return (
        f"{letter.topic}[{letter.partition}]@{letter.offset}  {_time(letter.at)}  "
        f"{letter.kind or '(no kind header)'}\n"
        f"  from:   {origin.topic}[{origin.partition}]@{origin.offset}\n"
        f"  key:    {key}\n"
        f"  reason: {letter.reason}\n"
        f"  value:  ({len(letter.value):,} bytes) {shown}\n\n"
    )


def run_redrive(
    settings: Settings, selection: Selection, dry_run: bool, out: TextIO = sys.stdout
) -> Report:
    bar = ProgressBar(sys.stderr, "re-driving")
    try:
        report = redrive(settings, selection, dry_run, bar.update)
    finally:
        bar.finish()
    verb = "would store (dry run, nothing changed)" if dry_run else "stored"
    refused = ", ".join(f"{k} {n:,}" for k, n in report.still_refused.most_common()) or "none"
    out.write(
        f"selected {report.selected:,} dead letters: {verb} {report.stored:,}, "
        f"already stored {report.already_stored:,}, re-driven before {report.already_redriven:,}, "
        f"still refused {report.still_refused.total():,} ({refused})\n"
    )
    return report
