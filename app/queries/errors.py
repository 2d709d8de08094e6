"""Errors of the read side, mapped to HTTP in app/api/problems.py."""


class ReadModelUnavailable(Exception):
    """No live generation of the views: Redis is new, lost its data, or is being
    restored. Reads answer 503 rather than pass an empty read model off as the truth."""


class InvalidCursor(Exception):
    """A list cursor that this service did not issue, or issued for another query."""


class ConsistencyTimeout(Exception):
    """The projection did not reach the position a client asked to read within the
    bound. The answer is 503, never a stale view passed off as fresh."""


class InvalidToken(Exception):
    """A Consistency-Token that this service did not issue."""
