"""Findings: the one shape every validation problem takes.

The CLI, CI annotations and the source's status all report problems; a single frozen,
orderable record keeps them sortable (file, line, column) and renderable by `report`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]
PathElement = str | int

_CODE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
_PLAIN_KEY = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$-]*$")


@dataclass(frozen=True, order=True)
class Finding:
    """A problem at a place in a file.

    Field order is the sort order: file, then line, then column (then the rest, so sorting
    is deterministic). `line` and `column` are 1-based; a whole-file finding uses 1, 1.
    """

    file: str
    line: int
    column: int
    code: str
    message: str
    path: str = ""
    severity: Severity = "error"

    def __post_init__(self) -> None:
        # Codes are stable ids that users grep for and SARIF uses as rule ids.
        if not _CODE.match(self.code):
            raise ValueError(f"finding code {self.code!r} is not kebab-case")
        if self.severity not in ("error", "warning"):
            raise ValueError(f"finding severity {self.severity!r} is not 'error' or 'warning'")
        if self.line < 1 or self.column < 1:
            raise ValueError(f"finding position {self.line}:{self.column} is not 1-based")

    @property
    def is_error(self) -> bool:
        return self.severity == "error"


def format_path(path: Iterable[PathElement]) -> str:
    """Render a field path the way users write it: `spec.steps[2].next`.

    Keys that are not plain identifiers are quoted (`metadata.labels["flowpin.dev/x"]`) so the
    path stays unambiguous.
    """
    out: list[str] = []
    for element in path:
        if isinstance(element, bool) or not isinstance(element, int | str):
            out.append(f"[{str(element)!r}]")
        elif isinstance(element, int):
            out.append(f"[{element}]")
        elif _PLAIN_KEY.match(element):
            out.append(f".{element}" if out else element)
        else:
            escaped = element.replace("\\", "\\\\").replace('"', '\\"')
            out.append(f'["{escaped}"]')
    return "".join(out)


def has_errors(findings: Iterable[Finding]) -> bool:
    return any(f.is_error for f in findings)
