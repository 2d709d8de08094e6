"""`items relay`: the outbox relay on its own process, every event to NATS JetStream."""

from __future__ import annotations

import asyncio
import signal

import typer

from app import metrics
from app.bootstrap import Container
from app.cli.common import OK, UNREACHABLE, begin, complain, finish, operate
from app.settings import Settings

SHORT = "publish every event to NATS JetStream (NATS_URL), in order, at least once"
HELP = (
    "Publish every event of the events table, in position order, to the JetStream stream "
    "NATS_STREAM (created if missing) on <NATS_SUBJECT_PREFIX>.<item_id>, with Nats-Msg-Id "
    "= the event id. The checkpoint (PostgreSQL) moves only after the broker acknowledged; "
    "one relay publishes at a time (a lease), others stand by. SIGTERM finishes the event "
    "in hand, saves the checkpoint and gives the lease up. With METRICS_PORT set, its own "
    "/metrics is served there (items_events_relayed_total)."
)


def register(app: typer.Typer) -> None:
    app.command("relay", help=HELP, short_help=SHORT)(command)


def command() -> None:
    begin("relay")
    if not Settings().nats_url:
        complain("items relay", "NATS_URL is not set: there is no broker to relay to")
        finish(UNREACHABLE)

    async def work(container: Container) -> int:
        relay = container.relay()
        if container.settings.metrics_port:  # what a health check and Prometheus ask
            metrics.serve_http(container.settings.metrics_port)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, relay.stop)
        await relay.run()
        return OK

    finish(operate(work))
