"""Every validation rule with a failing and a passing example."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from typing import Any

import pytest
import yaml

from controller.model.findings import Finding
from controller.model.validate import NoHistory, validate_manifests

HEADER = "apiVersion: flowpin.dev/v1alpha1\nkind: Workflow\nmetadata: {name: wf}\n"


def workflow(spec: str) -> str:
    return HEADER + "spec:\n" + textwrap.indent(textwrap.dedent(spec), "  ")


def environment(name: str, spec: str) -> str:
    return (
        f"apiVersion: flowpin.dev/v1alpha1\nkind: Environment\nmetadata: {{name: {name}}}\n"
        "spec:\n" + textwrap.indent(textwrap.dedent(spec), "  ")
    )


VALID_STEPS = """\
version: 1.0.0
steps:
  - {id: a, type: http, http: {url: "https://x.example/"}, next: b}
  - {id: b, type: log, log: {message: done}}
"""


class History:
    def __init__(self, versions: Mapping[str, Mapping[str, Any]]) -> None:
        self._versions = versions

    def versions(self, workflow: str) -> Mapping[str, Mapping[str, Any]]:
        return self._versions if workflow == "wf" else {}

    def has_version(self, workflow: str, version: str) -> bool:
        return version in self.versions(workflow)


def findings_for(files: dict[str, str], history: Any = None) -> list[Finding]:
    return validate_manifests(files, history or NoHistory())[1]


def codes(findings: list[Finding]) -> list[tuple[str, int, str]]:
    return [(f.code, f.line, f.path) for f in findings if f.is_error]


# (name, spec, expected error codes) — each failing case has a passing twin.
WORKFLOW_CASES = [
    ("valid", VALID_STEPS, []),
    (
        "duplicate step id",
        """\
        version: 1.0.0
        steps:
          - {id: a, type: log, next: a2}
          - {id: a2, type: log}
          - {id: a, type: log}
        """,
        ["duplicate-step-id"],
    ),
    (
        "duplicate trigger id",
        """\
        version: 1.0.0
        triggers: [{id: t, type: manual}, {id: t, type: manual}]
        steps: [{id: a, type: log}]
        """,
        ["duplicate-trigger-id"],
    ),
    (
        "next to unknown step",
        """\
        version: 1.0.0
        steps: [{id: a, type: log, next: nope}]
        """,
        ["unknown-step"],
    ),
    (
        "next to end",
        """\
        version: 1.0.0
        steps: [{id: a, type: log, next: end}]
        """,
        [],
    ),
    (
        "goto unknown step",
        """\
        version: 1.0.0
        steps: [{id: a, type: log, onError: "goto:nope"}]
        """,
        ["unknown-step"],
    ),
    (
        "unreachable step",
        """\
        version: 1.0.0
        steps: [{id: a, type: log}, {id: b, type: log}]
        """,
        ["unreachable-step"],
    ),
    (
        "reachable through onError",
        """\
        version: 1.0.0
        steps: [{id: a, type: log, onError: "goto:b"}, {id: b, type: log}]
        """,
        [],
    ),
    (
        "loop without wait",
        """\
        version: 1.0.0
        steps:
          - {id: a, type: log, next: b}
          - {id: b, type: condition, condition: {when: "true", then: a, else: end}}
        """,
        ["cycle-without-wait"],
    ),
    (
        "loop through a wait",
        """\
        version: 1.0.0
        steps:
          - {id: a, type: wait, wait: {duration: 1h}, next: b}
          - {id: b, type: condition, condition: {when: "true", then: a, else: end}}
        """,
        [],
    ),
    (
        "self loop",
        """\
        version: 1.0.0
        steps: [{id: a, type: log, next: a}]
        """,
        ["cycle-without-wait"],
    ),
    (
        "bad duration",
        """\
        version: 1.0.0
        steps: [{id: a, type: wait, wait: {duration: 0s}}]
        """,
        ["invalid-duration"],
    ),
    (
        "bad cron",
        """\
        version: 1.0.0
        triggers: [{id: t, type: schedule, schedule: "61 * * * *"}]
        steps: [{id: a, type: log}]
        """,
        ["invalid-schedule"],
    ),
    (
        "good cron and timezone",
        """\
        version: 1.0.0
        triggers: [{id: t, type: schedule, schedule: "0 9 * * 1-5", timezone: Europe/Berlin}]
        steps: [{id: a, type: log}]
        """,
        [],
    ),
    (
        "bad timezone",
        """\
        version: 1.0.0
        triggers: [{id: t, type: schedule, schedule: "@daily", timezone: Mars/Olympus}]
        steps: [{id: a, type: log}]
        """,
        ["invalid-timezone"],
    ),
    (
        "CEL syntax error",
        """\
        version: 1.0.0
        steps: [{id: a, type: condition, condition: {when: "inputs.x ==", then: end}}]
        """,
        ["cel-syntax"],
    ),
    (
        "CEL in a template",
        """\
        version: 1.0.0
        steps: [{id: a, type: http, http: {url: "https://x/${ inputs.id + }"}}]
        """,
        ["cel-syntax"],
    ),
    (
        "unclosed template",
        """\
        version: 1.0.0
        steps: [{id: a, type: log, log: {message: "hello ${ inputs.name"}}]
        """,
        ["template-syntax"],
    ),
    (
        "reference to unknown step",
        """\
        version: 1.0.0
        steps: [{id: a, type: set, set: {x: "steps.b.output.status"}}]
        """,
        ["unknown-step"],
    ),
    (
        "dashed step reference",
        """\
        version: 1.0.0
        steps:
          - {id: send-mail, type: log, next: a}
          - {id: a, type: set, set: {x: "steps.send-mail.output"}}
        """,
        ["cel-step-reference"],
    ),
    (
        "indexed dashed step reference",
        """\
        version: 1.0.0
        steps:
          - {id: send-mail, type: log, next: a}
          - {id: a, type: set, set: {x: 'steps["send-mail"].output'}}
        """,
        [],
    ),
    (
        "invalid inputs schema",
        """\
        version: 1.0.0
        inputs: {type: strng}
        steps: [{id: a, type: log}]
        """,
        ["invalid-inputs-schema"],
    ),
    (
        "until without time zone",
        """\
        version: 1.0.0
        steps: [{id: a, type: wait, wait: {until: "2026-01-01T09:00:00"}}]
        """,
        ["invalid-time"],
    ),
    (
        "migration to unknown step",
        """\
        version: 2.0.0
        steps: [{id: a, type: log}]
        migrations: [{from: "<2.0.0", map: {old: b}}]
        """,
        ["unknown-step"],
    ),
    (
        "bad migration range",
        """\
        version: 2.0.0
        steps: [{id: a, type: log}]
        migrations: [{from: ">=banana", map: {}}]
        """,
        ["invalid-range"],
    ),
    (
        "config of another step type",
        """\
        version: 1.0.0
        steps: [{id: a, type: log, http: {url: "https://x/"}}]
        """,
        ["ignored-field"],
    ),
    (
        "schema: missing http block",
        """\
        version: 1.0.0
        steps: [{id: a, type: http}]
        """,
        ["schema"],
    ),
    (
        "schema: webhook needs a secret",
        """\
        version: 1.0.0
        triggers: [{id: t, type: webhook}]
        steps: [{id: a, type: log}]
        """,
        ["schema"],
    ),
    (
        "schema: wait needs exactly one",
        """\
        version: 1.0.0
        steps: [{id: a, type: wait, wait: {duration: 1h, until: "2026-01-01T00:00:00Z"}}]
        """,
        ["schema"],
    ),
]


@pytest.mark.parametrize(
    ("spec", "expected"), [c[1:] for c in WORKFLOW_CASES], ids=[c[0] for c in WORKFLOW_CASES]
)
def test_workflow_rules(spec: str, expected: list[str]) -> None:
    found = findings_for({"workflows/wf.yaml": workflow(spec)})
    assert sorted(code for code, _, _ in codes(found)) == sorted(expected), found


def test_findings_name_line_and_field() -> None:
    found = findings_for(
        {
            "workflows/wf.yaml": workflow(
                """\
                version: 1.0.0
                steps:
                  - id: a
                    type: log
                    next: folow-up
                  - {id: follow-up, type: log}
                """
            )
        }
    )
    unknown = next(f for f in found if f.code == "unknown-step")
    assert (unknown.file, unknown.line, unknown.path) == (
        "workflows/wf.yaml",
        9,
        "spec.steps[0].next",
    )
    assert "did you mean 'follow-up'" in unknown.message


def test_schema_messages_are_for_people() -> None:
    found = findings_for(
        {
            "workflows/wf.yaml": workflow(
                """\
                version: 1.0.0
                steps:
                  - {id: a, type: http, http: {method: POSTT, url: "https://x/"}, nxt: b}
                """
            )
        }
    )
    messages = {f.path: f.message for f in found}
    assert messages["spec.steps[0].nxt"] == "unknown field 'nxt' (did you mean 'next'?)"
    assert messages["spec.steps[0].http.method"].startswith("must be one of GET, HEAD, POST")
    assert "did you mean 'POST'" in messages["spec.steps[0].http.method"]


def test_missing_required_field_points_at_its_parent() -> None:
    found = findings_for({"workflows/wf.yaml": HEADER + "spec:\n  steps: [{id: a, type: log}]\n"})
    (finding,) = found
    assert (finding.code, finding.line, finding.path) == ("schema", 4, "spec.version")  # `spec:`
    assert finding.message == "missing required field 'version'"


ENVIRONMENT_CASES = [
    ("valid", "pins: {wf: 1.0.0}", []),
    ("unknown workflow", "pins: {nope: 1.0.0}", ["unknown-workflow"]),
    ("latest", "pins: {wf: latest}", []),
    ("unknown version", "pins: {wf: 1.2.0}", ["unknown-version"]),
    ("canary without steps", "rollout: {strategy: canary}", ["canary-without-steps"]),
    (
        "canary weights must increase",
        "rollout: {strategy: canary, steps: [{weight: 50}, {weight: 10}]}",
        ["canary-weights"],
    ),
    (
        "bad window cron",
        "promotion: {windows: [{kind: allow, schedule: nope, duration: 1h}]}",
        ["invalid-schedule"],
    ),
    ("bad soak", "promotion: {soak: 0s}", ["invalid-duration"]),
    ("unknown upstream", "promotion: {from: stagin}", ["unknown-environment"]),
]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [c[1:] for c in ENVIRONMENT_CASES],
    ids=[c[0] for c in ENVIRONMENT_CASES],
)
def test_environment_rules(spec: str, expected: list[str]) -> None:
    files = {
        "workflows/wf.yaml": workflow(VALID_STEPS),
        "environments/prod.yaml": environment("prod", spec),
    }
    assert sorted(code for code, _, _ in codes(findings_for(files))) == sorted(expected)


def test_pin_to_a_version_in_history_is_fine() -> None:
    files = {
        "workflows/wf.yaml": workflow(VALID_STEPS),
        "environments/prod.yaml": environment("prod", "pins: {wf: 0.9.0}"),
    }
    history = History({"0.9.0": yaml.safe_load(VALID_STEPS)})
    assert codes(findings_for(files, history)) == []


def test_promotion_cycle() -> None:
    files = {
        "environments/a.yaml": environment("a", "promotion: {from: b}"),
        "environments/b.yaml": environment("b", "promotion: {from: a}"),
    }
    found = [f for f in findings_for(files) if f.is_error]
    assert [(f.code, f.file) for f in found] == [
        ("promotion-cycle", "environments/a.yaml"),
        ("promotion-cycle", "environments/b.yaml"),
    ]


def test_duplicate_workflow_names_across_files() -> None:
    files = {"workflows/a.yaml": workflow(VALID_STEPS), "workflows/b.yaml": workflow(VALID_STEPS)}
    (finding,) = findings_for(files)
    assert (finding.code, finding.file) == ("duplicate-workflow", "workflows/b.yaml")


@pytest.mark.parametrize(
    ("old_steps", "expected"),
    [
        ([{"id": "old", "type": "log"}], []),
        ([{"id": "other", "type": "log"}], ["unknown-step"]),
        ([{"id": "old", "type": "wait"}], ["migration-type-change"]),
    ],
    ids=["mapped step exists", "mapped step missing", "type changes"],
)
def test_migration_maps_against_history(
    old_steps: list[dict[str, str]], expected: list[str]
) -> None:
    spec = """\
    version: 2.0.0
    steps: [{id: a, type: log}]
    migrations: [{from: ">=1.0.0 <2.0.0", map: {old: a}}]
    """
    history = History({"1.0.0": {"version": "1.0.0", "steps": old_steps}})
    found = findings_for({"workflows/wf.yaml": workflow(spec)}, history)
    assert [code for code, _, _ in codes(found)] == expected


def test_examples_validate_clean() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[3] / "examples"
    files = {
        p.relative_to(root).as_posix(): p.read_bytes()
        for d in ("workflows", "environments")
        for p in (root / d).glob("*.yaml")
    }
    assert findings_for(files) == []
