from __future__ import annotations

import pytest

from controller.model.templates import Template, TemplateSyntaxError, find_templates


@pytest.mark.parametrize(
    ("text", "expressions"),
    [
        ("no templates", []),
        ("https://x/${ inputs.id }", ["inputs.id"]),
        ("${a}-${ b }", ["a", "b"]),
        ("${ {'k': 1}.k }", ["{'k': 1}.k"]),
        ("${ 'a}b' + \"}\" }", ["'a}b' + \"}\""]),
        ("$${ literal }", []),
    ],
)
def test_find_templates(text: str, expressions: list[str]) -> None:
    assert [t.expression for t in find_templates(text)] == expressions


def test_offsets_cover_the_template() -> None:
    (template,) = find_templates("ab${ x }cd")
    assert template == Template(2, 8, "x")


@pytest.mark.parametrize(("text", "offset"), [("a ${ x", 2), ("${ }", 0)])
def test_syntax_errors(text: str, offset: int) -> None:
    with pytest.raises(TemplateSyntaxError) as raised:
        find_templates(text)
    assert raised.value.offset == offset
