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
        "valid inputs schema",
        """\
        version: 1.0.0
        inputs: {type: object, properties: {x: {type: string}}}
        steps: [{id: a, type: log}]
        """,
        [],
    ),
    (
        "inputs $ref that points nowhere",
        """\
        version: 1.0.0
        inputs: {type: object, properties: {x: {$ref: "#/nope"}}}
        steps: [{id: a, type: log}]
        """,
        ["invalid-inputs-schema"],
    ),
    (
        "inputs $ref into $defs",
        """\
        version: 1.0.0
        inputs:
          $defs: {email: {type: string}}
          properties: {x: {$ref: "#/$defs/email"}, y: {items: {$ref: "#"}}}
        steps: [{id: a, type: log}]
        """,
        [],
    ),
    (
        "inputs $ref to a missing definition",
        """\
        version: 1.0.0
        inputs:
          $defs: {email: {type: string}}
          properties: {x: {$ref: "#/$defs/mail"}}
        steps: [{id: a, type: log}]
        """,
        ["invalid-inputs-schema"],
    ),
    (
        "inputs pattern that is not a regex",
        """\
        version: 1.0.0
        inputs: {properties: {x: {type: string, pattern: "(["}}}
        steps: [{id: a, type: log}]
        """,
        ["invalid-inputs-schema"],
    ),
    (
        "inputs pattern that is a regex",
        """\
        version: 1.0.0
        inputs: {properties: {x: {type: string, pattern: "^[a-z]+$"}}}
        steps: [{id: a, type: log}]
        """,
        [],
    ),
    (
        "inputs patternProperties key that is not a regex",
        """\
        version: 1.0.0
        inputs: {properties: {x: {patternProperties: {"x(": {type: string}}}}}
        steps: [{id: a, type: log}]
        """,
        ["invalid-inputs-schema"],
    ),
    (
        "inputs patternProperties key and data that only look like patterns",
        """\
        version: 1.0.0
        inputs:
          patternProperties: {"^x-": {type: string}}
          properties: {pattern: {enum: ["(["], default: "(["}}
        steps: [{id: a, type: log}]
        """,
        [],
    ),
    (
        "step id end is reserved",
        """\
        version: 1.0.0
        steps: [{id: a, type: log, next: end}, {id: end, type: log}]
        """,
        ["schema"],
    ),
    (
        "step ids that start with end",
        """\
        version: 1.0.0
        steps:
          - {id: a, type: log, next: end-1}
          - {id: end-1, type: log, next: ending}
          - {id: ending, type: log}
        """,
        [],
    ),
    (
        "CEL reads an input a closed inputs schema forbids",
        """\
        version: 1.0.0
        inputs: {type: object, properties: {email: {type: string}}, additionalProperties: false}
        steps: [{id: a, type: log, log: {message: "${ inputs.emial }"}}]
        """,
        ["cel-unknown-input"],
    ),
    (
        "CEL reads an input the closed inputs schema declares",
        """\
        version: 1.0.0
        inputs: {type: object, properties: {email: {type: string}}, additionalProperties: false}
        steps: [{id: a, type: log, log: {message: "${ inputs.email }"}}]
        """,
        [],
    ),
    (
        "CEL reads an input no inputs at all allow",
        """\
        version: 1.0.0
        inputs: {type: object, additionalProperties: false}
        steps: [{id: a, type: log, log: {message: "${ inputs.any }"}}]
        """,
        ["cel-unknown-input"],
    ),
    (
        "CEL reads an input unevaluatedProperties forbids",
        """\
        version: 1.0.0
        inputs: {type: object, properties: {email: {}}, unevaluatedProperties: false}
        steps: [{id: a, type: log, log: {message: "${ inputs.emial }"}}]
        """,
        ["cel-unknown-input"],
    ),
    (
        "CEL reads an unknown step next to a dashed one",
        """\
        version: 1.0.0
        steps:
          - {id: send-mail, type: log, next: b}
          - {id: b, type: log, log: {message: "${ steps.send-mail.output + steps.mail.output }"}}
        """,
        ["cel-step-reference", "unknown-step"],
    ),
    (
        "CEL reads an unknown step by index",
        """\
        version: 1.0.0
        steps:
          - {id: a, type: log, next: b}
          - id: b
            type: condition
            condition: {when: 'steps["z"].phase == "Succeeded"', then: end}
        """,
        ["unknown-step"],
    ),
    (
        "CEL reads a known step by index",
        """\
        version: 1.0.0
        steps:
          - {id: a, type: log, next: b}
          - id: b
            type: condition
            condition: {when: 'steps["a"].phase == "Succeeded"', then: end}
        """,
        [],
    ),
    (
        "CEL reads an unknown name",
        """\
        version: 1.0.0
        steps: [{id: a, type: condition, condition: {when: "input.x == 1", then: end}}]
        """,
        ["cel-unknown-name"],
    ),
    (
        "CEL reads engine names, macro variables and type names",
        """\
        version: 1.0.0
        steps:
          - id: a
            type: condition
            condition:
              when: >-
                inputs.tags.all(t, t != "input") && vars.n > 0 && type(inputs.x) == int
                && run.environment == "prod" && [1].exists(x, x == 1) && size("a.b") == 3
              then: b
          - {id: b, type: log, log: {message: '${ steps.a.output.result }'}}
        """,
        [],
    ),
    (
        "template reads an unknown name",
        """\
        version: 1.0.0
        steps: [{id: a, type: log, log: {message: "hi ${ input.name }"}}]
        """,
        ["cel-unknown-name"],
    ),
    (
        "macro variable used outside its macro",
        """\
        version: 1.0.0
        steps: [{id: a, type: set, set: {y: "inputs.xs.map(x, x + 1).size() + x"}}]
        """,
        ["cel-unknown-name"],
    ),
    (
        "migration set reads steps",
        """\
        version: 2.0.0
        steps: [{id: a, type: log}]
        migrations: [{from: "<2.0.0", map: {old: a}, set: {x: "steps.old.output"}}]
        """,
        ["cel-unknown-name"],
    ),
    (
        "migration with a valid range, target and set",
        """\
        version: 2.0.0
        steps: [{id: a, type: log}]
        migrations: [{from: "<2.0.0", map: {old: a}, set: {x: "inputs.a + vars.b + run.step"}}]
        """,
        [],
    ),
    (
        "condition that is not a boolean",
        """\
        version: 1.0.0
        steps: [{id: a, type: condition, condition: {when: "1 + 2", then: end}}]
        """,
        ["cel-not-boolean"],
    ),
    (
        "condition that is a constant boolean",
        """\
        version: 1.0.0
        steps: [{id: a, type: condition, condition: {when: "1 + 2 == 3", then: end}}]
        """,
        [],
    ),
    (
        "closed template",
        """\
        version: 1.0.0
        steps: [{id: a, type: log, log: {message: "hello ${ inputs.name }"}}]
        """,
        [],
    ),
    (
        "until with time zone",
        """\
        version: 1.0.0
        steps: [{id: a, type: wait, wait: {until: "2026-01-01T09:00:00+01:00"}}]
        """,
        [],
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
        "canary with increasing weights",
        "rollout: {strategy: canary, steps: [{weight: 10, pause: 5m}, {weight: 50}]}",
        [],
    ),
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
    (
        "good window cron and timezone",
        "promotion: {windows: [{kind: allow, schedule: 0 9 * * 1-5, duration: 8h, "
        "timezone: Europe/Berlin}]}",
        [],
    ),
    (
        "bad window timezone",
        "promotion: {windows: [{kind: allow, schedule: 0 9 * * *, duration: 1h, "
        "timezone: Europe/Berlinn}]}",
        ["invalid-timezone"],
    ),
    ("bad soak", "promotion: {soak: 0s}", ["invalid-duration"]),
    ("good soak", "promotion: {soak: 1h}", []),
    ("unknown upstream", "promotion: {from: stagin}", ["unknown-environment"]),
    ("known upstream", "promotion: {from: staging}", []),
]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [c[1:] for c in ENVIRONMENT_CASES],
    ids=[c[0] for c in ENVIRONMENT_CASES],
)
def test_environment_rules(spec: str, expected: list[str]) -> None:
    files = {
        "workflows/wf.yaml": workflow(VALID_STEPS),
        "environments/staging.yaml": environment("staging", "pins: {wf: latest}"),
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


def test_promotion_chain_without_a_loop() -> None:
    files = {
        "environments/a.yaml": environment("a", "pins: {}"),
        "environments/b.yaml": environment("b", "promotion: {from: a}"),
        "environments/c.yaml": environment("c", "promotion: {from: b}"),
    }
    assert findings_for(files) == []


def test_duplicate_workflow_names_across_files() -> None:
    files = {"workflows/a.yaml": workflow(VALID_STEPS), "workflows/b.yaml": workflow(VALID_STEPS)}
    (finding,) = findings_for(files)
    assert (finding.code, finding.file) == ("duplicate-workflow", "workflows/b.yaml")
    files["workflows/b.yaml"] = workflow(VALID_STEPS).replace("name: wf", "name: wf2")
    assert findings_for(files) == []


def test_duplicate_environment_names_across_files() -> None:
    files = {
        "environments/prod.yaml": environment("prod", "pins: {}"),
        "environments/prod-eu.yaml": environment("prod", "pins: {}"),
    }
    (finding,) = findings_for(files)
    assert (finding.code, finding.file, finding.path) == (
        "duplicate-environment",
        "environments/prod.yaml",
        "metadata.name",
    )
    assert finding.message == "environment 'prod' is already defined in environments/prod-eu.yaml"
    files["environments/prod-eu.yaml"] = environment("prod-eu", "pins: {}")
    assert findings_for(files) == []


@pytest.mark.parametrize(
    ("path", "content", "expected"),
    [
        ("workflows/x.yaml", "- a list\n", [("not-a-manifest", "error")]),
        ("workflows/x.yaml", "kind: Workflw\n", [("unknown-kind", "error")]),
        ("workflows/wf.yaml", workflow(VALID_STEPS), []),
        ("environments/wf.yaml", workflow(VALID_STEPS), [("misplaced-manifest", "warning")]),
    ],
    ids=["not a mapping", "unknown kind", "workflow under workflows/", "workflow elsewhere"],
)
def test_file_level_rules(path: str, content: str, expected: list[tuple[str, str]]) -> None:
    found = findings_for({path: content})
    assert [(f.code, f.severity) for f in found] == expected


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            'steps: [{id: a, type: condition, condition: {when: "true", then: end}, next: end}]',
            ["spec.steps[0].next"],
        ),
        ('steps: [{id: a, type: condition, condition: {when: "true", then: end}}]', []),
        ("steps: [{id: a, type: fail, fail: {message: stop}, next: end}]", ["spec.steps[0].next"]),
        ("steps: [{id: a, type: fail, fail: {message: stop}}]", []),
        (
            "triggers: [{id: t, type: manual, timezone: UTC}]\nsteps: [{id: a, type: log}]",
            ["spec.triggers[0].timezone"],
        ),
        (
            "triggers: [{id: t, type: schedule, schedule: '@daily', timezone: UTC}]\n"
            "steps: [{id: a, type: log}]",
            [],
        ),
    ],
    ids=[
        "condition with next",
        "condition without next",
        "fail with next",
        "fail without next",
        "timezone on a manual trigger",
        "timezone on a schedule trigger",
    ],
)
def test_ignored_field_warnings(spec: str, expected: list[str]) -> None:
    found = findings_for({"workflows/wf.yaml": workflow("version: 1.0.0\n" + spec + "\n")})
    assert [(f.code, f.severity, f.path) for f in found] == [
        ("ignored-field", "warning", path) for path in expected
    ]


