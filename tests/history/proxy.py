"""The run's PgProxy (tests/servers.py) in a process of its own, driven over a pipe.

Why not the proxy's own thread in the runner: every byte the service sends PostgreSQL
would wait for the runner's GIL, held by 18 sessions and their JSON, and the service's
writes (and its starts: a restarted `items serve` took 33 s) would be slowed by the
load generator itself, not by any fault.

    python -m tests.history.proxy <dsn>    prints the proxy's URL, then obeys one word
                                           a line (cut, restore, freeze, thaw): "ok"
"""

from __future__ import annotations

import asyncio
import sys

from tests.servers import PgProxy

COMMANDS = ("cut", "restore", "freeze", "thaw")


class ProxyProcess:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.url = ""
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.history.proxy",
            self.dsn,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert self._process.stdout is not None
        self.url = (await asyncio.wait_for(self._process.stdout.readline(), 30)).decode().strip()

    async def command(self, word: str) -> None:
        assert word in COMMANDS
        assert self._process is not None
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        self._process.stdin.write(word.encode() + b"\n")
        await self._process.stdin.drain()
        said = await asyncio.wait_for(self._process.stdout.readline(), 30)
        assert said.strip() == b"ok", said

    async def close(self) -> None:
        if self._process is not None and self._process.returncode is None:
            assert self._process.stdin is not None
            self._process.stdin.close()
            try:
                await asyncio.wait_for(self._process.wait(), 10)
            except TimeoutError:
                self._process.kill()
                await self._process.wait()


def main() -> None:
    proxy = PgProxy(sys.argv[1])
    proxy.start()
    sys.stdout.write(proxy.url + "\n")
    sys.stdout.flush()
    for line in sys.stdin:
        word = line.strip()
        if word in COMMANDS:
            getattr(proxy, word)()
            sys.stdout.write("ok\n")
            sys.stdout.flush()
    proxy.close()


if __name__ == "__main__":
    main()
