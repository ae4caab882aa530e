"""JSON nobody vetted (imported files, webhook bodies): bounded nesting, valid Unicode,
numbers the API server accepts, positions. Pure; the one JSON reader for untrusted input.

`loads` checks the nesting depth with an iterative scan *before* `json.loads` runs, so the
(recursive) parser never meets a document deep enough to exhaust the stack, and refuses
strings holding a lone UTF-16 surrogate (`"\\ud800"`), which is valid JSON syntax but no
character: it cannot be written as UTF-8 (YAML, git, the terminal) and would fail later,
far from its cause. `NaN`, `Infinity` and numbers beyond a double's range (`1e999`) are
refused too: Kubernetes (JSON over the wire) refuses them, so a sender told to try again
would retry forever. Every refusal is a `JSONInputError` with a line and column.

`positions` locates values by path with a tokenizer that never backtracks: strings are
skipped by the C scanner `json` itself uses, so a 20 MiB string costs one pass and no more
memory than itself (a regex with a repeated alternation keeps state per character: ~130
bytes each, 2.6 GB for a 20 MiB string).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable
from typing import Any

from controller.model.findings import PathElement, format_path

MAX_DEPTH = 64  # as deep as a YAML manifest may nest (source_map.DEFAULT_MAX_DEPTH)

_BRACKET_OR_QUOTE = re.compile(r'["\[\]{}]')
_TOKEN = re.compile(r'[{}\[\]:,"]|[^\s{}\[\]:,"]+')
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_SURROGATE = re.compile("[\ud800-\udfff]")
_scanstring: Callable[[str, int, bool], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]


class JSONInputError(ValueError):
    """Not usable JSON; `line` and `column` (1-based) say where."""

    def __init__(self, message: str, line: int = 1, column: int = 1, syntax: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column
        self.syntax = syntax  # a syntax error (YAML may still read it), not a refusal

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}: {self.message}"


def printable(text: str) -> str:
    """`text` with any lone surrogate written as its escape, so that it can be printed."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def line_column(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def too_deep(text: str, limit: int = MAX_DEPTH) -> int | None:
    """The offset of the first bracket that opens level `limit + 1`, or None. Iterative,
    strings skipped; stops (None) at a malformed string, where `json.loads` will stop too."""
    depth = 0
    position = 0
    search = _BRACKET_OR_QUOTE.search
    while True:
        match = search(text, position)
        if match is None:
            return None
        char = match.group()
        if char == '"':
            try:
                _, position = _scanstring(text, match.end(), True)
            except ValueError:
                return None
            continue
        position = match.end()
        if char in "[{":
            depth += 1
            if depth > limit:
                return match.start()
        else:
            depth -= 1


class _Number(ValueError):
    """A number the API server would refuse; `literal` is how it was written."""

    def __init__(self, message: str, literal: str) -> None:
        super().__init__(message)
        self.literal = literal


def _shortened(text: str) -> str:
    return text if len(text) <= 24 else f"{text[:20]}..."


def _no_constant(name: str) -> Any:
    raise _Number(f"{name} is not a JSON number", name)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Number(f"the number {_shortened(text)} is out of range", text)
    return value


def _bounded_int(text: str) -> int:
    """An integer the API server reads as a number: at most a double's range."""
    try:
        if len(text) <= 400:  # never more than 4300 digits, Python's limit for int()
            value = int(text)
            float(value)
            return value
    except OverflowError:
        pass
    raise _Number(f"the number {_shortened(text)} is out of range", text)


def loads(text: str, max_depth: int = MAX_DEPTH) -> Any:
    """`json.loads`, refusing nesting deeper than `max_depth`, lone surrogates, NaN and
    Infinity, and numbers beyond a double's range."""
    offset = too_deep(text, max_depth)
    if offset is not None:
        raise JSONInputError(f"nested deeper than {max_depth} levels", *line_column(text, offset))
    try:
        data = json.loads(
            text, parse_constant=_no_constant, parse_float=_finite_float, parse_int=_bounded_int
        )
    except _Number as error:
        at = text.find(error.literal)
        raise JSONInputError(str(error), *line_column(text, max(at, 0))) from None
    except json.JSONDecodeError as error:
        raise JSONInputError(error.msg, error.lineno, error.colno, syntax=True) from None
    except RecursionError:  # not reached after the scan; kept as a last guard
        raise JSONInputError(f"nested deeper than {max_depth} levels") from None
    if _SURROGATE_ESCAPE.search(text):
        path = surrogate_path(data)
        if path is not None:
            where, is_key = path
            line, column = positions(text, [where]).get(where, (1, 1))
            what = "a key" if is_key else "a string"
            raise JSONInputError(
                f"{what} at {format_path(where) or 'the top'} holds a lone UTF-16 surrogate "
                "(\\ud800-\\udfff, half of a pair): not a character",
                line,
                column,
            )
    return data


def surrogate_path(data: Any) -> tuple[tuple[PathElement, ...], bool] | None:
    """The path of the first string (or key: then the path of its mapping, and True)
    holding a lone surrogate, in document order. Iterative."""
    work: list[tuple[tuple[PathElement, ...], Any]] = [((), data)]
    while work:
        path, value = work.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                return path, False
        elif isinstance(value, dict):
            for key in value:
                if isinstance(key, str) and _SURROGATE.search(key):
                    return path, True
            work.extend(((*path, key), item) for key, item in reversed(value.items()))
        elif isinstance(value, list):
            work.extend(((*path, index), item) for index, item in reversed(list(enumerate(value))))
    return None


def positions(
    text: str, wanted: Iterable[tuple[PathElement, ...]]
) -> dict[tuple[PathElement, ...], tuple[int, int]]:
    """Path → (line, column) of the values at `wanted` paths that are found (stops once all
    are). Tolerates text that is not JSON: what was found until it stopped making sense."""
    want = set(wanted)
    found: dict[tuple[PathElement, ...], tuple[int, int]] = {}
    if not want:
        return found
    path: list[PathElement] = []
    frames: list[list[Any]] = []  # [kind, index, expecting a key]
    line, line_start, counted = 1, 0, 0  # line numbers counted incrementally: one pass
    position = 0
    match_token = _TOKEN.search
    while True:
        match = match_token(text, position)
        if match is None:
            break
        token = match.group()
        start = match.start()
        if token == '"':
            try:
                value, position = _scanstring(text, match.end(), False)
            except ValueError:
                break
        else:
            value = ""
            position = match.end()
        frame = frames[-1] if frames else None
        if frame is not None and frame[0] == "{" and frame[2]:
            if token == "}":  # an empty object
                frames.pop()
                continue
            if token != '"':
                break  # not JSON after all: what was found so far
            frame[2] = False
            path.append(value)
            continue
        if token == ":":
            continue
        if token == ",":
            if frame is not None:
                path.pop()
                if frame[0] == "[":
                    frame[1] += 1
                    path.append(frame[1])
                else:
                    frame[2] = True
            continue
        if token in ("}", "]"):
            if frames:
                frames.pop()
                path.pop()
            continue
        key = tuple(path)
        if key in want and key not in found:
            newlines = text.count("\n", counted, start)
            if newlines:
                line += newlines
                line_start = text.rfind("\n", counted, start) + 1
            counted = start
            found[key] = (line, start - line_start + 1)
            if len(found) == len(want):
                break
        if token == "{":
            frames.append(["{", None, True])
        elif token == "[":
            frames.append(["[", 0, False])
            path.append(0)
    return found
