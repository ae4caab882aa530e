from __future__ import annotations

import pytest

from controller.model.findings import Finding, format_path, has_errors


def test_sorted_by_file_line_column() -> None:
    findings = [
        Finding("b.yaml", 1, 1, "schema", "x"),
        Finding("a.yaml", 10, 1, "schema", "x"),
        Finding("a.yaml", 2, 9, "schema", "x"),
        Finding("a.yaml", 2, 3, "yaml-syntax", "x"),
    ]
    assert [(f.file, f.line, f.column) for f in sorted(findings)] == [
        ("a.yaml", 2, 3),
        ("a.yaml", 2, 9),
        ("a.yaml", 10, 1),
        ("b.yaml", 1, 1),
    ]


def test_defaults_and_frozen() -> None:
    f = Finding("a.yaml", 1, 1, "schema", "bad")
    assert f.path == "" and f.severity == "error" and f.is_error
    with pytest.raises(AttributeError):
        f.line = 2  # type: ignore[misc]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"code": "Schema"},
        {"code": "unknown_step"},
        {"code": "-x"},
        {"code": ""},
        {"severity": "info"},
        {"line": 0},
        {"column": 0},
    ],
)
def test_invalid_fields_rejected(kwargs: dict[str, object]) -> None:
    base: dict[str, object] = {
        "file": "a.yaml",
        "line": 1,
        "column": 1,
        "code": "schema",
        "message": "m",
    }
    base.update(kwargs)
    with pytest.raises(ValueError):
        Finding(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ((), ""),
        (("spec",), "spec"),
        (("spec", "steps", 2, "next"), "spec.steps[2].next"),
        ((0, "id"), "[0].id"),
        (("metadata", "labels", "flowpin.dev/x"), 'metadata.labels["flowpin.dev/x"]'),
        (("a", 'say "hi"'), 'a["say \\"hi\\""]'),
        (("spec", "wait-2d"), "spec.wait-2d"),
        (("spec", ""), 'spec[""]'),
    ],
)
def test_format_path(path: tuple[str | int, ...], text: str) -> None:
    assert format_path(path) == text


def test_has_errors() -> None:
    warning = Finding("a", 1, 1, "version-mutated", "m", severity="warning")
    assert not has_errors([warning])
    assert has_errors([warning, Finding("a", 1, 1, "schema", "m")])
    assert not has_errors([])
