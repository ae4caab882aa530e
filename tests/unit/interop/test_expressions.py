"""n8n expressions → CEL: what translates, and what is refused with a reason."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from controller.interop.expressions import (
    Segment,
    Untranslatable,
    cel_literal,
    cel_path,
    template_parts,
    translate,
    translate_template,
    translate_value,
)


def resolve(node: str | None, path: Sequence[Segment]) -> str:
    """$json reads the HTTP step `fetch`; $('Hook') reads the inputs."""
    if node is None:
        return cel_path('steps["fetch"].output.body', path)
    if node == "Hook":
        return cel_path("inputs", path)
    raise Untranslatable(f"no node {node}")


@pytest.mark.parametrize(
    ("js", "cel"),
    [
        ("$json.status", 'steps["fetch"].output.body.status'),
        ('$json["first name"]', 'steps["fetch"].output.body["first name"]'),
        ("$json.items[0].id", 'steps["fetch"].output.body.items[0].id'),
        ("$json.in", 'steps["fetch"].output.body["in"]'),
        ("$('Hook').item.json.email", "inputs.email"),
        ("$('Hook').first().json.email", "inputs.email"),
        ('$node["Hook"].json.email', "inputs.email"),
        ("$input.item.json.a", 'steps["fetch"].output.body.a'),
        ("$json.count === 3", 'steps["fetch"].output.body.count == 3'),
        ("$json.name !== 'x'", 'steps["fetch"].output.body.name != "x"'),
        (
            "$json.a > 1 && $json.b <= 2",
            'steps["fetch"].output.body.a > 1 && steps["fetch"].output.body.b <= 2',
        ),
        ("!($json.a == 1)", '!(steps["fetch"].output.body.a == 1)'),
        ("($json.a + 1) * 2", '(steps["fetch"].output.body.a + 1) * 2'),
        ("$json.tags.length > 0", 'size(steps["fetch"].output.body.tags) > 0'),
        ("$json.a == 1 ? 'one' : 'other'", 'steps["fetch"].output.body.a == 1 ? "one" : "other"'),
        ("'it\\'s'", '"it\'s"'),
        ("true", "true"),
        ("1.5", "1.5"),
    ],
)
def test_translates(js: str, cel: str) -> None:
    assert translate(js, resolve) == cel


@pytest.mark.parametrize(
    ("js", "reason"),
    [
        ("$json.name.toUpperCase()", "method call"),
        ("$now", "$now has no flowpin counterpart"),
        ("$json.a || ''", "between values that are not comparisons"),
        ("!$json.flag", "not a comparison"),
        ("$('Other').item.json.x", "no node Other"),
        ("$json[$json.key]", "computed index"),
        ("Math.max(1, 2)", "'Math' has no CEL counterpart"),
        ("$('Hook').all()", "flowpin steps have one output"),
        ("`template ${x}`", "cannot read"),
        ("", "empty expression"),
    ],
)
def test_refuses_with_reason(js: str, reason: str) -> None:
    with pytest.raises(
        Untranslatable, match=reason.replace("$", r"\$").replace("(", r"\(").replace(")", r"\)")
    ):
        translate(js, resolve)


@pytest.mark.parametrize(
    ("value", "cel"),
    [
        ("cold", '"cold"'),
        (3, "3"),
        (True, "true"),
        ([1, "a"], '[1, "a"]'),
        ({"k": None}, '{"k": null}'),
        ("={{ $json.a }}", 'steps["fetch"].output.body.a'),
        ("=Hi {{ $('Hook').item.json.name }}!", '"Hi " + string(inputs.name) + "!"'),
    ],
)
def test_values(value: object, cel: str) -> None:
    assert translate_value(value, resolve) == cel


@pytest.mark.parametrize(
    ("value", "template"),
    [
        ("https://x.example/a", "https://x.example/a"),
        (
            "=https://x.example/{{ $json.id }}/b",
            'https://x.example/${ steps["fetch"].output.body.id }/b',
        ),
        ("literal ${not a template}", "literal $${not a template}"),
    ],
)
def test_templates(value: str, template: str) -> None:
    assert translate_template(value, resolve) == template


def test_template_parts_keep_braces_inside_strings() -> None:
    assert template_parts("a {{ '}}' }} b") == [(False, "a "), (True, "'}}'"), (False, " b")]
    with pytest.raises(Untranslatable):
        template_parts("a {{ b")


def test_literals() -> None:
    assert cel_literal('line\n"q"') == '"line\\n\\"q\\""'
    with pytest.raises(Untranslatable):
        cel_literal(float("nan"))
