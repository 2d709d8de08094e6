"""The field rules of app/domain/values.py, which the API and the aggregate share."""

from __future__ import annotations

from decimal import Decimal

import pytest

from app.domain import values
from app.domain.errors import InvalidValue
from app.queries.views import format_price

# -- price ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("9.99", "9.99"),
        ("0", "0.00"),
        ("0.00", "0.00"),
        ("10", "10.00"),
        ("1.2", "1.20"),
        ("1.230", "1.23"),  # trailing zeros dropped: two fractional digits remain
        ("1.2300000", "1.23"),
        ("007.50", "7.50"),
        (".5", "0.50"),
        ("5.", "5.00"),
        ("999999999.99", "999999999.99"),
        (9.99, "9.99"),  # a JSON number arrives as float
        (0.1, "0.10"),
        (19.9, "19.90"),
        (123456789.99, "123456789.99"),
        (0.0, "0.00"),
        (12, "12.00"),  # a JSON integer
        (0, "0.00"),
        (Decimal("3.1"), "3.10"),
        (Decimal("3.100"), "3.10"),
    ],
)
def test_price_accepts_plain_decimals(raw: str | int | float | Decimal, expected: str) -> None:
    price = values.parse_price(raw)
    assert price == Decimal(expected)
    assert str(price) == expected  # normalised to exactly two places


@pytest.mark.parametrize(
    "raw",
    [
        "1.234",
        "0.001",
        "1.2301",
        1.234,
        0.1 + 0.2,  # 0.30000000000000004: a float that is not a price
        1e-7,
        Decimal("0.005"),
    ],
)
def test_price_rejects_more_than_two_places(raw: str | float | Decimal) -> None:
    with pytest.raises(InvalidValue, match="2 decimal places") as caught:
        values.parse_price(raw)
    assert caught.value.field == "price"


@pytest.mark.parametrize("raw", ["-1", "-0.01", -5, -0.5, Decimal("-1")])
def test_price_rejects_negative(raw: str | int | float | Decimal) -> None:
    with pytest.raises(InvalidValue, match="negative"):
        values.parse_price(raw)


@pytest.mark.parametrize(
    "raw", ["1000000000", "1000000000.00", "99999999999", 1_000_000_000, 1e9, 1e20]
)
def test_price_must_be_below_one_billion(raw: str | int | float) -> None:
    with pytest.raises(InvalidValue, match="below 1000000000"):
        values.parse_price(raw)


@pytest.mark.parametrize(
    "raw",
    [
        "1e3",
        "1E3",
        "1e-2",
        "1.5e2",
        " 1.00",
        "1.00 ",
        "1 000",
        "\t1",
        "",
        ".",
        "-",
        "+1",
        "1,50",
        "0x10",
        "abc",
        "nan",
        "NaN",
        "inf",
        "Infinity",
        "1_000",
        Decimal("NaN"),
        Decimal("Infinity"),
    ],
)
def test_price_rejects_anything_but_plain_decimal_text(raw: str | Decimal) -> None:
    with pytest.raises(InvalidValue, match="plain decimal") as caught:
        values.parse_price(raw)
    assert caught.value.field == "price"


@pytest.mark.parametrize("raw", [True, False])
def test_price_rejects_booleans(raw: bool) -> None:
    with pytest.raises(InvalidValue):
        values.parse_price(raw)


def test_price_error_is_a_value_error_for_pydantic() -> None:
    with pytest.raises(ValueError, match="negative"):
        values.parse_price("-3")


@pytest.mark.parametrize("raw", ["-0", "-0.00", -0.0])
def test_price_negative_zero_is_not_kept(raw: str | float) -> None:
    try:
        price = values.parse_price(raw)
    except InvalidValue:
        return  # rejecting it is fine too
    assert format_price(price) == "0.00"


@pytest.mark.parametrize("raw", ["\u0661\u0662", "\uff11\uff12.50", "\u0967"])
def test_price_rejects_non_ascii_digits(raw: str) -> None:
    # Arabic-Indic, full-width and Devanagari digits: Decimal() accepts them, the
    # documented pattern ^(\d+(\.\d*)?|\.\d+)$ of the API schema (ASCII) does not.
    with pytest.raises(InvalidValue):
        values.parse_price(raw)


