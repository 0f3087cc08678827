"""Network faults inside a namespace of tests/netns.py, made with nft at a moment the test
chooses and removed to heal: a host cut off (everything but loopback dropped, both ways), and
a lossy, slow link to given peers (a share of the packets dropped at random by nft, and the
data delayed by the relay of tests/delay_relay.py that nft sends those connections through).

This machine's kernel has no netem (CONFIG_NET_SCH_NETEM is not set: `tc qdisc add ... netem`
answers "Specified qdisc kind is unknown"), hence the relay for the delay.
"""

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from tests.delay_relay import MARK, RELAY
from tests.netns import Host
from tests.tcp_forward import ready_addresses

DEVICE = "eth0"  # a LAN host's veth (netns.Lan.join)


def _nft(host: Host, script: str) -> None:
    done = subprocess.run(
        ["ip", "netns", "exec", host.name, "nft", "-f", "-"],
        input=script,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"nft in {host.name}: {done.stderr.strip()}\n{script}")


def _peers(addresses: list[str], port: int | None, direction: str) -> str:
    """An nft match for TCP packets to (direction "d") or from ("s") the peers, on `port`."""
    match = f"meta l4proto tcp ip {direction}addr {{ {', '.join(addresses)} }}"
    return f"{match} tcp {direction}port {port}" if port is not None else match


@contextmanager
def cut_off(host: Host) -> Iterator[float]:
    """`host` hears nothing and is heard by no one but itself; yields when the cut is in."""
    _nft(
        host,
        "table inet orders_cut {\n"
        '  chain i { type filter hook input priority 0; iifname != "lo" drop; }\n'
        '  chain o { type filter hook output priority 0; oifname != "lo" drop; }\n'
        "}\n",
    )
    try:
        yield time.monotonic()
    finally:
        _nft(host, "delete table inet orders_cut")


class SlowLink:
    """The connections of the processes in `host` to `peers` (on `port`, when given) go
    through a delay relay from the start; `impaired` makes the link slow and lossy."""

    def __init__(self, stack: ExitStack, host: Host, peers: list[str], port: int | None) -> None:
        self._host, self._peers, self._port = host, peers, port
        self._relay = host.start([*RELAY], dict(os.environ), subprocess.PIPE)
        relay_port = int(ready_addresses(self._relay)[0].rpartition(":")[2])
        _nft(
            host,
            "table ip orders_relay {\n"
            "  chain o {\n"
            "    type nat hook output priority -100;\n"
            f"    meta mark {MARK} return\n"
            f"    {_peers(peers, port, 'd')} redirect to :{relay_port}\n"
            "  }\n"
            "}\n",
        )
        stack.callback(_nft, host, "delete table ip orders_relay")

    @contextmanager
    def impaired(self, delay_ms: int, loss_percent: int) -> Iterator[float]:
        """Data to the peers `delay_ms` late and `loss_percent` of the packets each way lost,
        until the block ends; yields once both are in force."""
        loss = f"numgen random mod 100 < {loss_percent} drop"
        _nft(
            self._host,
            "table inet orders_loss {\n"
            "  chain o { type filter hook output priority 0;\n"
            f'    oifname "{DEVICE}" {_peers(self._peers, self._port, "d")} {loss}; }}\n'
            "  chain i { type filter hook input priority 0;\n"
            f'    iifname "{DEVICE}" {_peers(self._peers, self._port, "s")} {loss}; }}\n'
            "}\n",
        )
        try:
            self._signal(signal.SIGUSR1, f"delay {delay_ms}")
            yield time.monotonic()
        finally:
            self._signal(signal.SIGUSR2, "delay 0")
            _nft(self._host, "delete table inet orders_loss")

    def _signal(self, signum: signal.Signals, expected: str) -> None:
        assert self._relay.stdout is not None
        self._relay.send_signal(signum)
        line = self._relay.stdout.readline().strip()
        assert line == expected, f"the relay answered {line!r}, not {expected!r}"
