from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.model.schedule import (
    Window,
    next_fire,
    parse_cron,
    validate_cron,
    validate_timezone,
    window_state,
)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def fires(expr: str, tz: str, start: str, count: int) -> list[str]:
    out: list[str] = []
    at = utc(start)
    for _ in range(count):
        at = next_fire(expr, tz, at)
        assert at.tzinfo is UTC
        out.append(at.strftime("%Y-%m-%dT%H:%MZ"))
    return out


@pytest.mark.parametrize(
    "expr",
    [
        "* * * * *",
        "0 9 * * 1-5",
        "*/15 * * * *",
        "0 0 1 1 *",
        "5,10,15-20/2 0-23/6 1-31 1-12 0-7",
        "0 9 * * mon-fri",
        "0 9 * jan,JUL *",
        "0 9 ? * SUN",
        "0 0 30 2,4 *",  # 30 April exists
        "0 0 29 2 *",
        "  0 9 * * 1  ",
        "@hourly",
        "@daily",
        "@midnight",
        "@weekly",
        "@monthly",
        "@yearly",
        "@annually",
        "@DAILY",
    ],
)
def test_validate_cron_accepts(expr: str) -> None:
    assert validate_cron(expr) is None


@pytest.mark.parametrize(
    ("expr", "fragment"),
    [
        ("", "has 0 fields"),
        ("* * * *", "has 4 fields"),
        ("0 0 * * * *", "has 6 fields"),  # seconds field: not supported
        ("60 * * * *", "minute field: 60 is out of range 0-59"),
        ("* 24 * * *", "hour field: 24 is out of range 0-23"),
        ("* * 0 * *", "day-of-month field: 0 is out of range 1-31"),
        ("* * * 13 *", "month field: 13 is out of range 1-12"),
        ("* * * * 8", "day-of-week field: 8 is out of range 0-7"),
        ("*/0 * * * *", "step must be a positive number"),
        ("*/x * * * *", "step must be a positive number"),
        ("5-1 * * * *", "range start is after its end"),
        ("1,,2 * * * *", "empty list item"),
        ("a * * * *", "minute field: 'a' is not a number"),
        ("* * * foo *", "month field: 'foo' is not a number (or a name such as jan)"),
        ("? * * * *", "'?' is only allowed for day-of-month and day-of-week"),
        ("@reboot", "unknown cron macro '@reboot'"),
        ("@every 1h", "unknown cron macro"),
        ("TZ=UTC 0 0 * * *", "put the time zone in the 'timezone' field"),
        ("CRON_TZ=UTC 0 0 * * *", "put the time zone in the 'timezone' field"),
        ("0 0 31 2 *", "never fires: no day 31 in February"),
        ("0 0 30 2 *", "never fires"),
        ("0 0 31 4,6,9,11 *", "never fires"),
    ],
)
def test_validate_cron_rejects(expr: str, fragment: str) -> None:
    error = validate_cron(expr)
    assert error is not None
    assert fragment in error


def test_validate_cron_non_string() -> None:
    assert validate_cron(None) is not None  # type: ignore[arg-type]


def test_sunday_is_0_and_7() -> None:
    assert parse_cron("0 0 * * 7").days_of_week == parse_cron("0 0 * * 0").days_of_week


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("UTC", None),
        ("Europe/Berlin", None),
        ("America/Argentina/Buenos_Aires", None),
        ("Etc/GMT+5", None),
        ("utc", "did you mean 'UTC'?"),
        ("europe/berlin", "did you mean 'Europe/Berlin'?"),
        ("Mars/Olympus_Mons", "unknown time zone"),
        ("", "IANA name"),
        ("localtime", "depends on the machine"),
        ("Local", "depends on the machine"),
        ("../etc/passwd", "unknown time zone"),
        ("/etc/passwd", "unknown time zone"),
        ("+02:00", "unknown time zone"),
    ],
)
def test_validate_timezone(name: str, fragment: str | None) -> None:
    error = validate_timezone(name)
    if fragment is None:
        assert error is None
    else:
        assert error is not None and fragment in error


