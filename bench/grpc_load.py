"""A small asyncio gRPC load client (ghz is not available here): GetItem of random ids
over N concurrent calls on one channel, for D seconds, after one read of every id (the
steady state the REST GET by id is measured in). Prints the line wrk's script prints
(`RESULT rps=... p50_ms=... p99_ms=... errors=... requests=...`), so the bench reads both
the same way. Run pinned to the load CPU: `python -m bench.grpc_load ADDRESS IDS_FILE
SECONDS CONCURRENCY`.

One Python process drives the load, so on a fast server this client may be what limits
the rate; the JSON says so (`client`), and the same run's REST and GraphQL rows are wrk's.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from pathlib import Path

import grpc

from app.grpc.generated.items.v1 import items_pb2 as pb
from app.grpc.generated.items.v1 import items_pb2_grpc


async def load(address: str, ids: list[str], seconds: float, concurrency: int) -> str:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = items_pb2_grpc.ItemsServiceStub(channel)
        requests = [pb.GetItemRequest(id=i) for i in ids]
        # Every id once first, unmeasured: the server's view cache is then warm.
        cursor = iter(requests)

        async def sweep() -> None:
            for request in cursor:
                await stub.GetItem(request)

        await asyncio.gather(*(sweep() for _ in range(concurrency)))
        latencies: list[float] = []
        errors = 0
        end = time.monotonic() + seconds

        async def worker() -> None:
            nonlocal errors
            while (now := time.monotonic()) < end:
                try:
                    await stub.GetItem(random.choice(requests))
                except grpc.aio.AioRpcError:
                    errors += 1
                latencies.append(time.monotonic() - now)

        began = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        took = time.monotonic() - began
    latencies.sort()

    def percentile(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(len(latencies) * p))] * 1000

    return (
        f"RESULT rps={len(latencies) / took:.1f} p50_ms={percentile(0.5):.3f} "
        f"p99_ms={percentile(0.99):.3f} errors={errors} requests={len(latencies)}"
    )


def main() -> None:
    address, ids_file, seconds, concurrency = sys.argv[1:5]
    ids = [line for line in Path(ids_file).read_text().splitlines() if line]
    sys.stdout.write(asyncio.run(load(address, ids, float(seconds), int(concurrency))) + "\n")


if __name__ == "__main__":
    main()
