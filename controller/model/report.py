"""Render findings for people (text), tools (json), GitHub Actions and code scanning (SARIF).

All formats sort findings the same way so output is stable across runs, which keeps CI logs
diffable and SARIF uploads deduplicated.
"""

from __future__ import annotations

import json as _json
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any, Literal
from urllib.parse import quote

from controller.model.findings import Finding

Format = Literal["text", "json", "github", "sarif"]
FORMATS: tuple[Format, ...] = ("text", "json", "github", "sarif")

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
TOOL_NAME = "flowpin"

_RESET = "\x1b[0m"
_BOLD = "\x1b[1m"
_DIM = "\x1b[2m"
_COLORS = {"error": "\x1b[31m", "warning": "\x1b[33m"}


def _where(f: Finding) -> str:
    return f" (at {f.path})" if f.path else ""


def text(findings: Iterable[Finding], color: bool = False) -> str:
    """One line per finding: `file:line:col: error[code]: message (at spec.steps[2].next)`."""
    lines = []
    for f in sorted(findings):
        location = f"{f.file}:{f.line}:{f.column}:"
        label = f"{f.severity}[{f.code}]:"
        where = _where(f)
        if color:
            location = f"{_BOLD}{location}{_RESET}"
            label = f"{_BOLD}{_COLORS[f.severity]}{label}{_RESET}"
            where = f"{_DIM}{where}{_RESET}" if where else ""
        message = f.message.replace("\r\n", "\n").replace("\n", "\n    ")  # keep one entry visible
        lines.append(f"{location} {label} {message}{where}")
    return "".join(line + "\n" for line in lines)


def _summary(findings: list[Finding]) -> dict[str, int]:
    errors = sum(1 for f in findings if f.severity == "error")
    return {"errors": errors, "warnings": len(findings) - errors, "total": len(findings)}


def finding_object(f: Finding) -> dict[str, object]:
    """One finding as JSON output shows it, keys in a fixed order."""
    return {
        "file": f.file,
        "line": f.line,
        "column": f.column,
        "severity": f.severity,
        "code": f.code,
        "message": f.message,
        "path": f.path,
    }


def json(findings: Iterable[Finding]) -> str:
    """`{"findings": [...], "summary": {"errors", "warnings", "total"}}`, keys in a fixed order."""
    ordered = sorted(findings)
    document = {
        "findings": [finding_object(f) for f in ordered],
        "summary": _summary(ordered),
    }
    return _json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _escape_data(value: str) -> str:
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(value: str) -> str:
    return _escape_data(value).replace(":", "%3A").replace(",", "%2C")


def github(findings: Iterable[Finding]) -> str:
    """GitHub Actions workflow commands, which turn into annotations on the pull request."""
    lines = []
    for f in sorted(findings):
        properties = ",".join(
            f"{name}={_escape_property(value)}"
            for name, value in (
                ("file", f.file),
                ("line", str(f.line)),
                ("col", str(f.column)),
                ("title", f"{TOOL_NAME} {f.code}"),
            )
        )
        lines.append(f"::{f.severity} {properties}::{_escape_data(f.message + _where(f))}")
    return "".join(line + "\n" for line in lines)


def _uri(path: str) -> str:
    return quote(path.replace("\\", "/"), safe="/")


def sarif(findings: Iterable[Finding]) -> str:
    """A SARIF 2.1.0 log with one run; rules are the finding codes that occur."""
    ordered = sorted(findings)
    codes = sorted({f.code for f in ordered})
    rule_index = {code: i for i, code in enumerate(codes)}
    results: list[dict[str, Any]] = []
    for f in ordered:
        result: dict[str, Any] = {
            "ruleId": f.code,
            "ruleIndex": rule_index[f.code],
            "level": f.severity,
            "message": {"text": f.message + _where(f)},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": {"uri": _uri(f.file)},
                        "region": {"startLine": f.line, "startColumn": f.column},
                    }
                }
            ],
        }
        if f.path:
            result["properties"] = {"fieldPath": f.path}
        results.append(result)
    log = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": TOOL_NAME,
                        "rules": [
                            {
                                "id": code,
                                "name": code,
                                "shortDescription": {"text": code.replace("-", " ")},
                            }
                            for code in codes
                        ],
                    }
                },
                "results": results,
            }
        ],
    }
    return _json.dumps(log, indent=2, ensure_ascii=False) + "\n"


_RENDERERS: dict[str, Callable[[list[Finding]], str]] = {
    "json": json,
    "github": github,
    "sarif": sarif,
}


def printable(text: str) -> str:
    """`text` as UTF-8 can carry it: a file name's bytes that are not UTF-8 (which Python
    holds as lone surrogates) as `\\xff`, any other lone surrogate as `\\udXXX`."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def render(findings: Iterable[Finding], fmt: str, color: bool = False) -> str:
    """Render in one of FORMATS; `color` only affects "text". Every output is UTF-8 that
    a terminal, a JSON parser or GitHub can read, whatever bytes a file name holds."""
    items = [
        replace(f, file=printable(f.file), message=printable(f.message), path=printable(f.path))
        for f in findings
    ]
    if fmt == "text":
        return text(items, color=color)
    renderer = _RENDERERS.get(fmt)
    if renderer is None:
        raise ValueError(f"unknown report format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return renderer(items)