@pytest.mark.parametrize(
    ("expr", "tz", "start", "expected"),
    [
        ("0 9 * * 1-5", "UTC", "2024-01-05T10:00", ["2024-01-08T09:00Z", "2024-01-09T09:00Z"]),
        ("*/15 * * * *", "UTC", "2024-01-01T00:00", ["2024-01-01T00:15Z", "2024-01-01T00:30Z"]),
        ("0 0 1 * *", "UTC", "2024-01-31T12:00", ["2024-02-01T00:00Z", "2024-03-01T00:00Z"]),
        ("0 12 31 * *", "UTC", "2024-04-01T00:00", ["2024-05-31T12:00Z", "2024-07-31T12:00Z"]),
        ("0 0 29 2 *", "UTC", "2096-03-01T00:00", ["2104-02-29T00:00Z", "2108-02-29T00:00Z"]),
        # Day-of-month OR day-of-week when both are restricted: the 13th, or any Friday.
        ("0 0 13 * 5", "UTC", "2024-09-01T00:00", ["2024-09-06T00:00Z", "2024-09-13T00:00Z"]),
        # AND when one of them is `*`: Fridays only.
        ("0 0 * * 5", "UTC", "2024-09-06T00:00", ["2024-09-13T00:00Z"]),
        ("@weekly", "UTC", "2024-01-01T00:00", ["2024-01-07T00:00Z", "2024-01-14T00:00Z"]),
        ("@yearly", "UTC", "2024-06-01T00:00", ["2025-01-01T00:00Z"]),
        ("0 9 * * *", "Europe/Berlin", "2024-01-10T00:00", ["2024-01-10T08:00Z"]),
        ("0 9 * * *", "Europe/Berlin", "2024-07-10T00:00", ["2024-07-10T07:00Z"]),
        ("0 9 * * *", "Asia/Kolkata", "2024-07-10T00:00", ["2024-07-10T03:30Z"]),
        # Spring forward in Berlin (02:00 -> 03:00 on 2024-03-31): a skipped time fires once,
        # at the change-over; days after are normal.
        (
            "30 2 * * *",
            "Europe/Berlin",
            "2024-03-30T12:00",
            ["2024-03-31T01:00Z", "2024-04-01T00:30Z"],
        ),
        (
            "*/30 * * * *",
            "Europe/Berlin",
            "2024-03-31T00:00",
            ["2024-03-31T00:30Z", "2024-03-31T01:00Z", "2024-03-31T01:30Z"],
        ),
        # Fall back (03:00 -> 02:00 on 2024-10-27): a fixed time fires once...
        (
            "30 2 * * *",
            "Europe/Berlin",
            "2024-10-26T12:00",
            ["2024-10-27T00:30Z", "2024-10-28T01:30Z"],
        ),
        # ...while an every-hour schedule keeps its real-time cadence through both 02:xx.
        (
            "*/30 * * * *",
            "Europe/Berlin",
            "2024-10-26T23:50",
            [
                "2024-10-27T00:00Z",
                "2024-10-27T00:30Z",
                "2024-10-27T01:00Z",
                "2024-10-27T01:30Z",
                "2024-10-27T02:00Z",
            ],
        ),
        (
            "@hourly",
            "America/New_York",
            "2024-11-03T04:30",
            ["2024-11-03T05:00Z", "2024-11-03T06:00Z", "2024-11-03T07:00Z"],
        ),
        # Southern hemisphere spring forward (Sydney 02:00 -> 03:00 on 2024-10-06).
        ("15 2 * * *", "Australia/Sydney", "2024-10-05T12:00", ["2024-10-05T16:00Z"]),
        # Santiago changes at midnight: on 2024-09-08 midnight does not exist...
        ("0 0 * * *", "America/Santiago", "2024-09-07T12:00", ["2024-09-08T04:00Z"]),
        # ...and on 2024-04-06 the hour 23:00-24:00 happens twice, across the date change.
        (
            "*/30 23 * * *",
            "America/Santiago",
            "2024-04-06T12:00",
            ["2024-04-07T02:00Z", "2024-04-07T02:30Z", "2024-04-08T03:00Z"],
        ),
        (
            "*/30 * * * *",
            "America/Santiago",
            "2024-04-07T01:45",
            [
                "2024-04-07T02:00Z",
                "2024-04-07T02:30Z",
                "2024-04-07T03:00Z",
                "2024-04-07T03:30Z",
                "2024-04-07T04:00Z",
            ],
        ),
    ],
)
def test_next_fire(expr: str, tz: str, start: str, expected: list[str]) -> None:
    assert fires(expr, tz, start, len(expected)) == expected