OPEN_INPUTS = "inputs: {type: object, properties: {email: {type: string}}}\n"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            OPEN_INPUTS + 'steps: [{id: a, type: log, log: {message: "${ inputs.emial }"}}]',
            ["cel-unknown-input"],
        ),
        (OPEN_INPUTS + 'steps: [{id: a, type: log, log: {message: "${ inputs.email }"}}]', []),
        ('steps: [{id: a, type: log, log: {message: "${ inputs.anything }"}}]', []),
        (
            "inputs: {type: object, properties: {a: {type: string}}, patternProperties: {x: {}}}\n"
            'steps: [{id: a, type: log, log: {message: "${ inputs.x1 }"}}]',
            [],
        ),
        (
            OPEN_INPUTS + "steps: [{id: a, type: log, log: "
            "{message: \"${ has(inputs.tag) ? inputs.tag : 'none' }\"}}]",
            [],
        ),
        (
            "inputs: {type: object, properties: {a: {}}, additionalProperties: {type: string}}\n"
            'steps: [{id: a, type: log, log: {message: "${ inputs.extra }"}}]',
            [],
        ),
        (
            'steps: [{id: a, type: log, log: {message: "${ vars.n + vars.n }"}}]',
            ["cel-unknown-var"],
        ),
        (
            'steps: [{id: a, type: set, set: {total: "1"}, next: b}, '
            '{id: b, type: log, log: {message: "${ vars.total }"}}]',
            [],
        ),
        (
            'steps: [{id: a, type: log, log: {message: "${ vars.total }"}}]\n'
            'migrations: [{from: "<1.0.0", set: {total: "0"}}]',
            [],
        ),
    ],
    ids=[
        "undeclared input, open schema",
        "declared input, open schema",
        "no inputs schema",
        "inputs schema with patternProperties",
        "input tested with has()",
        "inputs schema welcomes other inputs",
        "variable no step sets, read twice",
        "variable a set step sets",
        "variable a migration sets",
    ],
)
def test_cel_field_warnings(spec: str, expected: list[str]) -> None:
    found = findings_for({"workflows/wf.yaml": workflow("version: 1.0.0\n" + spec + "\n")})
    assert [(f.code, f.severity) for f in found] == [(code, "warning") for code in expected]


