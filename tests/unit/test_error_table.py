"""The one error table (app/bootstrap/errors.py) that REST, GraphQL and gRPC answer from."""

from __future__ import annotations

import hashlib
import uuid

import grpc
import pytest
import redis.exceptions

from app.bootstrap import errors
from app.domain.errors import InvalidValue, ItemNotFound, VersionMismatch
from app.keys import ApiKeys, MissingKey, UnknownKey


def test_every_row_names_a_real_status_in_each_protocol() -> None:
    for cls, found in errors.TABLE:
        assert 400 <= found.http <= 599, cls
        assert found.graphql.isupper(), cls
        assert grpc.StatusCode[found.grpc], cls
    assert errors.INTERNAL.grpc == "INTERNAL"


def test_the_issues_codes() -> None:
    item = uuid.uuid4()
    assert errors.outcome(InvalidValue("name", "no")).grpc == "INVALID_ARGUMENT"
    assert errors.outcome(InvalidValue("name", "no")).graphql == "VALIDATION"
    assert errors.outcome(ItemNotFound(item)).graphql == "NOT_FOUND"
    assert errors.outcome(VersionMismatch(item, 2)).grpc == "ABORTED"
    assert errors.outcome(VersionMismatch(item, 2)).graphql == "VERSION_CONFLICT"
    outage = errors.outcome(redis.exceptions.ConnectionError("gone"))
    assert (outage.http, outage.graphql, outage.grpc) == (503, "UNAVAILABLE", "UNAVAILABLE")
    assert errors.outcome(ConnectionRefusedError()).slug == "write-model-unreachable"
    assert errors.outcome(RuntimeError("a bug")) is errors.INTERNAL
    assert errors.field_errors(InvalidValue("price", "negative")) == [("price", "negative")]


@pytest.mark.parametrize(
    ("values", "refusal"),
    [([], MissingKey), ([b"Basic x"], MissingKey), ([b"Bearer no"], UnknownKey)],
)
def test_api_keys_are_checked_the_same_way_everywhere(
    values: list[bytes], refusal: type[Exception]
) -> None:
    ApiKeys([]).check(values)  # no key configured: open
    keyed = ApiKeys([hashlib.sha256(b"k-123").digest()])
    with pytest.raises(refusal):
        keyed.check(values)
    keyed.check([b"Bearer k-123"])
    assert errors.outcome(refusal()).grpc in {"UNAUTHENTICATED", "PERMISSION_DENIED"}
