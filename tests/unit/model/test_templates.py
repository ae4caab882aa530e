from __future__ import annotations

from typing import Any

import pytest

from controller.model.templates import Template, TemplateSyntaxError, find_templates, render


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


# ---------------------------------------------------------------------------- render

VALUES: dict[str, Any] = {
    "n": 42,
    "f": 1.5,
    "s": "blue",
    "flag": True,
    "off": False,
    "none": None,
    "m": {"b": 2, "a": 1},
    "l": [1, "b"],
    "empty": "",
}


def lookup(expression: str) -> Any:
    return VALUES[expression]


@pytest.mark.parametrize(
    ("value", "rendered"),
    [
        ("plain", "plain"),
        ("", ""),
        ("$${ literal }", "${ literal }"),
        # exactly one template: the expression's value, with its type
        ("${ n }", 42),
        ("${n}", 42),
        ("${ f }", 1.5),
        ("${ flag }", True),
        ("${ none }", None),
        ("${ m }", {"b": 2, "a": 1}),
        ("${ l }", [1, "b"]),
        # inside text: formatted into it
        (" ${ n }", " 42"),
        ("n=${ n }", "n=42"),
        ("${ n }${ n }", "4242"),
        ("${ s }/${ n }?x=${ f }", "blue/42?x=1.5"),
        ("${ flag },${ off }", "true,false"),
        ("[${ none }]", "[]"),
        ("[${ empty }]", "[]"),
        ("m=${ m }", 'm={"a":1,"b":2}'),
        ("l=${ l }", 'l=[1,"b"]'),
        ("$${ lit } ${ n } $${ x }", "${ lit } 42 ${ x }"),
        # lists and maps item by item; keys stay as they are; other values pass through
        (["${ n }", "a-${ s }", 7, None], [42, "a-blue", 7, None]),
        (
            {"${ s }": "${ s }", "nested": {"list": ["${ flag }"]}, "k": 1.5, "b": False},
            {"${ s }": "blue", "nested": {"list": [True]}, "k": 1.5, "b": False},
        ),
        (42, 42),
        (None, None),
        (True, True),
    ],
)
def test_render(value: Any, rendered: Any) -> None:
    assert render(value, lookup) == rendered


def test_render_evaluates_each_template_once_in_order() -> None:
    seen: list[str] = []

    def evaluate(expression: str) -> Any:
        seen.append(expression)
        return VALUES[expression]

    render({"a": "${ n }-${ s }", "b": ["${ flag }"]}, evaluate)
    assert seen == ["n", "s", "flag"]


def test_render_does_not_evaluate_plain_values() -> None:
    def evaluate(expression: str) -> Any:
        raise AssertionError(expression)

    assert render({"a": ["x", "$${ y }", 1]}, evaluate) == {"a": ["x", "${ y }", 1]}


@pytest.mark.parametrize("value", ["${ n", {"a": ["ok", "${ }"]}, ["x ${ 'a' "]])
def test_render_syntax_errors_propagate(value: Any) -> None:
    with pytest.raises(TemplateSyntaxError):
        render(value, lookup)


def test_render_expression_errors_propagate() -> None:
    def evaluate(expression: str) -> Any:
        raise KeyError(expression)

    with pytest.raises(KeyError):
        render({"a": "x-${ missing }"}, evaluate)
