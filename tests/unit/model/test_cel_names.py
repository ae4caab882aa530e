"""`free_names` and `fields_read` find what an expression reads, and nothing else."""

from __future__ import annotations

import pytest

from controller.model.cel import FreeName, constant, fields_read, free_names


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("input.x == 1", ["input"]),  # the typo validation exists to catch
        ("inputs.x == 1 && vars.y", ["inputs", "vars"]),
        ("inputs.tags.all(t, t != '') && t", ["inputs", "t"]),  # t is free after the macro
        ("inputs.xs.map(x, x * 2).filter(y, y > z)", ["inputs", "z"]),
        ("inputs.xs.exists(x, inputs.ys.exists_one(y, x == y))", ["inputs"]),
        ("inputs.xs.existsOne(x, x == 1)", ["inputs"]),
        ("[1, 2].all(n, n > 0)", []),
        ("size(inputs.x) > 0 && has(vars.y)", ["inputs", "vars"]),  # functions, macros
        ("inputs.email.endsWith('@x.com')", ["inputs"]),  # method and field names
        ("type(inputs.n) == int || type(inputs.n) == double", ["inputs"]),  # type names
        ('"input.x" + r"vars" + b"steps" + """z\n""" == inputs.s', ["inputs"]),  # literals
        ("true || false || null == inputs.n || 'a' in inputs.l", ["inputs"]),  # keywords
        ("{'k': v} == inputs.m", ["v", "inputs"]),  # map keys are expressions
        ("optional.none() == inputs.o", ["inputs"]),
        ("steps.a.output // a comment naming ghost\n== 1", ["steps"]),
        ("1u + 0x1F + 2.5e3", []),
        ("inputs.x ==", []),  # does not compile: `issue` reports it
    ],
)
def test_free_names(expr: str, expected: list[str]) -> None:
    assert [name.name for name in free_names(expr)] == expected


def test_free_names_give_the_first_position() -> None:
    assert free_names("vars.a + input.b + input.c") == [
        FreeName("vars", 1),
        FreeName("input", 10),
    ]


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("1 + 2", (True, 3)),
        ("'a' + 'b'", (True, "ab")),
        ("1 + 2 == 3", (True, True)),
        ("inputs.x + 1", (False, None)),  # reads a variable: unknown before a run
        ("1 / 0", (False, None)),  # fails: left to the run
    ],
)
def test_constant(expr: str, expected: tuple[bool, object]) -> None:
    assert constant(expr) == expected


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("inputs.email + vars.n", [("inputs", "email", 1), ("vars", "n", 16)]),
        ("has(inputs.a) && inputs.a.b > 0", [("inputs", "a", 5), ("inputs", "a", 18)]),
        (
            "steps['send-mail'].output + steps[\"b\"].x",
            [("steps", "send-mail", 1), ("steps", "b", 29)],
        ),
        ("inputs[key] + inputs['a\\'b']", []),  # computed or escaped: no field named
        ("inputs.size() > 0", []),  # a method, not a field
        ("inputs.xs.map(inputs, inputs.z)", [("inputs", "xs", 1)]),  # bound inside the macro
        ("'inputs.q' + a.inputs.r", [("a", "inputs", 14)]),  # literal; not free after `.`
        ("inputs.x ==", []),  # does not compile
    ],
)
def test_fields_read(expr: str, expected: list[tuple[str, str, int]]) -> None:
    assert [(r.root, r.field, r.offset) for r in fields_read(expr)] == expected


def test_fields_read_mark_the_argument_of_has() -> None:
    assert [(r.field, r.tested) for r in fields_read("has(inputs.a) ? inputs.a : inputs.b")] == [
        ("a", True),
        ("a", False),
        ("b", False),
    ]
