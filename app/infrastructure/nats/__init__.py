"""The NATS JetStream adapter of the outbox relay (nats-py): imported only when NATS_URL
is set, so nothing of NATS is loaded, let alone connected, without it."""
