"""Errors as gRPC statuses: the code from the shared table (app/bootstrap/errors.py),
the rich details (google.rpc.Status) in the trailers, as grpc-status-details-bin.

Every status carries an ErrorInfo (reason: the table's problem type, as REST's
urn:items:problem:<slug>, in AIP-193's UPPER_SNAKE); INVALID_ARGUMENT a BadRequest with a
field violation per invalid field; what is worth a retry a RetryInfo. What the table does
not know is a bug: logged with its traceback, answered INTERNAL with no detail.
"""

from __future__ import annotations

from typing import Any, NoReturn

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from app.bootstrap import errors as table
from app.domain.errors import VersionMismatch

DOMAIN = "items.v1"
DETAILS_KEY = "grpc-status-details-bin"  # where grpc_status.rpc_status reads them from


def _packed(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str, status_pb2.Status]:
    """The code, the message and the rich status an error is answered with."""
    found = table.outcome(exc)
    table.report(found, exc)
    code = grpc.StatusCode[found.grpc]
    message = found.message(exc)
    metadata = {}
    if isinstance(exc, VersionMismatch):
        metadata["current_etag"] = f'"{exc.current_version}"'
    info = error_details_pb2.ErrorInfo(
        reason=found.slug.upper().replace("-", "_"), domain=DOMAIN, metadata=metadata
    )
    details = [_packed(info)]
    fields = table.field_errors(exc)
    if fields:
        violations = [
            error_details_pb2.BadRequest.FieldViolation(field=f, description=m) for f, m in fields
        ]
        details.append(_packed(error_details_pb2.BadRequest(field_violations=violations)))
        message = "; ".join(f"{f}: {m}" for f, m in fields)
    if found.retry:
        retry = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=1))
        details.append(_packed(retry))
    rich = status_pb2.Status(code=code.value[0], message=message, details=details)
    return code, message, rich


async def abort(context: grpc.aio.ServicerContext[Any, Any], exc: BaseException) -> NoReturn:
    """End the call with the status of `exc` (raises, as context.abort does)."""
    code, message, rich = status_of(exc)
    await context.abort(code, message, ((DETAILS_KEY, rich.SerializeToString()),))