# -- name ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Desk lamp", "Desk lamp"),
        ("  padded  ", "padded"),
        ("\n\tlamp\r\n", "lamp"),  # surrounding whitespace is trimmed, not refused
        ("x", "x"),
        ("Café ☕ 東京", "Café ☕ 東京"),
        ("inner  spaces", "inner  spaces"),
    ],
)
def test_name_is_trimmed(raw: str, expected: str) -> None:
    assert values.normalize_name(raw) == expected


def test_name_length_limits_count_after_trimming() -> None:
    longest = "n" * values.NAME_MAX
    assert values.normalize_name(longest) == longest
    assert values.normalize_name(f"   {longest}   ") == longest
    with pytest.raises(InvalidValue, match="at most 200") as caught:
        values.normalize_name("n" * (values.NAME_MAX + 1))
    assert caught.value.field == "name"


@pytest.mark.parametrize("raw", ["", " ", "   \t\n "])
def test_name_must_not_be_empty(raw: str) -> None:
    with pytest.raises(InvalidValue, match="empty"):
        values.normalize_name(raw)


@pytest.mark.parametrize("raw", ["a\x00b", "a\nb", "a\tb", "a\rb", "bell\x07", "del\x7f", "x\x85y"])
def test_name_rejects_control_characters(raw: str) -> None:
    with pytest.raises(InvalidValue, match="control characters"):
        values.normalize_name(raw)


# -- description ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw", [None, "", "plain", "  kept as sent  ", "line one\nline two\r\n\tindented"]
)
def test_description_is_kept_as_sent(raw: str | None) -> None:
    assert values.normalize_description(raw) == raw


def test_description_length_limit() -> None:
    longest = "d" * values.DESCRIPTION_MAX
    assert values.normalize_description(longest) == longest
    with pytest.raises(InvalidValue, match="at most 2000") as caught:
        values.normalize_description(longest + "d")
    assert caught.value.field == "description"


@pytest.mark.parametrize("raw", ["nul\x00", "esc\x1b[0m", "\x7f"])
def test_description_rejects_control_characters_other_than_line_breaks(raw: str) -> None:
    with pytest.raises(InvalidValue, match="control characters"):
        values.normalize_description(raw)


# -- tags ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ([], ()),
        (["office"], ("office",)),
        (["b", "a", "c"], ("a", "b", "c")),
        (["x", "x", "a", "x"], ("a", "x")),
        (["a-1", "0", "-"], ("-", "0", "a-1")),
        (("tuple", "also"), ("also", "tuple")),
    ],
)
def test_tags_are_deduplicated_and_sorted(
    raw: list[str] | tuple[str, ...], expected: tuple[str, ...]
) -> None:
    assert values.normalize_tags(raw) == expected


def test_tag_length_limits() -> None:
    longest = "t" * values.TAG_MAX
    assert values.normalize_tags([longest]) == (longest,)
    with pytest.raises(InvalidValue, match="1..50"):
        values.normalize_tags(["t" * (values.TAG_MAX + 1)])


@pytest.mark.parametrize(
    "bad", ["", "Office", "a_b", "a b", "a.b", "ü", "tag\n", " tag", "#x", "é"]
)
def test_tags_only_lowercase_ascii_digits_and_dash(bad: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        values.normalize_tags(["fine", bad])
    assert caught.value.field == "tags"


def test_tags_must_be_strings() -> None:
    with pytest.raises(InvalidValue):
        values.normalize_tags([1])  # type: ignore[list-item]


def test_at_most_twenty_distinct_tags() -> None:
    twenty = [f"t{i}" for i in range(values.TAGS_MAX)]
    assert values.normalize_tags(twenty) == tuple(sorted(twenty))
    # Duplicates collapse before counting: 30 entries, 20 distinct is fine.
    assert len(values.normalize_tags(twenty + twenty[:10])) == values.TAGS_MAX
    with pytest.raises(InvalidValue, match="at most 20 distinct"):
        values.normalize_tags([*twenty, "one-more"])


def test_validate_tag() -> None:
    assert values.validate_tag("sale") == "sale"
    with pytest.raises(InvalidValue):
        values.validate_tag("Sale")
