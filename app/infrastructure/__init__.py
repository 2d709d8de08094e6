"""Adapters, one folder per store: postgres/ (the write model, the event log and every
SQL statement) and redis/ (the read model: its key layout, Lua scripts and every Redis
command); embedded.py starts both stores from PyPI wheels when no URL is set."""