def test_cel_field_findings_say_what_is_declared() -> None:
    spec = """\
    version: 1.0.0
    inputs: {type: object, properties: {email: {type: string}}, additionalProperties: false}
    steps:
      - {id: a, type: set, set: {count: "1"}, next: b}
      - {id: b, type: log, log: {message: "${ inputs.emial } ${ vars.cuont }"}}
    """
    closed, var = findings_for({"workflows/wf.yaml": workflow(spec)})
    assert (closed.code, closed.severity, closed.path, closed.line) == (
        "cel-unknown-input",
        "error",
        "spec.steps[1].log.message",
        9,
    )
    assert closed.message == (
        "inputs.emial (did you mean 'email'?) at character 1 of CEL expression "
        "'inputs.emial': spec.inputs allows no such property (additionalProperties: false), "
        "so no run has it"
    )
    assert (var.code, var.severity) == ("cel-unknown-var", "warning")
    assert var.message.startswith("vars.cuont (did you mean 'count'?) at character 1")


@pytest.mark.parametrize(
    ("rollout", "expected"),
    [("{steps: [{weight: 10}]}", ["ignored-field"]), ("{strategy: immediate}", [])],
    ids=["steps on an immediate rollout", "immediate rollout"],
)
def test_ignored_rollout_steps_warn(rollout: str, expected: list[str]) -> None:
    files = {"environments/prod.yaml": environment("prod", f"rollout: {rollout}")}
    assert [f.code for f in findings_for(files) if not f.is_error] == expected


