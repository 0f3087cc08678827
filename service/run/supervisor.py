"""Keeping the consumer alive beside the API: the runner restarts a dead consumer after a
backoff while the HTTP workers, which need nothing from Kafka, go on serving; only a consumer
that keeps dying makes the runner give up and stop the service.

A consumer that stops with its partitions' offsets committed only after each batch's database
commit loses nothing by dying: the next one resumes from those offsets, and a batch stored but
not yet committed is redelivered and skipped as duplicates.
"""

import logging
import os
import signal
import subprocess
import time
from collections import deque

from service.errors import OPERATOR_ERROR_EXIT, ConsumerCrashLoop, ConsumerStopped
from service.observability import metrics
from service.run import consumer_state
from service.run.consumer_state import ConsumerState

log = logging.getLogger(__name__)

# Five deaths within a minute is a crash loop: the backoff below puts about 8 s between the
# first and the fifth death of a consumer that dies at once (a bad setting, a schema it cannot
# use), so that is found quickly, while a consumer killed now and then (the OOM killer, an
# operator) or one that dies because Kafka is away (it waits up to 15 s for the broker before
# giving up, so at most four such deaths fit in a minute) is restarted for as long as it takes.
CRASH_LOOP_DEATHS = 5
CRASH_LOOP_WINDOW_S = 60.0
RESTART_DELAY_START_S = 0.5
RESTART_DELAY_MAX_S = 10.0


class ConsumerSupervisor:
    """Owns the consumer process: `check()` notices a death, restarts after the backoff, and
    raises ConsumerCrashLoop when it is time to give up; `wakeup()` tells the runner what to
    wait on until the next `check()` has work; `stop()` ends it for good."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self._command = command
        self._env = env
        self._deaths: deque[float] = deque()
        self._restarts = 0
        self._last_exit: int | None = None
        self._restart_at: float | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._exit_fd: int | None = None
        self._start()

    def _start(self) -> None:
        # Its own process group, like the runner's other children (runner.Children).
        self._process = process = subprocess.Popen(self._command, env=self._env, process_group=0)
        # Readable once the process has exited: what the runner waits on instead of polling.
        self._exit_fd = os.pidfd_open(process.pid)
        consumer_state.publish(
            ConsumerState("running", process.pid, self._restarts, self._last_exit)
        )

    def wakeup(self) -> tuple[int | None, float | None]:
        """(an fd readable when the running consumer exits, or None; seconds until a pending
        restart is due, or None)."""
        if self._restart_at is not None:
            return None, max(0.0, self._restart_at - time.monotonic())
        return self._exit_fd, None

    def check(self) -> None:
        now = time.monotonic()
        if self._restart_at is None:
            code = self._process.poll() if self._process is not None else None
            if code is not None:
                self._forget_process()
                self._died(code, now)
        elif now >= self._restart_at:
            self._restart_at = None
            self._restarts += 1
            self._start()

    def stop(self, deadline: float) -> None:
        """SIGTERM the consumer if it runs, and SIGKILL it if it has not exited by `deadline`
        (a `time.monotonic()` time); no restart follows."""
        self._restart_at = None
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("the consumer did not stop in time; killing it")
            process.kill()
            process.wait()
        self._forget_process()

    def _forget_process(self) -> None:
        if self._process is not None:
            metrics.forget_process(self._process.pid)
        if self._exit_fd is not None:
            os.close(self._exit_fd)
        self._process = None
        self._exit_fd = None

    def _died(self, code: int, now: float) -> None:
        self._last_exit = code
        if code == OPERATOR_ERROR_EXIT:
            consumer_state.publish(ConsumerState("stopped", None, self._restarts, code))
            raise ConsumerStopped(
                "the consumer stopped on an error only an operator can fix (its log above says"
                " what and how); stopping the service"
            )
        self._deaths.append(now)
        while self._deaths[0] < now - CRASH_LOOP_WINDOW_S:
            self._deaths.popleft()
        deaths = len(self._deaths)
        if deaths >= CRASH_LOOP_DEATHS:
            consumer_state.publish(ConsumerState("stopped", None, self._restarts, code))
            raise ConsumerCrashLoop(
                f"the consumer died {deaths} times within {CRASH_LOOP_WINDOW_S:.0f} s (last exit"
                f" code {code}); giving up and stopping the service. Its log above says why;"
                " fix that and start the service again"
            )
        delay = min(RESTART_DELAY_MAX_S, RESTART_DELAY_START_S * 2 ** (deaths - 1))
        self._restart_at = now + delay
        consumer_state.publish(
            ConsumerState("restarting", None, self._restarts, code, round(delay, 1))
        )
        log.error(
            "the consumer exited with code %s (%d deaths within %.0f s); restarting it in %.1f s;"
            " the API goes on serving",
            code,
            deaths,
            CRASH_LOOP_WINDOW_S,
            delay,
        )
