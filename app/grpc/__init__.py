"""gRPC (`items grpc`): ItemsService of proto/items/v1/items.proto, a thin adapter over
the same command and query handlers as REST, with the standard health service and
server reflection. Its status codes come from the shared table (app/bootstrap/errors.py).
The code in generated/ is `make proto`'s, never edited by hand."""
