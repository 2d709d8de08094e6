"""The read side: query handlers that answer from the Redis views alone."""
