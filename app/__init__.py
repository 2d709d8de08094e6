"""Items: a CQRS service. Writes go to PostgreSQL with their events; reads come from Redis."""
