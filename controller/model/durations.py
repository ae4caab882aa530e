"""Go/Flux-style durations ("90s", "1m30s", "48h") plus "d" for whole days.

Manifests use them for soak times, waits, retries and windows. Parsing is exact (integer
nanoseconds, no float rounding) and formatting emits only units Go's time.ParseDuration
accepts, so values written back into resource status stay readable by Go tools and kubectl
users.
"""

from __future__ import annotations

import re
from datetime import timedelta

_NS_PER_UNIT: dict[str, int] = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5 micro sign, as Go accepts
    "μs": 1_000,  # U+03BC greek mu, as Go accepts
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
    "d": 86400 * 1_000_000_000,
}
_TERM = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)([^0-9.]*)")
_HELP = "use a number followed by a unit (ms, s, m, h or d), such as 500ms, 90s, 1m30s, 48h or 7d"
_NS_PER_US = 1_000


def parse_duration(text: str) -> timedelta:
    """Parse a non-negative duration; errors say what a valid one looks like."""
    if not isinstance(text, str):
        raise ValueError(f"invalid duration {text!r}: expected a string; {_HELP}")
    if text == "":
        raise ValueError(f"invalid duration: it is empty; {_HELP}")
    if text.startswith("-"):
        raise ValueError(f"invalid duration {text!r}: negative durations are not allowed")
    if text == "0":  # Go accepts a bare zero
        return timedelta(0)
    total_ns = 0
    pos = 0
    while pos < len(text):
        match = _TERM.match(text, pos)
        if match is None:
            raise ValueError(
                f"invalid duration {text!r}: expected a number at {text[pos:]!r}; {_HELP}"
            )
        number, unit = match.group(1), match.group(2)
        if unit == "":
            raise ValueError(f"invalid duration {text!r}: missing unit after {number!r}; {_HELP}")
        if unit not in _NS_PER_UNIT:
            raise ValueError(f"invalid duration {text!r}: unknown unit {unit!r}; {_HELP}")
        whole, _, frac = number.partition(".")
        scale = _NS_PER_UNIT[unit]
        total_ns += int(whole or "0") * scale
        if frac:
            # Exact: frac digits / 10**len * scale, truncated like Go below 1ns.
            total_ns += int(frac) * scale // 10 ** len(frac)
        pos = match.end()
    if total_ns % _NS_PER_US:
        raise ValueError(
            f"invalid duration {text!r}: finer than a microsecond is not supported; {_HELP}"
        )
    try:
        return timedelta(microseconds=total_ns // _NS_PER_US)
    except OverflowError:
        raise ValueError(f"invalid duration {text!r}: too large") from None


def format_duration(td: timedelta) -> str:
    """Shortest canonical Go-compatible form: "1h30m", "90s" -> "1m30s", "1.5s", "500ms".

    Zero components are left out ("1h", not Go's "1h0m0s"); days are written as hours
    ("48h") because Go's parser does not know "d".
    """
    us = (td.days * 86400 + td.seconds) * 1_000_000 + td.microseconds
    if us < 0:
        raise ValueError(f"cannot format negative duration {td}")
    if us == 0:
        return "0s"
    if us < 1_000:
        return f"{us}us"
    if us < 1_000_000:
        return _with_fraction(us, 1_000, "ms")
    hours, rest = divmod(us, 3_600_000_000)
    minutes, rest = divmod(rest, 60_000_000)
    out = ""
    if hours:
        out += f"{hours}h"
    if minutes:
        out += f"{minutes}m"
    if rest:
        out += _with_fraction(rest, 1_000_000, "s")
    return out


def _with_fraction(value: int, per_unit: int, unit: str) -> str:
    whole, frac = divmod(value, per_unit)
    if not frac:
        return f"{whole}{unit}"
    digits = len(str(per_unit)) - 1
    return f"{whole}.{str(frac).rjust(digits, '0').rstrip('0')}{unit}"
