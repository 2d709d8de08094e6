"""The rules every item field obeys, as pure functions that normalise or raise.

The API's request models call these same functions, so an HTTP 422 and a domain
rejection can never disagree about what is valid.
"""

import re
import unicodedata
from decimal import Decimal, InvalidOperation
from uuid import UUID

from app.domain.errors import InvalidValue

NAME_MAX = 200
DESCRIPTION_MAX = 2000
TAG_MAX = 50
TAGS_MAX = 20
PRICE_LIMIT = Decimal("1000000000")
CENTS = Decimal("0.01")

_TAG = re.compile(rf"[a-z0-9-]{{1,{TAG_MAX}}}")
# Plain decimal notation only: no exponent, no sign other than an optional leading
# minus (rejected later with a clearer message), no spaces, no "nan"/"inf".
_PLAIN_DECIMAL = re.compile(r"-?([0-9]+(\.[0-9]*)?|\.[0-9]+)")


def _has_control_chars(text: str, allowed: str = "") -> bool:
    return any(unicodedata.category(c) == "Cc" and c not in allowed for c in text)


def _has_surrogates(text: str) -> bool:
    # JSON may spell a lone surrogate ("\ud800"); it is no character, and neither
    # UTF-8 nor PostgreSQL can store it.
    return any("\ud800" <= c <= "\udfff" for c in text)


def normalize_name(value: str) -> str:
    name = value.strip()
    if not name:
        raise InvalidValue("name", "name must not be empty")
    if len(name) > NAME_MAX:
        raise InvalidValue("name", f"name must be at most {NAME_MAX} characters")
    if _has_control_chars(name):
        raise InvalidValue("name", "name must not contain control characters")
    if _has_surrogates(name):
        raise InvalidValue("name", "name must be valid Unicode (no lone surrogates)")
    return name


def normalize_description(value: str | None) -> str | None:
    if value is None:
        return None
    if len(value) > DESCRIPTION_MAX:
        raise InvalidValue(
            "description", f"description must be at most {DESCRIPTION_MAX} characters"
        )
    # Line breaks and tabs are text; NUL and other control characters are not.
    if _has_control_chars(value, allowed="\t\n\r"):
        raise InvalidValue("description", "description must not contain control characters")
    if _has_surrogates(value):
        raise InvalidValue("description", "description must be valid Unicode (no lone surrogates)")
    return value


def parse_price(value: str | int | float | Decimal) -> Decimal:
    """A price is exact: at most two fractional digits once trailing zeros are dropped."""
    if isinstance(value, bool):
        raise InvalidValue("price", "price must be a number or a decimal string")
    if isinstance(value, float):
        # A JSON number arrives as float; repr gives its shortest exact decimal form.
        text = repr(value)
        if "e" in text or "E" in text:
            text = format(Decimal(text), "f")
    elif isinstance(value, Decimal):
        text = format(value, "f")
    else:
        text = str(value)
    if not _PLAIN_DECIMAL.fullmatch(text):
        raise InvalidValue(
            "price", "price must be a plain decimal like 9.99 (no exponent or spaces)"
        )
    try:
        price = Decimal(text)
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only valid text
        raise InvalidValue("price", "price is not a decimal number") from exc
    if price < 0:
        raise InvalidValue("price", "price must not be negative")
    if price >= PRICE_LIMIT:
        raise InvalidValue("price", "price must be below 1000000000")
    if price != price.quantize(CENTS):
        raise InvalidValue("price", "price must have at most 2 decimal places")
    # "-0" is zero: without copy_abs it would be stored and shown as "-0.00".
    return price.quantize(CENTS).copy_abs()


def normalize_tags(values: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    for tag in values:
        if not isinstance(tag, str) or not _TAG.fullmatch(tag):
            raise InvalidValue(
                "tags", f"each tag must be 1..{TAG_MAX} characters of a-z, 0-9 and '-'"
            )
    unique = sorted(set(values))
    if len(unique) > TAGS_MAX:
        raise InvalidValue("tags", f"at most {TAGS_MAX} distinct tags")
    return tuple(unique)


def validate_tag(value: str) -> str:
    """One tag on its own, as a list filter uses it."""
    return normalize_tags([value])[0]


def parse_id(value: str, field: str = "id") -> UUID:
    """An item id as an entry point receives it: text in any form UUID() reads."""
    try:
        return UUID(value)
    except (ValueError, TypeError, AttributeError):
        raise InvalidValue(field, f"{field} must be a UUID") from None