def test_migration_range_that_matches_no_version_warns() -> None:
    spec = """\
    version: 2.0.0
    steps: [{id: a, type: log}]
    migrations: [{from: "<0.5.0", map: {old: a}}]
    """
    history = History({"1.0.0": {"version": "1.0.0", "steps": [{"id": "old", "type": "log"}]}})
    found = findings_for({"workflows/wf.yaml": workflow(spec)}, history)
    assert [(f.code, f.severity) for f in found] == [("migration-range-empty", "warning")]
    matching = workflow(spec.replace("<0.5.0", "<2.0.0"))
    assert findings_for({"workflows/wf.yaml": matching}, history) == []


def test_cel_findings_name_the_identifier_and_what_is_available() -> None:
    spec = """\
    version: 2.0.0
    steps:
      - {id: a, type: condition, condition: {when: "input.x == 1", then: b}}
      - {id: b, type: condition, condition: {when: "1 + 2", then: end}}
    migrations: [{from: "<2.0.0", set: {x: "steps.a.output"}}]
    """
    found = findings_for({"workflows/wf.yaml": workflow(spec)})
    unknown, not_boolean, migration = found
    assert (unknown.code, unknown.line, unknown.column, unknown.path) == (
        "cel-unknown-name",
        7,
        50,
        "spec.steps[0].condition.when",
    )
    assert unknown.message == (
        "unknown name 'input' (did you mean 'inputs'?) at character 1 of CEL expression "
        "'input.x == 1'; expressions can read inputs, run, steps, vars"
    )
    assert (not_boolean.code, not_boolean.line) == ("cel-not-boolean", 8)
    assert "always gives 3" in not_boolean.message
    assert (migration.code, migration.path) == ("cel-unknown-name", "spec.migrations[0].set.x")
    assert migration.message.startswith("unknown name 'steps' (not available in migrations)")
    assert migration.message.endswith("a migration's set expressions can read inputs, run, vars")


