"""The reaper: `python -m app.infrastructure.embedded reap DATA_DIR`, started by the
first client of DATA_DIR's servers, in a session of its own."""

import sys

from app.infrastructure.embedded.servers import EmbeddedServers

if __name__ == "__main__":
    if sys.argv[1:2] != ["reap"] or len(sys.argv) != 3:
        sys.exit("usage: python -m app.infrastructure.embedded reap DATA_DIR")
    EmbeddedServers(sys.argv[2]).reap()
