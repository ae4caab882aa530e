from __future__ import annotations

import json
import re

import pytest

from controller.model.findings import Finding
from controller.model.report import FORMATS, github, render, sarif, text

ERR = Finding(
    "workflows/b.yaml", 12, 7, "unknown-step", "next refers to 'nope'", "spec.steps[2].next"
)
WARN = Finding("workflows/a.yaml", 3, 1, "version-mutated", "content changed", severity="warning")
WEIRD = Finding("dir/my file,1.yaml", 1, 2, "schema", "50% bad: a, b\r\nsecond line")


def test_text_lines_sorted_and_shaped() -> None:
    assert text([ERR, WARN]) == (
        "workflows/a.yaml:3:1: warning[version-mutated]: content changed\n"
        "workflows/b.yaml:12:7: error[unknown-step]: "
        "next refers to 'nope' (at spec.steps[2].next)\n"
    )


def test_text_empty() -> None:
    assert text([]) == ""


def test_text_multiline_message_is_indented() -> None:
    out = text([WEIRD])
    assert out == "dir/my file,1.yaml:1:2: error[schema]: 50% bad: a, b\n    second line\n"


def test_text_color_uses_ansi_and_plain_does_not() -> None:
    colored = render([ERR, WARN], "text", color=True)
    assert "\x1b[31m" in colored and "\x1b[33m" in colored and "\x1b[0m" in colored
    assert "\x1b[" not in render([ERR, WARN], "text")
    # Stripping the escapes gives the plain text back.
    assert re.sub(r"\x1b\[[0-9;]*m", "", colored) == render([ERR, WARN], "text")


def test_json_structure() -> None:
    doc = json.loads(render([ERR, WARN, ERR], "json"))
    assert list(doc) == ["findings", "summary"]
    assert doc["summary"] == {"errors": 2, "warnings": 1, "total": 3}
    first = doc["findings"][0]
    assert list(first) == ["file", "line", "column", "severity", "code", "message", "path"]
    assert first["file"] == "workflows/a.yaml"
    assert doc["findings"][1] == {
        "file": "workflows/b.yaml",
        "line": 12,
        "column": 7,
        "severity": "error",
        "code": "unknown-step",
        "message": "next refers to 'nope'",
        "path": "spec.steps[2].next",
    }


def test_json_empty() -> None:
    assert json.loads(render([], "json")) == {
        "findings": [],
        "summary": {"errors": 0, "warnings": 0, "total": 0},
    }


def test_github_commands() -> None:
    assert github([ERR, WARN]).splitlines() == [
        "::warning file=workflows/a.yaml,line=3,col=1,title=flowpin version-mutated::"
        "content changed",
        "::error file=workflows/b.yaml,line=12,col=7,title=flowpin unknown-step::"
        "next refers to 'nope' (at spec.steps[2].next)",
    ]


def test_github_escaping() -> None:
    (line,) = github([WEIRD]).splitlines()
    # Properties escape % \r \n : and ,; the message escapes only % \r \n.
    assert line == (
        "::error file=dir/my file%2C1.yaml,line=1,col=2,title=flowpin schema::"
        "50%25 bad: a, b%0D%0Asecond line"
    )


def test_sarif_structure() -> None:
    log = json.loads(sarif([ERR, WARN, WEIRD]))
    assert log["version"] == "2.1.0"
    assert "sarif-2.1.0" in log["$schema"]
    (run,) = log["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "flowpin"
    assert [r["id"] for r in driver["rules"]] == ["schema", "unknown-step", "version-mutated"]
    results = run["results"]
    assert [r["ruleId"] for r in results] == ["schema", "version-mutated", "unknown-step"]
    for result in results:
        assert driver["rules"][result["ruleIndex"]]["id"] == result["ruleId"]
    by_rule = {r["ruleId"]: r for r in results}
    err = by_rule["unknown-step"]
    assert err["level"] == "error"
    assert err["message"]["text"] == "next refers to 'nope' (at spec.steps[2].next)"
    location = err["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"] == "workflows/b.yaml"
    assert location["region"] == {"startLine": 12, "startColumn": 7}
    assert err["properties"] == {"fieldPath": "spec.steps[2].next"}
    assert by_rule["version-mutated"]["level"] == "warning"
    assert "properties" not in by_rule["version-mutated"]
    weird_uri = by_rule["schema"]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert weird_uri == "dir/my%20file%2C1.yaml"


def test_sarif_empty_is_valid_shape() -> None:
    log = json.loads(render([], "sarif"))
    assert log["runs"][0]["results"] == []
    assert log["runs"][0]["tool"]["driver"]["rules"] == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_render_all_formats_are_deterministic(fmt: str) -> None:
    assert render([ERR, WARN, WEIRD], fmt) == render([WEIRD, WARN, ERR], fmt)


def test_render_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown report format 'xml'"):
        render([ERR], "xml")