def test_inputs_schema_findings_point_at_the_offending_field() -> None:
    spec = """\
    version: 1.0.0
    inputs:
      properties:
        a: {$ref: "#/nope"}
        b: {pattern: "(["}
        c: {patternProperties: {"x(": {}}}
    steps: [{id: a, type: log}]
    """
    found = findings_for({"workflows/wf.yaml": workflow(spec)})
    assert [(f.line, f.path) for f in found] == [
        (8, "spec.inputs.properties.a.$ref"),
        (9, "spec.inputs.properties.b.pattern"),
        (10, 'spec.inputs.properties.c.patternProperties["x("]'),
    ]
    ref, pattern, key = (f.message for f in found)
    assert ref == (
        "inputs is not a valid JSON Schema: $ref '#/nope' points at nothing in inputs "
        "(a local ref looks like #/$defs/name)"
    )
    assert pattern == (
        "inputs is not a valid JSON Schema: pattern '([' is not a valid regular expression: "
        "unterminated character set at character 2"
    )
    assert key.startswith("inputs is not a valid JSON Schema: patternProperties key 'x('")


def test_step_id_end_is_reserved_with_a_clear_message() -> None:
    spec = """\
    version: 1.0.0
    steps: [{id: a, type: log, next: end}, {id: end, type: log}]
    """
    (finding,) = findings_for({"workflows/wf.yaml": workflow(spec)})
    assert (finding.code, finding.path) == ("schema", "spec.steps[1].id")
    assert finding.message.startswith("invalid value 'end': expected a step id other than end")


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


@pytest.mark.parametrize(
    ("text", "line", "path", "words"),
    [
        (
            workflow("version: 1.0.0\nsteps:\n  - id: a\n    type: log\n    on: error\n"),
            9,
            "spec.steps[0].on",
            "key `on` is not a string (YAML reads it as the boolean true; quote it: 'on')",
        ),
        ("1: x\n", 1, "1", "key `1` is not a string (YAML reads it as the number 1"),
        (
            workflow(
                "version: 1.0.0\ninputs: {type: object, properties: {1: {type: string}}}\n"
                "steps: [{id: a, type: log}]\n"
            ),
            6,
            'spec.inputs.properties["1"]',
            "key `1` is not a string",
        ),
        (
            workflow('version: 1.0.0\nsteps: [{id: a, type: set, set: {1: "2"}}]\n'),
            6,
            'spec.steps[0].set["1"]',
            "key `1` is not a string",
        ),
        ("~: x\n", 1, "~", "key `~` is not a string (YAML reads it as null"),
        (
            HEADER + "spec:\n  2024-01-01: x\n",
            5,
            'spec["2024-01-01"]',
            "YAML reads it as a date",
        ),
    ],
)
def test_a_key_that_is_not_a_string_is_a_finding_not_a_crash(
    text: str, line: int, path: str, words: str
) -> None:
    """Kubernetes objects are JSON: keys are strings. YAML 1.1 reads `on`, `yes`, `1`, `~`
    and dates as other types; each such key is one finding at its line (issue 13)."""
    found = findings_for({"workflows/wf.yaml": text})
    assert [(f.code, f.line, f.path) for f in found] == [("key-not-string", line, path)]
    assert words in found[0].message
