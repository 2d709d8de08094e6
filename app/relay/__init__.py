"""The outbox relay (`items relay`): every event of the events table, in position order,
published to NATS JetStream; its checkpoint in PostgreSQL moves only after the broker
acknowledged. The ports are here; the adapters are app/infrastructure/postgres/
relay_store.py and app/infrastructure/nats/broker.py."""
