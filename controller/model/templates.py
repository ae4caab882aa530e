"""`${ <CEL> }` templates inside strings (URLs, headers, bodies, messages)."""

from __future__ import annotations

from dataclasses import dataclass


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