def test_next_fire_is_strictly_after() -> None:
    assert next_fire("0 9 * * *", "UTC", utc("2024-01-01T09:00")) == utc("2024-01-02T09:00")
    assert next_fire("0 9 * * *", "UTC", utc("2024-01-01T08:59:59.999")) == utc("2024-01-01T09:00")


def test_next_fire_accepts_any_aware_datetime() -> None:
    berlin = datetime(2024, 1, 1, 10, 0, tzinfo=ZoneInfo("Europe/Berlin"))  # 09:00Z
    assert next_fire("0 * * * *", "UTC", berlin) == utc("2024-01-01T10:00")


@pytest.mark.parametrize(
    ("expr", "tz", "after", "fragment"),
    [
        ("0 9 * * *", "UTC", datetime(2024, 1, 1), "timezone-aware"),
        ("bad", "UTC", utc("2024-01-01T00:00"), "has 1 fields"),
        ("0 9 * * *", "Nowhere/City", utc("2024-01-01T00:00"), "unknown time zone"),
    ],
)
def test_next_fire_errors(expr: str, tz: str, after: datetime, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        next_fire(expr, tz, after)


minute_sets = st.sets(st.integers(0, 59), min_size=1, max_size=4)
hour_sets = st.sets(st.integers(0, 23), min_size=1, max_size=4)
dow_sets = st.one_of(st.none(), st.sets(st.integers(0, 6), min_size=1, max_size=3))
instants = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
)


def _field(values: set[int] | None) -> str:
    return "*" if values is None else ",".join(str(v) for v in sorted(values))


@settings(max_examples=60, deadline=None)
@given(minute_sets, hour_sets, dow_sets, instants)
def test_next_fire_in_utc_is_the_first_matching_minute(
    minutes: set[int], hours: set[int], dows: set[int] | None, after: datetime
) -> None:
    expr = f"{_field(minutes)} {_field(hours)} * * {_field(dows)}"
    got = next_fire(expr, "UTC", after)
    assert got > after
    assert got.minute in minutes and got.hour in hours and got.second == 0
    if dows is not None:
        assert (got.weekday() + 1) % 7 in dows
    # No matching minute was skipped in between.
    probe = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while probe < got:
        matches = probe.minute in minutes and probe.hour in hours
        assert not (matches and (dows is None or (probe.weekday() + 1) % 7 in dows))
        probe += timedelta(minutes=1)


@settings(max_examples=40, deadline=None)
@given(minute_sets, hour_sets, instants, st.sampled_from(["Europe/Berlin", "America/New_York"]))
def test_next_fire_local_wall_time_matches(
    minutes: set[int], hours: set[int], after: datetime, tz: str
) -> None:
    expr = f"{_field(minutes)} {_field(hours)} * * *"
    got = next_fire(expr, tz, after)
    assert got > after
    local = got.astimezone(ZoneInfo(tz))
    if local.minute in minutes and local.hour in hours:
        return
    # Otherwise it must be a spring-forward change-over standing in for a skipped time.
    before = (got - timedelta(seconds=1)).astimezone(ZoneInfo(tz))
    assert before.utcoffset() != local.utcoffset()


# ------------------------------------------------------------------------------ windows

WEEKDAYS = Window("allow", "0 9 * * 1-5", timedelta(hours=8), "UTC")
LUNCH_FREEZE = Window("deny", "0 12 * * *", timedelta(hours=1), "UTC")


