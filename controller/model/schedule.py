"""Cron schedules in IANA time zones, and Argo CD-style sync windows.

Written here rather than taken from croniter because the daylight-saving behaviour must be
exact and documented, and croniter fires a fixed-time job twice on the autumn change-over.
The rules, as Vixie cron and cronie apply them:

- Expressions match local wall-clock time in the given zone.
- A local time skipped by a spring-forward change fires once, at the instant of the change.
- A local time repeated by a fall-back change fires once (its first occurrence), unless the
  hour field is `*`, in which case it fires in both occurrences so that "every N minutes"
  keeps its real-time cadence.
- Day-of-month and day-of-week combine with OR when both are restricted, AND when either is
  `*` or `?` (robfig/cron, which Kubernetes CronJobs and Argo CD use, does the same; like
  robfig, `*/2` counts as restricted).
"""

from __future__ import annotations

import bisect
import calendar
import heapq
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from controller.model.durations import format_duration

WindowKind = Literal["allow", "deny"]

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = {m.lower(): i for i, m in enumerate(calendar.month_abbr) if m}
_DAYS = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day-of-month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 0, 7, _DAYS),
)
_FORMAT_HELP = (
    "expected 5 fields 'minute hour day-of-month month day-of-week' (such as '0 9 * * 1-5') "
    "or one of " + ", ".join(sorted(_MACROS))
)
# An instant whose local date is D is never earlier than D 00:00 wall time minus this bound
# (real offsets stay within +-16h); it lets fire times be emitted in order across days.
_MAX_OFFSET = timedelta(hours=16)
_MAX_SCAN_DAYS = 366 * 10  # covers "0 0 29 2 *" (8-year gaps around 2100)
_MACHINE_ZONES = frozenset({"localtime", "Local"})


