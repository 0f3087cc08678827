"""Network namespaces as stand-in hosts: point-to-point for the scale-out test (`hosts`), on a
private LAN for the replicated-cluster tests (`lan`).

`hosts`: each host is a namespace with a veth pair to the machine, addresses from a /30 chosen by the
test itself (checked unused), and a forwarder on its own loopback for each given port, going to
the host end of its veth, where another forwarder goes on to the machine's loopback. PostgreSQL
and Kafka (bound to, and advertising, loopback) are thus reachable from every host unchanged,
and nothing leaves the machine. `hosts()` removes everything it made, even on failure.

`lan`: a bridge on the machine with an address of its own (`Lan.machine`) and a /24 no route
uses yet; each host joined to it is a namespace whose `eth0` is a veth on the bridge, with the
next address. Hosts on it reach each other and the machine directly (the bridge forwards;
nothing is routed), so a Kafka node in one advertises its own address to all. `lan()` and
`Lan.join()` remove what they made, even on failure.
"""

import os
import random
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field

from tests.fix_processes import REPO
from tests.tcp_forward import FORWARDER, ready_addresses

STOP_GRACE_S = 30.0


def unavailable() -> str | None:
    """Why namespaces cannot be made here, or None."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if shutil.which("ip") is None:
        return "needs the `ip` command (iproute2) to create network namespaces"
    return None


def _ip(*args: str, namespace: str | None = None) -> str:
    prefix = ["ip", "netns", "exec", namespace] if namespace else []
    done = subprocess.run([*prefix, "ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _unused_prefix() -> str:
    """A 10.x.y prefix that no address or route on the machine uses yet."""
    taken = _ip("-4", "-o", "addr", "show") + _ip("-4", "route", "show", "table", "all")
    for _ in range(50):
        prefix = f"10.{random.randint(64, 250)}.{random.randint(0, 255)}"
        if f"{prefix}." not in taken:
            return prefix
    raise RuntimeError("no unused 10.x.y.0/24 found for the test's veth addresses")


@dataclass(frozen=True)
class Host:
    name: str  # of the network namespace
    address: str  # its end of the veth, where its HTTP API listens
    _started: list["subprocess.Popen[str]"] = field(default_factory=list)

    def start(
        self, command: list[str], env: dict[str, str], stdout: int | None = None
    ) -> "subprocess.Popen[str]":
        process = subprocess.Popen(
            ["ip", "netns", "exec", self.name, *command],
            env=env,
            cwd=REPO,
            stdout=stdout,
            text=True,
        )
        self._started.append(process)
        return process

    def pids(self) -> list[int]:
        return [int(pid) for pid in _ip("netns", "pids", self.name).split()]

    def kill(self) -> None:
        """The host dies: SIGKILL every process in it, at once."""
        self._signal_all(signal.SIGKILL, 10.0)
        self._reap()

    def stop(self) -> None:
        """Stop what was started, newest first, so the forwarders outlive the service's
        goodbyes to Kafka; then SIGTERM anything left, and SIGKILL after the grace period."""
        for process in reversed(self._started):
            process.terminate()
            with suppress(subprocess.TimeoutExpired):
                process.wait(STOP_GRACE_S)
        if not self._signal_all(signal.SIGTERM, STOP_GRACE_S):
            self._signal_all(signal.SIGKILL, 10.0)
        self._reap()

    def _signal_all(self, signum: signal.Signals, seconds: float) -> bool:
        """Signal each process once (children started meanwhile too); True once none is left."""
        deadline = time.monotonic() + seconds
        signalled: set[int] = set()
        while pids := self.pids():
            if time.monotonic() > deadline:
                return False
            for pid in set(pids) - signalled:
                with suppress(ProcessLookupError):
                    os.kill(pid, signum)
                signalled.add(pid)
            time.sleep(0.2)
        return True

    def _reap(self) -> None:
        for process in self._started:
            process.wait(STOP_GRACE_S)
            if process.stdout is not None:
                process.stdout.close()


def _add_namespace(stack: ExitStack, name: str, address: str) -> Host:
    _ip("netns", "add", name)
    host = Host(name, address)
    # Last in, first out: its processes stopped, then the namespace (and with it the veth pair)
    # deleted.
    stack.callback(_ip, "netns", "delete", name)
    stack.callback(host.stop)
    _ip("link", "set", "lo", "up", namespace=name)
    return host


def _make_host(stack: ExitStack, name: str, veth: str, outside: str, inside: str) -> Host:
    host = _add_namespace(stack, name, inside)
    _ip("link", "add", f"{veth}h", "type", "veth", "peer", "name", f"{veth}n")
    _ip("link", "set", f"{veth}n", "netns", name)
    _ip("addr", "add", f"{outside}/30", "dev", f"{veth}h")
    _ip("link", "set", f"{veth}h", "up")
    _ip("addr", "add", f"{inside}/30", "dev", f"{veth}n", namespace=name)
    _ip("link", "set", f"{veth}n", "up", namespace=name)
    return host


@contextmanager
def hosts(count: int, ports: list[int]) -> Iterator[list[Host]]:
    """`count` namespaces whose 127.0.0.1:<port> reaches the machine's, for each of `ports`."""
    run = uuid.uuid4().hex[:6]
    prefix = _unused_prefix()
    outside = [f"{prefix}.{4 * i + 1}" for i in range(count)]
    with ExitStack() as stack:
        made = [
            _make_host(
                stack, f"orders-{run}-{i}", f"os{run}{i}", outside[i], f"{prefix}.{4 * i + 2}"
            )
            for i in range(count)
        ]
        # One forwarder on the machine: each host's veth end, a free port, to loopback.
        routes = [f"{address}:0=127.0.0.1:{port}" for address in outside for port in ports]
        forwarder = subprocess.Popen(
            [*FORWARDER, *routes], cwd=REPO, stdout=subprocess.PIPE, text=True
        )
        stack.callback(forwarder.stdout.close)  # type: ignore[union-attr]
        stack.callback(forwarder.wait, STOP_GRACE_S)
        stack.callback(forwarder.kill)
        bound = iter(ready_addresses(forwarder))
        for host in made:
            inside = [f"127.0.0.1:{port}={next(bound)}" for port in ports]
            ready_addresses(host.start([*FORWARDER, *inside], dict(os.environ), subprocess.PIPE))
        yield made


