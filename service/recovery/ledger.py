"""The re-drive ledger (migration 0003): which dead letters `dlq redrive` has brought back.

Rows are keyed by a dead letter's identity, its origin on the order topic, and written in the
transaction that stores its order, so the ledger and the tables never disagree.
"""

from collections import Counter
from collections.abc import Iterable

from service.recovery.dead_letters import Origin
from service.store.db import Connection

Outcome = str  # 'stored' or 'already_stored'

_KNOWN = (
    "SELECT original_topic, original_partition, original_offset, outcome "
    "FROM dead_letter_redrives WHERE (original_topic, original_partition, original_offset) IN "
    "(SELECT * FROM unnest(%s::text[], %s::integer[], %s::bigint[]))"
)
_RECORD = (
    "INSERT INTO dead_letter_redrives "
    "(original_topic, original_partition, original_offset, order_uid, outcome) "
    "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
)


def _columns(origins: Iterable[Origin]) -> tuple[list[str], list[int], list[int]]:
    listed = list(origins)
    return [o.topic for o in listed], [o.partition for o in listed], [o.offset for o in listed]


def redriven(conn: Connection, origins: Iterable[Origin]) -> dict[Origin, Outcome]:
    """The outcome recorded for each of `origins` that has been re-driven."""
    rows = conn.execute(_KNOWN, _columns(origins)).fetchall()
    return {Origin(topic, partition, offset): outcome for topic, partition, offset, outcome in rows}


def record(conn: Connection, entries: list[tuple[Origin, str, Outcome]]) -> None:
    """Note each (origin, order_uid, outcome) in the caller's transaction."""
    with conn.cursor() as cur:
        cur.executemany(
            _RECORD, [(o.topic, o.partition, o.offset, uid, outcome) for o, uid, outcome in entries]
        )


def outcomes(conn: Connection, origins: Iterable[Origin]) -> Counter[Outcome]:
    """How many of `origins` were re-driven, by outcome."""
    return Counter(redriven(conn, origins).values())
