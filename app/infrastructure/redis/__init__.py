"""Redis: the read model's key layout (keys.py), its Lua scripts (lua/, loaded by
scripts.py) and every Redis command of the service: reads for queries, the change feed,
the projector's writes, the rebuild's seeding and the verifier's reads and repairs."""