class Lan:
    """The bridge of `lan()`: `machine` is the machine's own address on it."""

    def __init__(self, run: str, prefix: str, bridge: str) -> None:
        self._run, self._prefix, self._bridge = run, prefix, bridge
        self.machine = f"{prefix}.254"
        self._joined = 0

    def join(self, stack: ExitStack, label: str) -> Host:
        """A new host on the LAN, its namespace named after `label`, removed by `stack`."""
        self._joined += 1
        number = self._joined
        name = f"orders-{self._run}-{number}{label}"
        host = _add_namespace(stack, name, f"{self._prefix}.{number}")
        veth = f"ol{self._run}{number}"
        _ip("link", "add", veth, "type", "veth", "peer", "name", f"{veth}n")
        _ip("link", "set", veth, "master", self._bridge, "up")
        _ip("link", "set", f"{veth}n", "netns", name)
        _ip("link", "set", f"{veth}n", "name", "eth0", namespace=name)
        _ip("addr", "add", f"{host.address}/24", "dev", "eth0", namespace=name)
        _ip("link", "set", "eth0", "up", namespace=name)
        return host


@contextmanager
def lan() -> Iterator[Lan]:
    """A bridge with the machine on it; hosts join it with `Lan.join`."""
    run = uuid.uuid4().hex[:6]
    prefix = _unused_prefix()
    bridge = f"obr{run}"
    with ExitStack() as stack:
        _ip("link", "add", bridge, "type", "bridge")
        stack.callback(_ip, "link", "delete", bridge)
        _ip("addr", "add", f"{prefix}.254/24", "dev", bridge)
        _ip("link", "set", bridge, "up")
        yield Lan(run, prefix, bridge)
