"""The consumer's state as the runner sees it, shared with the API workers: a small JSON file
beside the metrics files, replaced whole so a reader never sees half of it, read by `/readyz`
and `/metrics`. Not a prometheus_client metric: the runner's own metric files are the ones
`reset_metrics_dir` deletes under it at start."""

import os
from typing import Literal

import msgspec

from service.observability import metrics

STATE_FILE = metrics.METRICS_DIR / "consumer-state.json"

State = Literal["running", "restarting", "stopped"]


class ConsumerState(msgspec.Struct):
    """`restarting`: dead, and started again after `restart_in_s`; `stopped`: given up."""

    state: State
    pid: int | None
    restarts: int
    last_exit_code: int | None = None
    restart_in_s: float | None = None


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(ConsumerState)


def publish(state: ConsumerState) -> None:
    temporary = STATE_FILE.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_bytes(_encoder.encode(state))
    os.replace(temporary, STATE_FILE)


def metric_lines(state: ConsumerState) -> list[str]:
    """The state in Prometheus' text format."""
    return [
        "# HELP consumer_up 1 while the consumer process runs, 0 while it restarts or stopped",
        "# TYPE consumer_up gauge",
        f"consumer_up {1 if state.state == 'running' else 0}",
        "# HELP consumer_restarts_total Times the runner started the consumer again",
        "# TYPE consumer_restarts_total counter",
        f"consumer_restarts_total {state.restarts}",
    ]


def read() -> ConsumerState | None:
    """The last published state; None when this service runs no consumer (`serve`)."""
    try:
        return _decoder.decode(STATE_FILE.read_bytes())
    except FileNotFoundError:
        return None
