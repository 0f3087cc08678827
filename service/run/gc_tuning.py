"""The cyclic garbage collector's settings for the two processes that move orders in bulk: the
consumer, and the runner of `serve` and `run`, which does the warm-up.

Both allocate tens of GC-tracked objects per order (msgspec Structs, lists, tuples) and free
them soon after by reference counting; none of them form cycles. With CPython's default
threshold of 700 allocations a young collection ran every few dozen orders, and the older
generations walked the batches in hand: a large share of the consumer's CPU and of the
warm-up's, for nothing found (docs/profiling-study.md, section 7.2). A young collection every
100,000 allocations still bounds what garbage a cycle can leave to a few megabytes; what
survives one is the batches in hand, so the older generations are walked far more rarely
than by default (an A/B of the consumer: with the default 10 and 10 the gain was half as
large). `gc.freeze` keeps the start-up heap (modules, settings) out of every collection. The
API workers, which allocate little per request, keep the defaults.
"""

import gc

THRESHOLDS = (100_000, 50, 1_000)


def tune_for_bulk() -> None:
    """Collect rarely, and never look at what exists now again."""
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
