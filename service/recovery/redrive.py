"""`python -m service dlq redrive`: dead letters checked again by this build, and those that now
pass stored through the consumer's writer.

The selected dead letters are read from the dead-letter topic (without a consumer group) and
taken in chunks. Each chunk is one transaction: the letters the ledger already lists are
skipped, the rest decoded with the current settings (`ORDER_UNKNOWN_FIELDS` among them), the
valid orders written by `OrderWriter` (first write wins: an order already stored is left as it
is), and each brought-back letter noted in the ledger with its outcome. An interrupted re-drive
therefore leaves whole chunks behind it, and running it again stores what is left, each order
once. Letters still refused stay in the topic as they are, are not dead-lettered again, and get
no ledger row, so a later build may still bring them back. `dry_run` does all of it in a
transaction that is rolled back: its report is exactly what a real run would do now.
"""

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from service.config import Settings
from service.model import Document, Rejection, decode_order
from service.observability import metrics
from service.recovery import ledger
from service.recovery.dead_letters import (
    DeadLetter,
    DeadLetterTopic,
    Origin,
    Selection,
    dead_letter,
)
from service.store.copy_in import CopyBatch
from service.store.db import Connection, connect, translated_errors
from service.store.migrate import check_current
from service.store.writer import OrderWriter, Written

CHUNK = 1000

Progress = Callable[[int, int], None]


@dataclass
class Report:
    """What a re-drive did (or, dry, would do) with the dead letters it selected."""

    selected: int = 0
    stored: int = 0
    already_stored: int = 0
    already_redriven: int = 0
    still_refused: Counter[str] = field(default_factory=Counter)


def redrive(
    settings: Settings, selection: Selection, dry_run: bool, progress: Progress | None = None
) -> Report:
    report = Report()
    conn = connect(settings)
    try:
        check_current(conn, Path(settings.migrations_dir))
        writer = OrderWriter(conn)
        topic = DeadLetterTopic(settings, selection.since)
        try:
            _redrive_topic(settings, conn, writer, topic, selection, dry_run, report, progress)
        finally:
            topic.close()
    finally:
        conn.close()
    return report


def _redrive_topic(
    settings: Settings,
    conn: Connection,
    writer: OrderWriter,
    topic: DeadLetterTopic,
    selection: Selection,
    dry_run: bool,
    report: Report,
    progress: Progress | None,
) -> None:
    seen: set[Origin] = set()
    chunk: list[DeadLetter] = []
    for read, message in enumerate(topic, start=1):
        letter = dead_letter(message)
        if selection.takes(letter) and letter.identity not in seen:
            seen.add(letter.identity)
            report.selected += 1
            chunk.append(letter)
            if len(chunk) == CHUNK:
                _redrive_chunk(settings, conn, writer, chunk, dry_run, report)
                chunk = []
        if progress is not None:
            progress(read, topic.expected)
    if chunk:
        _redrive_chunk(settings, conn, writer, chunk, dry_run, report)


def _redrive_chunk(
    settings: Settings,
    conn: Connection,
    writer: OrderWriter,
    letters: list[DeadLetter],
    dry_run: bool,
    report: Report,
) -> None:
    """One transaction: the chunk's letters stored or counted, and the ledger told."""
    refused: Counter[str] = Counter()
    with translated_errors(), conn.transaction(force_rollback=dry_run):
        done = ledger.redriven(conn, (letter.identity for letter in letters))
        batch = CopyBatch()
        tagged: list[tuple[Document, DeadLetter]] = []
        repeats: list[tuple[DeadLetter, str]] = []
        for letter in letters:
            if letter.identity in done:
                continue
            result = decode_order(letter.value, settings.unknown_fields)
            if isinstance(result, Rejection):
                refused[result.kind] += 1
            elif batch.add(*result):
                tagged.append((result, letter))
            else:
                repeats.append((letter, result[0].order_uid))
        written: Written[DeadLetter] = (
            writer.write_isolating(tagged, batch) if tagged else Written([], [])
        )
        new = {order.order_uid for order, _ in written.stored}
        rejected = {letter for letter, _ in written.rejected}
        refused["db_rejected"] += len(rejected)
        entries = [
            (
                letter.identity,
                order.order_uid,
                "stored" if order.order_uid in new else "already_stored",
            )
            for (order, _), letter in tagged
            if letter not in rejected
        ]
        entries += [(letter.identity, uid, "already_stored") for letter, uid in repeats]
        ledger.record(conn, entries)
    outcomes = Counter(outcome for _, _, outcome in entries)
    report.stored += outcomes["stored"]
    report.already_stored += outcomes["already_stored"]
    report.already_redriven += len(done)
    report.still_refused.update(+refused)
    if not dry_run:
        for outcome, count in (*outcomes.items(), ("still_refused", refused.total())):
            metrics.DEAD_LETTERS_REDRIVEN.labels(outcome).inc(count)
