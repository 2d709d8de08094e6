"""GraphQL at /graphql (Strawberry): a thin adapter over the same command and query
handlers as REST. Its errors come from the shared table (app/bootstrap/errors.py)."""
