"""HTTP: routers that translate requests into commands and queries, and nothing more."""
