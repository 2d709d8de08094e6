"""The processes a run starts (the service, the reference servers, `items rebuild`): each in
its own session with its log in a file, pinned to a CPU with taskset, waited for over
HTTP, and stopped, all of them, however the run ends."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import types
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from .config import ROOT, Config
from .console import say


class Processes:
    """Every process this run starts, each in its own session; all are stopped at exit."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(
        self, name: str, cmd: list[str], env: dict[str, str], cwd: Path = ROOT
    ) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self.running.append((name, proc))
        return proc

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.logs / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # its own session: only its children
                proc.wait()
        self.running = [(n, p) for n, p in self.running if p is not proc]

    def stop_all(self) -> None:
        for _, proc in reversed(list(self.running)):
            self.stop(proc)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pin(cpu: int, cfg: Config) -> list[str]:
    return ["taskset", "-c", str(cpu)] if cfg.pinned else []


def wait_http(url: str, proc: subprocess.Popen[bytes], procs: Processes, name: str,
              timeout: float = 60.0) -> None:  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{procs.log_tail(name)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status < 500:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{name} did not answer {url} within {timeout}s:\n{procs.log_tail(name)}")


@contextlib.contextmanager
def terminate_as_exit() -> Iterator[None]:
    """SIGTERM/SIGHUP end the run through `finally`, so every process gets stopped."""

    def handler(signum: int, frame: types.FrameType | None) -> None:
        raise SystemExit(128 + signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextlib.contextmanager
def serving(procs: Processes, name: str, cmd: list[str], env: dict[str, str], base: str,
            ready: str = "/readyz", cwd: Path = ROOT) -> Iterator[str]:  # fmt: skip
    """A server started, waited for at `base + ready`, yielded, then stopped, with its
    log's tail said when it ended other than by the SIGTERM it was sent."""
    proc = procs.start(name, cmd, env, cwd=cwd)
    try:
        wait_http(base + ready, proc, procs, name, timeout=90)
        yield base
    finally:
        procs.stop(proc)
        if proc.returncode not in (0, -signal.SIGTERM):
            say(f"note: {name} exited with {proc.returncode}:\n{procs.log_tail(name)}")
