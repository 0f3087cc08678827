"""How granian runs the API: worker processes and each worker's runtime options, as measured
by bench/http.py's layout sweep (docs/performance.md has the table).

`HTTP_WORKERS=auto` (the default) gives one worker per core left once granian's Rust I/O
threads, the kernel's network stack and, under `run`, the consumer have theirs: on 2 cores that
is one worker, which the sweep found fastest by far (two processes on two cores fight each
other and the clients for the same cores). A lone worker gets a multi-threaded runtime with two
threads, so granian's socket work runs beside its Python thread on the other core, which
served more hits than one thread on a 2-core AMD EPYC (docs/performance.md, "granian layout";
profiling study, 8.2); with several workers the cores are theirs, and each keeps one runtime
thread. An
explicit count always wins. granian's own variables (GRANIAN_RUNTIME_THREADS,
GRANIAN_RUNTIME_MODE, GRANIAN_TASK_IMPL, GRANIAN_LOOP, GRANIAN_BACKPRESSURE) override the
runtime options chosen here.
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass

# Connections one worker holds at once (granian takes a permit per connection, for its whole
# life); beyond it new ones wait in the listen backlog. Far above the default (backlog /
# workers) so a flood of idle connections is shed by the header timeout before it can crowd
# out real clients, even with the single worker `auto` picks on two cores (test_hostile's
# flood holds 1,500).
BACKPRESSURE_PER_WORKER = 4_096


@dataclass(frozen=True, slots=True)
class Layout:
    """One granian layout: worker processes and each worker's runtime."""

    workers: int
    runtime_threads: int = 1
    runtime_mode: str = "st"
    task_impl: str = "asyncio"
    loop: str = "uvloop"
    backpressure: int = BACKPRESSURE_PER_WORKER

    def runtime_env(self) -> dict[str, str]:
        """The runtime options as granian's own variables."""
        return {
            "GRANIAN_RUNTIME_THREADS": str(self.runtime_threads),
            "GRANIAN_RUNTIME_MODE": self.runtime_mode,
            "GRANIAN_TASK_IMPL": self.task_impl,
            "GRANIAN_LOOP": self.loop,
            "GRANIAN_BACKPRESSURE": str(self.backpressure),
        }

    @property
    def label(self) -> str:
        return (
            f"{self.workers}w {self.runtime_mode}x{self.runtime_threads} {self.task_impl} "
            f"{self.loop} bp{self.backpressure}"
        )


def auto_workers(cores: int, consumer_beside: bool) -> int:
    """The worker count for `HTTP_WORKERS=auto`."""
    return max(1, cores - 1 - int(consumer_beside))


def workers(setting: int | None, consumer_beside: bool) -> int:
    """`HTTP_WORKERS` (None for auto) as a count."""
    return setting if setting is not None else auto_workers(os.cpu_count() or 1, consumer_beside)


def default_layout(workers: int) -> Layout:
    """The measured layout for `workers` processes (see the module docstring)."""
    if workers == 1:
        return Layout(1, runtime_threads=2, runtime_mode="mt")
    return Layout(workers)


def granian_env(environ: Mapping[str, str], workers: int) -> dict[str, str]:
    """`environ` with the measured runtime options for `workers` processes added where
    granian's variables are unset."""
    return {**default_layout(workers).runtime_env(), **environ}
