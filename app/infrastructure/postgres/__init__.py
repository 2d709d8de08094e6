"""PostgreSQL: the write model (pool, unit of work, repositories), the event log and its
dead letters, the operators' reads, the schema (tables.py) and its migrations. All SQL of
the service is in this folder."""
