"""CEL expressions (conditions, `set` steps, templated fields) over inputs, vars and steps.

A thin layer over the `common-expression-language` package (cel-rust bindings; see
docs/cel.md for why). It gives the rest of flowpin two calls with plain-Python contracts:
`check` for validation (an error message with line and column, or None) and `evaluate`
(JSON-like values in and out, one exception type for every failure).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import cel as _cel

__all__ = ["CelError", "CelIssue", "check", "evaluate", "issue"]

_ERROR_BLOCK = re.compile(r"ERROR: <input>:(\d+):(\d+): (.*?)(?=\nERROR: |\Z)", re.S)
_MAX_EXPRESSION = 10_000  # characters; expressions are short, and parsing is not free


class CelError(Exception):
    """An expression failed to compile or to evaluate; the message is for the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class CelIssue:
    """A compile error with a 1-based position inside the expression text, so callers can
    add the position of the YAML scalar that holds it."""

    line: int
    column: int
    message: str

    def __str__(self) -> str:
        where = (
            f"column {self.column}" if self.line == 1 else f"line {self.line}, column {self.column}"
        )
        return f"{where}: {self.message}"


@lru_cache(maxsize=1024)
def _compile(expr: str) -> Any:
    return _cel.compile(expr)


def _parse_issue(expr: str, raw: str) -> CelIssue:
    blocks = [(int(m[1]), int(m[2]), m[3]) for m in _ERROR_BLOCK.finditer(raw)]
    if not blocks:
        return CelIssue(1, 1, raw.strip() or "invalid expression")
    # Prefer the parser's own syntax error over follow-on internal ones.
    line, column, text = next((b for b in blocks if "Syntax error" in b[2]), blocks[0])
    # Drop the source excerpt with the caret ("| expr\n| ...^"): the position says it.
    text = "\n".join(row for row in text.splitlines() if not row.startswith("| ")).strip()
    text = text.replace("Syntax error: ", "syntax error: ", 1)
    return CelIssue(line, column, text)


def issue(expr: str) -> CelIssue | None:
    """The compile error of `expr` with its position, or None when it compiles."""
    if not isinstance(expr, str):
        return CelIssue(1, 1, "expression must be a string")
    if len(expr) > _MAX_EXPRESSION:
        return CelIssue(1, 1, f"expression is longer than {_MAX_EXPRESSION} characters")
    try:
        _compile(expr)
    except ValueError as exc:
        return _parse_issue(expr, str(exc))
    except Exception as exc:  # the bindings raise nothing else, but a finding beats a crash
        return CelIssue(1, 1, f"cannot compile expression: {exc}")
    return None


def check(expr: str) -> str | None:
    """A one-line error message ("column 31: syntax error: ...") or None when valid."""
    found = issue(expr)
    return None if found is None else str(found)


def evaluate(expr: str, activation: dict[str, Any]) -> Any:
    """Evaluate `expr` with the given top-level variables; JSON-like values in and out.

    Results that CEL has but JSON lacks follow the proto3 JSON mapping, which is what
    Kubernetes does: timestamps become RFC 3339 strings, durations "1.5s", bytes base64.
    """
    found = issue(expr)
    if found is not None:
        raise CelError(f"invalid expression: {found}")
    try:
        result = _compile(expr).execute(activation)
    except (KeyboardInterrupt, SystemExit):
        raise
    except KeyError as exc:
        name = exc.args[0] if exc.args else "?"
        raise CelError(f"no such key: {name!r}") from None
    except ZeroDivisionError:
        raise CelError("division by zero") from None
    except BaseException as exc:  # pyo3 turns Rust panics into a BaseException subclass
        raise CelError(_runtime_message(exc)) from None
    return _plain(result)


def _runtime_message(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if text.startswith("Conversion Error"):
        return f"unsupported value in the variables: {text.partition(': ')[2] or text}"
    return text


def _plain(value: Any) -> Any:
    """Convert a result to bool/int/float/str/list/dict/None."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {_plain_key(k): _plain(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, timedelta):
        return _duration_text(value)
    if isinstance(value, _cel.OptionalValue):
        return _plain(value.value()) if value.has_value() else None
    raise CelError(f"expression result of type {type(value).__name__} has no JSON form")


def _plain_key(key: Any) -> Any:
    if isinstance(key, bool | int | str):
        return key
    raise CelError(f"map key of type {type(key).__name__} has no JSON form")


def _duration_text(td: timedelta) -> str:
    micros = (td.days * 86400 + td.seconds) * 1_000_000 + td.microseconds
    sign = "-" if micros < 0 else ""
    seconds, frac = divmod(abs(micros), 1_000_000)
    text = f"{sign}{seconds}"
    if frac:
        text += "." + f"{frac:06d}".rstrip("0")
    return text + "s"
