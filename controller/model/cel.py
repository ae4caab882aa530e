"""CEL expressions (conditions, `set` steps, templated fields) over inputs, vars and steps.

A thin layer over the `common-expression-language` package (cel-rust bindings; see
docs/cel.md for why). It gives the rest of flowpin two calls with plain-Python contracts:
`check` for validation (an error message with line and column, or None) and `evaluate`
(JSON-like values in and out, one exception type for every failure). `free_names` lists the
variables an expression reads, so validation can catch `input.x` before a run fails on it.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

__all__ = [
    "BUILTIN_NAMES",
    "CelError",
    "CelIssue",
    "FieldRead",
    "FreeName",
    "check",
    "constant",
    "evaluate",
    "fields_read",
    "free_names",
    "issue",
]

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
    # Imported on first use: the package's import pulls in its terminal UI (~0.2 s), which
    # CLI commands that never meet an expression should not pay for.
    import cel

    return cel.compile(expr)


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
    import cel  # already loaded: a value from CEL exists only after `_compile`

    if isinstance(value, cel.OptionalValue):
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


# --------------------------------------------------------------------------- free names

#: Names CEL itself binds: the type values (`type(x) == int`) and the `optional` namespace.
BUILTIN_NAMES = frozenset(
    {"bool", "bytes", "double", "int", "list", "map", "null_type", "string", "type", "uint"}
    | {"optional"}
)
#: Macros whose first argument names a variable bound inside the call: `xs.all(x, x > 0)`.
_MACROS = frozenset({"all", "exists", "exists_one", "existsOne", "map", "filter"})
_KEYWORDS = frozenset({"true", "false", "null", "in"})
_STRING = (
    r"(?:[rR][bB]?|[bB][rR]?)?"  # raw and bytes prefixes belong to the literal
    r'(?:"{3}(?:\\.|[^\\])*?"{3}'
    r"|'{3}(?:\\.|[^\\])*?'{3}"
    r'|"(?:\\.|[^"\\\n])*"'
    r"|'(?:\\.|[^'\\\n])*')"
)
_NUMBER = r"(?:0[xX][0-9a-fA-F]+|\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)[uU]?"
_TOKENS = re.compile(
    rf"(?P<space>\s+|//[^\n]*)|(?P<string>{_STRING})|(?P<quoted>`[^`\n]*`)"
    rf"|(?P<number>{_NUMBER})|(?P<ident>[A-Za-z_][A-Za-z0-9_]*)|(?P<punct>.)",
    re.DOTALL,
)


@dataclass(frozen=True)
class FreeName:
    """A variable read by an expression, with the 1-based character where it first appears."""

    name: str
    offset: int


Token = tuple[str, str, int]  # kind, text, 0-based start


def _tokens(expr: str) -> list[Token]:
    out: list[Token] = []
    for match in _TOKENS.finditer(expr):
        kind = match.lastgroup or "punct"
        if kind != "space":
            # Raw and bytes prefixes are part of the literal, never an identifier.
            out.append((kind, match.group(), match.start()))
    return out


def free_names(expr: str) -> list[FreeName]:
    """The variables `expr` reads from its activation, in order of first use.

    Not free: macro variables (`x` in `xs.all(x, x > 0)`, inside that call), function and
    method names, fields after `.`, literal contents, keywords and CEL's own names
    (`BUILTIN_NAMES`). The compiler's own list of variables bounds the answer, so a token
    this scanner misreads can hide a name but never invent one. Empty when `expr` does not
    compile (`issue` reports that)."""
    tokens, free = _free_occurrences(expr)
    found: dict[str, FreeName] = {}
    for index in free:
        _, text, start = tokens[index]
        found.setdefault(text, FreeName(text, start + 1))
    return list(found.values())


@dataclass(frozen=True)
class FieldRead:
    """A field read straight off a free variable, `inputs.email` or `steps["send-mail"]`,
    with the 1-based character where the variable stands. `tested`: the read is the
    argument of `has()`, which asks whether the field is there."""

    root: str
    field: str
    offset: int
    tested: bool = False


def fields_read(expr: str) -> list[FieldRead]:
    """Every field read from a free variable, in order: what validation compares with the
    inputs a workflow declares, the variables it sets and its step ids. A computed index
    (`inputs[key]`) names no field and is left out."""
    tokens, free = _free_occurrences(expr)
    reads = []
    for index in free:
        _, root, start = tokens[index]
        before = [(kind, text) for kind, text, _ in tokens[max(index - 2, 0) : index]]
        tested = before == [("ident", "has"), ("punct", "(")]
        rest = [(kind, text) for kind, text, _ in tokens[index + 1 : index + 4]]
        if len(rest) > 1 and rest[0] == ("punct", ".") and rest[1][0] == "ident":
            if rest[2:3] != [("punct", "(")]:  # `xs.map(...)` calls a method
                reads.append(FieldRead(root, rest[1][1], start + 1, tested))
        elif len(rest) == 3 and rest[0] == ("punct", "[") and rest[2] == ("punct", "]"):
            kind, literal = rest[1]
            if kind == "string" and literal[0] in "'\"" and "\\" not in literal:
                reads.append(FieldRead(root, literal.strip(literal[0]), start + 1, tested))
    return reads


@lru_cache(maxsize=1024)
def _free_occurrences(expr: str) -> tuple[tuple[Token, ...], tuple[int, ...]]:
    """The tokens of `expr` and the indices of those that read a free variable (each use).
    Cached: validation asks `free_names`, `fields_read` and `constant` of one expression."""
    if issue(expr) is not None:
        return (), ()
    try:
        known = set(_compile(expr).variables())
    except Exception:  # older bindings lack variables(); then trust the scanner alone
        known = None
    tokens = _tokens(expr)
    bound: list[tuple[str, int]] = []  # (name, paren depth of the macro call)
    depth = 0
    free: list[int] = []
    for index, (kind, text, _start) in enumerate(tokens):
        before = tokens[index - 1] if index > 0 else None
        after = tokens[index + 1] if index + 1 < len(tokens) else None
        if kind == "punct" and text in "([{":
            depth += 1
            continue
        if kind == "punct" and text in ")]}":
            depth -= 1
            while bound and bound[-1][1] > depth:
                bound.pop()
            continue
        if kind != "ident":
            continue
        member = before is not None and before[1] == "." and before[0] == "punct"
        call = after is not None and after[1] == "(" and after[0] == "punct"
        if member and call and text in _MACROS:
            variable = tokens[index + 2] if index + 2 < len(tokens) else None
            comma = tokens[index + 3] if index + 3 < len(tokens) else None
            if variable and variable[0] == "ident" and comma and comma[1] == ",":
                bound.append((variable[1], depth + 1))
            continue
        if member or call or text in _KEYWORDS or text in BUILTIN_NAMES:
            continue
        if any(name == text for name, _ in bound):
            continue
        if known is None or text in known:
            free.append(index)
    return tuple(tokens), tuple(free)


def constant(expr: str) -> tuple[bool, Any]:
    """(True, value) when `expr` reads no variables and evaluates without error, so its
    value is known before any run; (False, None) otherwise."""
    if issue(expr) is not None or free_names(expr):
        return False, None
    try:
        return True, evaluate(expr, {})
    except CelError:
        return False, None
