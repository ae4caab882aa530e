from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.model.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("1m30s", timedelta(minutes=1, seconds=30)),
        ("48h", timedelta(hours=48)),
        ("10m", timedelta(minutes=10)),
        ("500ms", timedelta(milliseconds=500)),
        ("7d", timedelta(days=7)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("1.5h", timedelta(hours=1, minutes=30)),
        (".5s", timedelta(milliseconds=500)),
        ("1.s", timedelta(seconds=1)),
        ("0", timedelta(0)),
        ("0s", timedelta(0)),
        ("1h0.5s", timedelta(hours=1, milliseconds=500)),
        ("250us", timedelta(microseconds=250)),
        ("250µs", timedelta(microseconds=250)),
        ("250μs", timedelta(microseconds=250)),
        ("1000ns", timedelta(microseconds=1)),
        ("1s1s", timedelta(seconds=2)),  # Go sums repeated units
        ("2h45m30.25s", timedelta(hours=2, minutes=45, seconds=30, milliseconds=250)),
    ],
)
def test_parse_valid(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "it is empty"),
        ("-1s", "negative durations are not allowed"),
        ("-0s", "negative"),
        ("10", "missing unit after '10'"),
        ("1h30", "missing unit after '30'"),
        ("5x", "unknown unit 'x'"),
        ("1H", "unknown unit 'H'"),
        ("1w", "unknown unit 'w'"),
        ("1 h", "unknown unit ' h'"),
        (" 1h", "expected a number"),
        ("h", "expected a number"),
        ("1h.", "expected a number"),
        ("+1h", "expected a number"),
        ("1ns", "finer than a microsecond"),
        ("1.5us", "finer than a microsecond"),
        ("99999999999d", "too large"),
    ],
)
def test_parse_invalid(text: str, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    message = str(info.value)
    assert fragment in message
    if fragment not in ("negative durations are not allowed", "negative", "too large"):
        # Every message says what a valid duration looks like.
        assert "such as 500ms, 90s, 1m30s, 48h or 7d" in message


def test_parse_rejects_non_string() -> None:
    with pytest.raises(ValueError, match="expected a string"):
        parse_duration(30)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("td", "text"),
    [
        (timedelta(0), "0s"),
        (timedelta(hours=1, minutes=30), "1h30m"),
        (timedelta(seconds=90), "1m30s"),
        (timedelta(hours=48), "48h"),
        (timedelta(days=7), "168h"),
        (timedelta(minutes=10), "10m"),
        (timedelta(milliseconds=500), "500ms"),
        (timedelta(milliseconds=1500), "1.5s"),
        (timedelta(microseconds=1500), "1.5ms"),
        (timedelta(microseconds=7), "7us"),
        (timedelta(hours=1, seconds=1), "1h1s"),
        (timedelta(hours=1, microseconds=1), "1h0.000001s"),
    ],
)
def test_format(td: timedelta, text: str) -> None:
    assert format_duration(td) == text


def test_format_rejects_negative() -> None:
    with pytest.raises(ValueError):
        format_duration(timedelta(seconds=-1))


durations = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3650))


@given(durations)
def test_format_then_parse_round_trips(td: timedelta) -> None:
    text = format_duration(td)
    assert parse_duration(text) == td
    assert format_duration(parse_duration(text)) == text  # canonical form is a fixed point


@given(st.text(alphabet="0123456789.hmsdunµ-", max_size=12))
def test_parse_either_succeeds_or_raises_value_error(text: str) -> None:
    try:
        td = parse_duration(text)
    except ValueError:
        return
    assert td >= timedelta(0)
    assert parse_duration(format_duration(td)) == td