@dataclass(frozen=True)
class CronSpec:
    """A parsed 5-field cron expression; sets of allowed values per field."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: frozenset[int]
    months: frozenset[int]
    days_of_week: frozenset[int]  # 0 = Sunday
    dom_any: bool
    dow_any: bool
    hour_any: bool
    day_minutes: tuple[int, ...]  # sorted minute-of-day values (hour * 60 + minute)
    day_offsets: tuple[timedelta, ...]  # the same, precomputed: this is the hot path

    def matches_day(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.days_of_month
        dow = (day.weekday() + 1) % 7 in self.days_of_week
        if self.dom_any or self.dow_any:
            return dom and dow
        return dom or dow


def _parse_field(text: str, index: int) -> tuple[frozenset[int], bool]:
    name, low, high, names = _FIELDS[index]
    star = text in ("*", "?")
    if text == "?" and index not in (2, 4):
        raise ValueError(f"{name} field: '?' is only allowed for day-of-month and day-of-week")
    values: set[int] = set()
    for item in text.split(","):
        if item == "":
            raise ValueError(f"{name} field {text!r}: empty list item")
        range_part, slash, step_part = item.partition("/")
        step = 1
        if slash:
            if not step_part.isdigit() or int(step_part) == 0:
                raise ValueError(f"{name} field {item!r}: step must be a positive number")
            step = int(step_part)
        if range_part in ("*", "?"):
            start, end = low, high
        else:
            first, dash, last = range_part.partition("-")
            start = _value(first, name, low, high, names)
            end = _value(last, name, low, high, names) if dash else (high if slash else start)
            if end < start:
                raise ValueError(f"{name} field {item!r}: range start is after its end")
        values.update(range(start, end + 1, step))
    if index == 4 and 7 in values:  # 7 is Sunday too
        values.discard(7)
        values.add(0)
    return frozenset(values), star


def _value(text: str, field: str, low: int, high: int, names: dict[str, int]) -> int:
    lowered = text.lower()
    if lowered in names:
        return names[lowered]
    if not text.isdigit():
        hint = f" (or a name such as {next(iter(names))})" if names else ""
        raise ValueError(f"{field} field: {text!r} is not a number{hint}")
    number = int(text)
    if not low <= number <= high:
        raise ValueError(f"{field} field: {number} is out of range {low}-{high}")
    return number


@lru_cache(maxsize=512)
def parse_cron(expr: str) -> CronSpec:
    """Parse a cron expression; ValueError says which field is wrong and why."""
    if not isinstance(expr, str):
        raise ValueError(f"cron expression must be a string; {_FORMAT_HELP}")
    text = expr.strip()
    if text.startswith("@"):
        if text.lower() not in _MACROS:
            raise ValueError(f"unknown cron macro {text!r}; {_FORMAT_HELP}")
        text = _MACROS[text.lower()]
    if re.match(r"^(CRON_)?TZ=", text):
        raise ValueError("put the time zone in the 'timezone' field, not in the expression")
    fields = text.split()
    if len(fields) != 5:
        raise ValueError(f"cron expression {expr!r} has {len(fields)} fields; {_FORMAT_HELP}")
    parsed = [_parse_field(f, i) for i, f in enumerate(fields)]
    (minutes, _), (hours, hour_any), (doms, dom_any), (months, _), (dows, dow_any) = parsed
    day_minutes = [h * 60 + m for h in sorted(hours) for m in sorted(minutes)]
    spec = CronSpec(
        minutes=minutes,
        hours=hours,
        days_of_month=doms,
        months=months,
        days_of_week=dows,
        dom_any=dom_any,
        dow_any=dow_any,
        hour_any=hour_any,
        day_minutes=tuple(day_minutes),
        day_offsets=tuple(timedelta(minutes=m) for m in day_minutes),
    )
    if dow_any and not dom_any:
        longest = max(29 if m == 2 else calendar.monthrange(2001, m)[1] for m in months)
        if min(doms) > longest:
            names = ", ".join(calendar.month_name[m] for m in sorted(months))
            raise ValueError(f"cron expression {expr!r} never fires: no day {min(doms)} in {names}")
    return spec


def validate_cron(expr: str) -> str | None:
    """The error message for an invalid expression, or None when it is valid."""
    try:
        parse_cron(expr)
    except ValueError as exc:
        return str(exc)
    return None


@lru_cache(maxsize=64)
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    error = validate_timezone(name)
    if error is not None:
        raise ValueError(error)
    return ZoneInfo(name)


def validate_timezone(name: str) -> str | None:
    """The error message for a name that is not an IANA zone, or None.

    Names must match exactly (case included): a case-insensitive filesystem would otherwise
    accept "europe/berlin" on one machine and not on another.
    """
    if not isinstance(name, str) or not name:
        return "time zone must be an IANA name such as 'UTC' or 'Europe/Berlin'"
    if name in _MACHINE_ZONES:
        return f"time zone {name!r} depends on the machine; use an IANA name such as 'UTC'"
    if name not in _zone_names():
        matches = [z for z in _zone_names() if z.lower() == name.strip().lower()]
        hint = f"; did you mean {matches[0]!r}?" if matches else " such as 'Europe/Berlin'"
        return f"unknown time zone {name!r}: expected an IANA name{hint}"
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        return f"time zone {name!r} cannot be loaded: {exc}"
    return None


def _utc(naive: datetime) -> datetime:
    return naive.replace(tzinfo=UTC)


def _offset_at(zone: ZoneInfo, instant_utc: datetime) -> timedelta:
    offset = instant_utc.astimezone(zone).utcoffset()
    assert offset is not None
    return offset


def _transition(zone: ZoneInfo, before: datetime, after: datetime) -> datetime:
    """The first instant in (before, after] whose offset differs from the one at `before`."""
    old = _offset_at(zone, before)
    lo, hi = 0, int((after - before).total_seconds())
    while lo + 1 < hi:
        mid = (lo + hi) // 2
        if _offset_at(zone, before + timedelta(seconds=mid)) == old:
            lo = mid
        else:
            hi = mid
    return before + timedelta(seconds=hi)


def _day_fires(spec: CronSpec, zone: ZoneInfo, day: date) -> list[datetime]:
    """Fire instants (aware UTC, sorted, unique) for a matching local date."""
    midnight = datetime.combine(day, time(0))
    start_offset = midnight.replace(tzinfo=zone).utcoffset()
    end_offset = (midnight + timedelta(days=1)).replace(tzinfo=zone).utcoffset()
    assert start_offset is not None and end_offset is not None
    if start_offset == end_offset:  # no change-over this day: plain arithmetic
        base = _utc(midnight - start_offset)
        return [base + offset for offset in spec.day_offsets]
    out: set[datetime] = set()
    for m in spec.day_minutes:
        naive = midnight + timedelta(minutes=m)
        first = naive.replace(tzinfo=zone, fold=0).utcoffset()
        second = naive.replace(tzinfo=zone, fold=1).utcoffset()
        assert first is not None and second is not None
        if first == second:
            out.add(_utc(naive - first))
        elif first > second:  # repeated wall time (fall back)
            out.add(_utc(naive - first))
            if spec.hour_any:
                out.add(_utc(naive - second))
        else:  # skipped wall time (spring forward): fire at the change-over
            out.add(_transition(zone, _utc(naive - second), _utc(naive - first)))
    return sorted(out)


def iter_fires(spec: CronSpec, zone: ZoneInfo, after: datetime) -> Iterator[datetime]:
    """Fire instants strictly after `after` (aware), in order, as aware UTC datetimes.

    Stops after ten years of local dates; a valid spec always fires within that.
    """
    after_utc = after.astimezone(UTC)
    day = after_utc.astimezone(zone).date() - timedelta(days=1)
    pending: list[datetime] = []
    for _ in range(_MAX_SCAN_DAYS):
        if spec.matches_day(day):
            pending.extend(f for f in _day_fires(spec, zone, day) if f > after_utc)
            pending.sort()
        day += timedelta(days=1)
        # Instants of later local dates cannot precede this watermark.
        watermark = _utc(datetime.combine(day, time(0)) - _MAX_OFFSET)
        ready = bisect.bisect_left(pending, watermark)
        if ready:
            yield from pending[:ready]
            del pending[:ready]
    yield from pending


def next_fire(expr: str, tz: str, after: datetime) -> datetime:
    """The first fire time strictly after `after` (aware), as an aware UTC datetime."""
    if after.tzinfo is None or after.utcoffset() is None:
        raise ValueError("'after' must be a timezone-aware datetime")
    spec = parse_cron(expr)
    for fire in iter_fires(spec, _zone(tz), after):
        return fire
    raise ValueError(f"cron expression {expr!r} does not fire within ten years")


# ------------------------------------------------------------------------------ windows


@dataclass(frozen=True)
class Window:
    """A sync window: opens at each fire of `schedule` and stays open for `duration`."""

    kind: WindowKind
    schedule: str
    duration: timedelta
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if self.kind not in ("allow", "deny"):
            raise ValueError(f"window kind {self.kind!r} must be 'allow' or 'deny'")
        if self.duration <= timedelta(0):
            raise ValueError("window duration must be positive")
        for error in (validate_cron(self.schedule), validate_timezone(self.timezone)):
            if error is not None:
                raise ValueError(error)

    def describe(self) -> str:
        return (
            f"{self.kind} window '{self.schedule}' for {format_duration(self.duration)}"
            f" ({self.timezone})"
        )


@dataclass(frozen=True)
class WindowState:
    open: bool
    reason: str
    next_change_at: datetime | None


def _intervals(w: Window, now: datetime, end: datetime) -> Iterator[tuple[datetime, datetime]]:
    """Merged [open, close) intervals of a window that are still open after `now`."""
    start: datetime | None = None
    close = now
    duration = w.duration
    # A fire at or before now - duration has closed by now.
    for fire in iter_fires(parse_cron(w.schedule), _zone(w.timezone), now - duration):
        if fire > end:
            break
        if start is not None and fire <= close:
            close = max(close, fire + duration)
            continue
        if start is not None:
            yield (start, close)
        start, close = fire, fire + duration
    if start is not None:
        yield (start, close)


def _events(
    index: int, intervals: Iterable[tuple[datetime, datetime]], now: datetime
) -> Iterator[tuple[datetime, int, bool]]:
    for start, close in intervals:
        if start > now:
            yield (start, index, True)
        yield (close, index, False)


def _decide(windows: Sequence[Window], active: Sequence[bool]) -> tuple[bool, str]:
    for w, on in zip(windows, active, strict=True):
        if on and w.kind == "deny":
            return False, f"inside {w.describe()}"
    allows = [(w, on) for w, on in zip(windows, active, strict=True) if w.kind == "allow"]
    if not allows:
        return True, "no deny window is active"
    for w, on in allows:
        if on:
            return True, f"inside {w.describe()}"
    return False, "outside every allow window"


def window_state(
    windows: Sequence[Window], now: datetime, horizon: timedelta = timedelta(days=366)
) -> WindowState:
    """Whether syncing is allowed at `now`, why, and when that answer next flips.

    Allowed iff (there is no allow window, or one is open) and no deny window is open; deny
    wins over allow, as in Argo CD. `next_change_at` is None when nothing changes within
    `horizon`.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("'now' must be a timezone-aware datetime")
    now = now.astimezone(UTC)
    if not windows:
        return WindowState(True, "no sync windows", None)
    end = now + horizon
    active: list[bool] = []
    streams: list[Iterator[tuple[datetime, int, bool]]] = []
    for i, w in enumerate(windows):
        intervals = _intervals(w, now, end)
        first = next(intervals, None)
        active.append(first is not None and first[0] <= now < first[1])
        chained = [first] if first is not None else []
        streams.append(_events(i, _chain(chained, intervals), now))
    is_open, reason = _decide(windows, active)
    events = heapq.merge(*streams)
    pending = next(events, None)
    while pending is not None and pending[0] <= end:
        at = pending[0]
        while pending is not None and pending[0] == at:
            active[pending[1]] = pending[2]
            pending = next(events, None)
        if _decide(windows, active)[0] != is_open:
            return WindowState(is_open, reason, at)
    return WindowState(is_open, reason, None)


def _chain(
    head: list[tuple[datetime, datetime]], tail: Iterator[tuple[datetime, datetime]]
) -> Iterator[tuple[datetime, datetime]]:
    yield from head
    yield from tail
