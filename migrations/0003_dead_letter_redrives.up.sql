-- The dead letters `python -m service dlq redrive` has brought back, by their origin.
--
-- A dead letter is identified by where its message was read: topic, partition and offset on
-- the order topic (its `original.*` headers). A batch redelivered after a crash dead-letters
-- the same message twice; both copies have the same origin and are one here. A row is written
-- in the transaction that stores the order, so a re-drive that is interrupted and run again
-- skips exactly what was stored. Messages still refused get no row: they may pass a later build.
CREATE TABLE dead_letter_redrives (
    original_topic     text        NOT NULL,
    original_partition integer     NOT NULL,
    original_offset    bigint      NOT NULL,
    order_uid          text        NOT NULL,
    outcome            text        NOT NULL CHECK (outcome IN ('stored', 'already_stored')),
    redriven_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (original_topic, original_partition, original_offset)
);
