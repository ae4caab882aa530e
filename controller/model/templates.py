"""`${ <CEL> }` templates inside strings (URLs, headers, bodies, messages)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Template:
    start: int  # offset of `${` in the string
    end: int  # offset just past the closing `}`
    expression: str


class TemplateSyntaxError(ValueError):
    def __init__(self, offset: int, message: str) -> None:
        super().__init__(message)
        self.offset = offset


def find_templates(text: str) -> list[Template]:
    """Every `${ ... }` in `text`. Braces inside the expression (CEL map literals) and inside
    quoted strings are balanced; `$${` is a literal `${`."""
    found: list[Template] = []
    i = 0
    while True:
        start = text.find("${", i)
        if start < 0:
            return found
        if start > 0 and text[start - 1] == "$":
            i = start + 2
            continue
        depth = 0
        quote: str | None = None
        j = start + 2
        while j < len(text):
            char = text[j]
            if quote:
                if char == "\\":
                    j += 1
                elif char == quote:
                    quote = None
            elif char in "\"'":
                quote = char
            elif char == "{":
                depth += 1
            elif char == "}":
                if depth == 0:
                    break
                depth -= 1
            j += 1
        if j >= len(text):
            raise TemplateSyntaxError(start, "`${` has no closing `}`")
        expression = text[start + 2 : j].strip()
        if not expression:
            raise TemplateSyntaxError(start, "empty `${ }`")
        found.append(Template(start, j + 1, expression))
        i = j + 1


def render(value: Any, evaluate: Callable[[str], Any]) -> Any:
    """`value` with every `${ }` replaced by what `evaluate` gives for its expression.

    A string that is exactly one template takes the expression's value with its type (a
    body field `"${ inputs.count }"` stays a number); a template inside longer text is
    formatted into it (maps and lists as JSON). Lists and maps are rendered item by item.
    """
    if isinstance(value, str):
        found = find_templates(value)
        if not found:
            return value.replace("$${", "${")
        if len(found) == 1 and found[0].start == 0 and found[0].end == len(value):
            return evaluate(found[0].expression)
        parts: list[str] = []
        at = 0
        for template in found:
            parts.append(value[at : template.start].replace("$${", "${"))
            parts.append(_as_text(evaluate(template.expression)))
            at = template.end
        parts.append(value[at:].replace("$${", "${"))
        return "".join(parts)
    if isinstance(value, list):
        return [render(item, evaluate) for item in value]
    if isinstance(value, dict):
        return {key: render(item, evaluate) for key, item in value.items()}
    return value


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