@pytest.mark.parametrize(
    ("windows", "now", "is_open", "reason", "next_change"),
    [
        ([], "2024-01-05T10:00", True, "no sync windows", None),
        ([WEEKDAYS], "2024-01-05T10:00", True, "inside allow window", "2024-01-05T17:00"),
        ([WEEKDAYS], "2024-01-05T09:00", True, "inside allow window", "2024-01-05T17:00"),
        ([WEEKDAYS], "2024-01-05T17:00", False, "outside every allow window", "2024-01-08T09:00"),
        ([WEEKDAYS], "2024-01-06T10:00", False, "outside every allow window", "2024-01-08T09:00"),
        (
            [WEEKDAYS, LUNCH_FREEZE],
            "2024-01-05T12:30",
            False,
            "inside deny window",
            "2024-01-05T13:00",
        ),
        (
            [WEEKDAYS, LUNCH_FREEZE],
            "2024-01-05T11:30",
            True,
            "inside allow window",
            "2024-01-05T12:00",
        ),
        # Deny ends at 13:00 on a Saturday but no allow window is open then: still closed.
        (
            [WEEKDAYS, LUNCH_FREEZE],
            "2024-01-06T12:30",
            False,
            "inside deny window",
            "2024-01-08T09:00",
        ),
        ([LUNCH_FREEZE], "2024-01-06T10:00", True, "no deny window is active", "2024-01-06T12:00"),
        ([LUNCH_FREEZE], "2024-01-06T12:00", False, "inside deny window", "2024-01-06T13:00"),
        # Overlapping fires merge: hourly for 2h is always open.
        (
            [Window("allow", "0 * * * *", timedelta(hours=2))],
            "2024-01-06T10:00",
            True,
            "inside",
            None,
        ),
        # Two allow windows chained back to back: no gap between them.
        (
            [
                Window("allow", "0 9 * * *", timedelta(hours=3)),
                Window("allow", "0 12 * * *", timedelta(hours=3)),
            ],
            "2024-01-06T10:00",
            True,
            "inside allow window '0 9 * * *' for 3h (UTC)",
            "2024-01-06T15:00",
        ),
        # A window in Berlin time follows DST: 09:00 local is 07:00Z in summer.
        (
            [Window("allow", "0 9 * * *", timedelta(hours=1), "Europe/Berlin")],
            "2024-07-01T07:30",
            True,
            "(Europe/Berlin)",
            "2024-07-01T08:00",
        ),
    ],
)
def test_window_state(
    windows: list[Window], now: str, is_open: bool, reason: str, next_change: str | None
) -> None:
    state = window_state(windows, utc(now))
    assert state.open is is_open
    assert reason in state.reason
    assert state.next_change_at == (None if next_change is None else utc(next_change))


def test_window_state_horizon_bounds_the_search() -> None:
    yearly = Window("allow", "0 0 1 1 *", timedelta(hours=1))
    now = utc("2024-03-01T00:00")
    assert window_state([yearly], now).next_change_at == utc("2025-01-01T00:00")
    assert window_state([yearly], now, horizon=timedelta(days=30)).next_change_at is None


def test_window_state_next_change_really_flips() -> None:
    windows = [WEEKDAYS, LUNCH_FREEZE, Window("deny", "0 0 24 12 *", timedelta(days=3))]
    now = utc("2024-12-20T08:00")
    for _ in range(12):
        state = window_state(windows, now)
        assert state.next_change_at is not None and state.next_change_at > now
        just_before = window_state(windows, state.next_change_at - timedelta(seconds=1))
        after = window_state(windows, state.next_change_at)
        assert just_before.open is state.open
        assert after.open is not state.open
        now = state.next_change_at


def test_window_state_requires_aware_now() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        window_state([WEEKDAYS], datetime(2024, 1, 1))


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"kind": "maybe"}, "must be 'allow' or 'deny'"),
        ({"duration": timedelta(0)}, "must be positive"),
        ({"schedule": "0 25 * * *"}, "hour field"),
        ({"timezone": "Berlin"}, "unknown time zone"),
    ],
)
def test_window_rejects_invalid(kwargs: dict[str, object], fragment: str) -> None:
    base: dict[str, object] = {
        "kind": "allow",
        "schedule": "0 9 * * *",
        "duration": timedelta(hours=1),
        "timezone": "UTC",
    }
    base.update(kwargs)
    with pytest.raises(ValueError, match=fragment):
        Window(**base)  # type: ignore[arg-type]
