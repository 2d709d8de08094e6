"""Domain errors. The API maps each to an HTTP problem in one place (app/api/problems.py)."""

from uuid import UUID


class DomainError(Exception):
    """Base of every error the domain raises on purpose."""


class InvalidValue(DomainError, ValueError):
    """A field value breaks the item's rules.

    It is also a ValueError so that pydantic validators can call the domain's own rules
    and report the failure as a field error with its location.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class ItemNotFound(DomainError):
    def __init__(self, item_id: UUID) -> None:
        super().__init__(f"item {item_id} does not exist")
        self.item_id = item_id


class VersionMismatch(DomainError):
    """A precondition named versions of the item that are not its current one."""

    def __init__(self, item_id: UUID, current_version: int) -> None:
        super().__init__(f"item {item_id} is at version {current_version}")
        self.item_id = item_id
        self.current_version = current_version
