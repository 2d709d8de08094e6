"""What a background loop (the projector, the relay) sleeps on: a NOTIFY, a stop, a
change of ownership or its own timer, whichever comes first.

A timer sets the event rather than asyncio.wait_for/timeout: on Python 3.11 both can
swallow a cancellation that lands just as the timeout fires, and the loop would then
never stop.
"""

from __future__ import annotations

import asyncio


class Waker:
    def __init__(self) -> None:
        self._event = asyncio.Event()

    def wake(self) -> None:
        """End the current sleep (or the next one, at once)."""
        self._event.set()

    def clear(self) -> None:
        """Forget wake-ups so far: the loop is about to look at everything anyway."""
        self._event.clear()

    async def sleep(self, delay: float) -> None:
        """Until wake() or `delay` seconds, whichever comes first."""
        handle = asyncio.get_running_loop().call_later(delay, self._event.set)
        try:
            await self._event.wait()
        finally:
            handle.cancel()
            self._event.clear()
