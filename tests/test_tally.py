import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor

from prometheus_client import CollectorRegistry, Counter

from service.api.tally import Tally


def _counter(name: str) -> Counter:
    """A counter of its own: in multiprocess mode a value lives on under its name."""
    unique = f"{name}_{uuid.uuid4().hex}"
    return Counter(unique, name, registry=CollectorRegistry())


def _value(counter: Counter) -> float:
    return counter._value.get()  # type: ignore[no-any-return]


def test_a_lone_request_is_counted_at_once_and_a_burst_by_the_end_of_its_iteration() -> None:
    hits, ok = _counter("hits"), _counter("ok")
    both, hits_only = (hits, ok), (hits,)
    tally = Tally()
    seen: list[tuple[float, float]] = []

    async def burst() -> None:
        tally.bind(asyncio.get_running_loop())
        tally.count(both)
        seen.append((_value(hits), _value(ok)))
        for _ in range(9):
            tally.count(both)
        seen.append((_value(hits), _value(ok)))
        await asyncio.sleep(0)
        seen.append((_value(hits), _value(ok)))
        tally.count(hits_only)
        seen.append((_value(hits), _value(ok)))

    # A thread of its own: the browser tests leave an event loop running in this one.
    with ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, burst()).result()
    assert seen == [(1, 1), (1, 1), (10, 10), (11, 10)]


def test_flush_writes_what_is_left_when_the_loop_has_stopped() -> None:
    hits = (_counter("hits"),)
    tally = Tally()
    loop = asyncio.new_event_loop()
    try:
        tally.bind(loop)
        tally.count(hits)
        tally.count(hits)
        assert _value(hits[0]) == 1
        tally.flush()
        assert _value(hits[0]) == 2
    finally:
        loop.close()
