from __future__ import annotations

from typing import Any

import pytest

from controller.model.cel import CelError, check, evaluate, issue

ACTIVATION: dict[str, Any] = {
    "inputs": {"email": "ada@x.com", "score": 2.5, "tags": ["a", "b"]},
    "vars": {"items": [1, 2, 3, 4], "empty": [], "flag": True, "nothing": None},
    "steps": {"welcome": {"output": {"status": 200, "body": {"ok": True, "id": "m-1"}}}},
}


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("steps.welcome.output.status == 200", True),
        ("steps.welcome.output.status == 500", False),
        ('steps.welcome.output.status == "200"', False),  # no coercion, no error
        ('inputs.email.endsWith("@x.com")', True),
        ('inputs.email.startsWith("bob")', False),
        ('size(vars.items) > 3 ? "many" : "few"', "many"),
        ('size(vars.empty) > 3 ? "many" : "few"', "few"),
        ("vars.items.exists(i, i > 3)", True),
        ("vars.items.all(i, i > 3)", False),
        ("vars.items.exists_one(i, i == 2)", True),
        ("vars.items.map(i, i * 10)", [10, 20, 30, 40]),
        ("vars.items.filter(i, i % 2 == 0)", [2, 4]),
        ("has(steps.welcome.output.body)", True),
        ("has(vars.missing)", False),
        ("has(steps.welcome.output.body.ok) && steps.welcome.output.body.ok", True),
        ('"b" in inputs.tags', True),
        ('inputs.email.matches("^[a-z]+@")', True),
        ("inputs.score * 2.0", 5.0),
        ("vars.nothing == null", True),
        ("vars.nothing", None),
        ("vars.flag", True),
        ("1 + 2", 3),
        ('{"a": [1, {"b": null}], "n": 1.5}', {"a": [1, {"b": None}], "n": 1.5}),
        ("steps.welcome.output.body", {"ok": True, "id": "m-1"}),
        ('string(steps.welcome.output.status) + "!"', "200!"),
        # proto3 JSON forms for CEL types JSON lacks:
        ('timestamp("2024-01-02T03:04:05Z")', "2024-01-02T03:04:05Z"),
        ('duration("1h")', "3600s"),
        ('duration("1.5s")', "1.5s"),
        ('b"hi"', "aGk="),
        ("type(1)", "int"),
    ],
)
def test_evaluate(expr: str, expected: Any) -> None:
    result = evaluate(expr, ACTIVATION)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("expr", "fragment"),
    [
        ("vars.missing.x", "no such key: 'missing'"),
        ("inputs.nope", "no such key: 'nope'"),
        ("1 / 0", "division by zero"),
        ("[1][5]", "index out of bounds"),
        ("undefined_var", "Undefined variable or function: 'undefined_var'"),
        ('"a" + 1', "string + int"),
        ('int("x")', "Function 'int' error"),
        ('"a".matches("(")', "not a valid regex"),
        ("9223372036854775807 + 1", "overflow"),
        ("steps.welcome.output.status ==", "invalid expression: column 31: syntax error"),
    ],
)
def test_evaluate_errors_become_cel_error(expr: str, fragment: str) -> None:
    with pytest.raises(CelError) as info:
        evaluate(expr, ACTIVATION)
    assert fragment in str(info.value)
    assert info.value.message == str(info.value)


def test_evaluate_unsupported_variable_value() -> None:
    with pytest.raises(CelError, match="unsupported value in the variables"):
        evaluate("x", {"x": object()})


@pytest.mark.parametrize(
    "expr",
    [
        "steps.welcome.output.status == 200",
        'size(vars.items) > 3 ? "many" : "few"',
        "vars.items.all(i, i > 0) || has(vars.x)",
        "a.b.c",  # unknown names are a runtime matter, not a syntax error
        "f(x)",
    ],
)
def test_check_valid(expr: str) -> None:
    assert check(expr) is None
    assert issue(expr) is None


@pytest.mark.parametrize(
    ("expr", "line", "column", "message_start"),
    [
        ("steps.welcome.output.status ==", 1, 31, "syntax error: mismatched input '<EOF>'"),
        ("a +* b", 1, 4, "syntax error: extraneous input '*'"),
        ("(1 + 2", 1, 7, "syntax error: missing ')'"),
        ("a &&\n  (b +", 2, 7, "syntax error: mismatched input '<EOF>'"),
        ("x ? y", 1, 6, "syntax error: mismatched input '<EOF>'"),
        ("", 1, 1, "syntax error"),
    ],
)
def test_check_reports_position(expr: str, line: int, column: int, message_start: str) -> None:
    found = issue(expr)
    assert found is not None
    assert (found.line, found.column) == (line, column)
    assert found.message.startswith(message_start)
    assert "\n" not in found.message  # no caret excerpt: the position says it
    text = check(expr)
    assert text is not None
    where = f"column {column}: " if line == 1 else f"line {line}, column {column}: "
    assert text.startswith(where)


def test_check_rejects_huge_and_non_string() -> None:
    assert check("1 + " * 5000 + "1") is not None
    assert check(3) is not None  # type: ignore[arg-type]


def test_compiled_programs_are_reused() -> None:
    from controller.model import cel

    cel._compile.cache_clear()
    for _ in range(5):
        evaluate("vars.flag", ACTIVATION)
    info = cel._compile.cache_info()
    assert info.misses == 1 and info.hits >= 4
    assert info.maxsize is not None  # bounded
