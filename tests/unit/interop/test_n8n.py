"""n8n ↔ flowpin: node mapping, graph shapes, malformed input, lossless round trips."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml

from controller.interop.formats import dump_yaml
from controller.interop.n8n import (
    ANNOTATION_DETACHED,
    Conversion,
    compare,
    from_n8n,
    slug,
    to_n8n,
)
from controller.model.validate import validate_manifests
from tests.unit.interop.n8nfixtures import (
    http,
    if_node,
    intake,
    link,
    node,
    slack,
    sticky,
    webhook,
    workflow,
)


def convert(data: Any) -> tuple[dict[str, Any], Conversion]:
    """Convert, write as YAML, read back: what lands in the repository."""
    conversion = from_n8n(data, "fallback")
    assert conversion.manifest is not None, [n.message for n in conversion.notes]
    manifest = yaml.safe_load(dump_yaml(conversion.manifest))
    assert manifest == conversion.manifest
    return manifest, conversion


def findings_of(manifest: dict[str, Any]) -> list[str]:
    _, findings = validate_manifests({"workflows/w.yaml": dump_yaml(manifest)})
    return [f"{f.severity}[{f.code}] {f.message}" for f in findings]


def steps_of(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in manifest["spec"]["steps"]}


def detached_names(manifest: dict[str, Any]) -> list[str]:
    text = manifest["metadata"]["annotations"].get(ANNOTATION_DETACHED, "[]")
    return [n["name"] for n in json.loads(text)]


def codes(conversion: Conversion) -> set[str]:
    return {n.code for n in conversion.notes}


def test_intake_maps_nodes_onto_step_types() -> None:
    manifest, conversion = convert(intake())
    assert manifest["metadata"]["name"] == "lead-intake"
    assert manifest["spec"]["triggers"] == [
        {"id": "webhook", "type": "webhook", "secretRef": {"name": "lead-intake-webhook"}}
    ]
    steps = steps_of(manifest)
    assert list(steps) == ["fetch-lead", "is-hot", "tell-sales", "remember"]
    assert steps["fetch-lead"] == {
        "id": "fetch-lead",
        "type": "http",
        "http": {"url": "https://crm.example/leads/${ inputs.id }"},
        "retry": {"limit": 3, "backoff": "fixed", "initialDelay": "2000ms"},
        "next": "is-hot",
    }
    assert steps["is-hot"]["condition"] == {
        "when": 'steps["fetch-lead"].output.body.score > 50',
        "then": "tell-sales",
        "else": "remember",
    }
    assert steps["tell-sales"]["n8n"] == {
        "nodeType": "n8n-nodes-base.slack",
        "typeVersion": 2.2,
        "parameters": {"channel": "#leads", "text": "={{ $json.email }}"},
        "credentials": {"slackApi": {"id": "cred-9", "name": "Team Slack"}},
    }
    assert steps["remember"]["set"] == {"tier": '"cold"', "count": "3"}
    assert detached_names(manifest) == ["Note", "Model"]
    assert {"n8n-verbatim", "n8n-detached", "n8n-meaning"} <= codes(conversion)
    assert findings_of(manifest) == []
    assert compare(intake(), to_n8n(manifest).workflow) == []


def test_round_trip_is_exact_down_to_key_order() -> None:
    manifest, _ = convert(intake())
    exported = to_n8n(manifest).workflow
    assert json.dumps(exported) == json.dumps(intake())


def hook_to(first: str) -> dict[str, Any]:
    return {"Webhook": {"main": [link(first)]}}


def n8n_node(name: str) -> dict[str, Any]:
    return node(name, "code", 2, parameters={"jsCode": f"return [{{json: {{step: '{name}'}}}}]"})


SHAPES: list[tuple[str, dict[str, Any], list[str], list[str], set[str]]] = [
    (
        "fan-out follows the first branch",
        workflow(
            [webhook(), n8n_node("A"), n8n_node("B"), n8n_node("C")],
            {**hook_to("A"), "A": {"main": [link("B", "C")]}},
        ),
        ["a", "b"],
        ["C"],
        {"n8n-fan-out", "n8n-detached"},
    ),
    (
        "merge after an if keeps both branches",
        workflow(
            [
                webhook(),
                if_node("Check", "={{ $json.body.kind }}", "equals", "vip"),
                n8n_node("Vip"),
                n8n_node("Normal"),
                node("Merge", "merge", 3),
            ],
            {
                **hook_to("Check"),
                "Check": {"main": [link("Vip"), link("Normal")]},
                "Vip": {"main": [link("Merge")]},
                "Normal": {"main": [link(("Merge", 1))]},
            },
        ),
        ["check", "vip", "merge", "normal"],
        [],
        set(),
    ),
    (
        "a disconnected node is detached",
        workflow([webhook(), n8n_node("A"), n8n_node("Lonely")], hook_to("A")),
        ["a"],
        ["Lonely"],
        {"n8n-detached"},
    ),
    (
        "a second trigger's path is detached",
        workflow(
            [
                webhook(),
                node(
                    "Every hour",
                    "scheduleTrigger",
                    1.2,
                    parameters={"rule": {"interval": [{"field": "hours"}]}},
                ),
                n8n_node("A"),
                n8n_node("B"),
            ],
            {**hook_to("A"), "Every hour": {"main": [link("B")]}},
        ),
        ["a"],
        ["B"],
        {"n8n-detached", "n8n-meaning"},
    ),
    (
        "a loop without a wait loses its closing edge",
        workflow(
            [webhook(), n8n_node("A"), n8n_node("B")],
            {**hook_to("A"), "A": {"main": [link("B")]}, "B": {"main": [link("A")]}},
        ),
        ["a", "b"],
        [],
        {"loop-without-wait"},
    ),
    (
        "a loop with a wait stays",
        workflow(
            [webhook(), n8n_node("A"), node("Pause", "wait", 1.1, parameters={"amount": 30})],
            {**hook_to("A"), "A": {"main": [link("Pause")]}, "Pause": {"main": [link("A")]}},
        ),
        ["a", "pause"],
        [],
        set(),
    ),
    (
        "without triggers the leftmost source is the entry",
        workflow(
            [n8n_node("Right") | {"position": [500, 0]}, n8n_node("Left") | {"position": [0, 0]}],
            {"Left": {"main": [link("Right")]}},
        ),
        ["left", "right"],
        [],
        set(),
    ),
    (
        "an error output becomes onError goto",
        workflow(
            [
                webhook(),
                http("Call", "https://api.example/x", onError="continueErrorOutput"),
                n8n_node("Ok"),
                slack("Alert"),
            ],
            {**hook_to("Call"), "Call": {"main": [link("Ok"), link("Alert")]}},
        ),
        ["call", "ok", "alert"],
        [],
        set(),
    ),
    (
        "an untranslatable if stays verbatim and its else branch is detached",
        workflow(
            [
                webhook(),
                if_node("Check", "={{ $json.body.name.toLowerCase() }}", "equals", "x"),
                n8n_node("Yes"),
                n8n_node("No"),
            ],
            {**hook_to("Check"), "Check": {"main": [link("Yes"), link("No")]}},
        ),
        ["check", "yes"],
        ["No"],
        {"n8n-verbatim", "n8n-detached"},
    ),
    (
        "an unknown connection type is kept, not followed",
        workflow(
            [webhook(), n8n_node("A"), n8n_node("B")],
            {**hook_to("A"), "A": {"custom": [link("B")]}},
        ),
        ["a"],
        ["B"],
        {"unknown-connection-type"},
    ),
    (
        "a disabled node is a noop",
        workflow(
            [webhook(), http("Off", "https://x.example", disabled=True), n8n_node("After")],
            {**hook_to("Off"), "Off": {"main": [link("After")]}},
        ),
        ["off", "after"],
        [],
        {"n8n-meaning"},
    ),
]


@pytest.mark.parametrize(
    ("shape", "data", "step_ids", "detached", "expected_codes"),
    SHAPES,
    ids=[s[0] for s in SHAPES],
)
def test_graph_shapes_validate_and_round_trip(
    shape: str,
    data: dict[str, Any],
    step_ids: list[str],
    detached: list[str],
    expected_codes: set[str],
) -> None:
    manifest, conversion = convert(copy.deepcopy(data))
    assert list(steps_of(manifest)) == step_ids
    assert detached_names(manifest) == detached
    assert expected_codes <= codes(conversion)
    assert findings_of(manifest) == []
    assert compare(data, to_n8n(manifest).workflow) == []


def test_error_output_and_disabled_details() -> None:
    manifest, _ = convert(SHAPES[7][1])
    assert steps_of(manifest)["call"]["onError"] == "goto:alert"
    manifest, _ = convert(SHAPES[10][1])
    assert steps_of(manifest)["off"]["type"] == "noop"


def switch_node(fallback: str = "extra") -> dict[str, Any]:
    def rule(value: str) -> dict[str, Any]:
        return {
            "conditions": {
                "options": {"caseSensitive": True, "leftValue": "", "typeValidation": "strict"},
                "conditions": [
                    {
                        "leftValue": "={{ $json.body.plan }}",
                        "rightValue": value,
                        "operator": {"type": "string", "operation": "equals"},
                    }
                ],
                "combinator": "and",
            },
            "renameOutput": True,
            "outputKey": value,
        }

    return node(
        "Route",
        "switch",
        3,
        parameters={
            "rules": {"values": [rule("pro"), rule("free")]},
            "options": {"fallbackOutput": fallback},
        },
    )


def test_switch_becomes_a_chain_of_conditions() -> None:
    data = workflow(
        [webhook(), switch_node(), n8n_node("Pro"), n8n_node("Free"), n8n_node("Other")],
        {**hook_to("Route"), "Route": {"main": [link("Pro"), link("Free"), link("Other")]}},
    )
    manifest, _ = convert(data)
    steps = steps_of(manifest)
    assert steps["route"]["condition"] == {
        "when": 'inputs.plan == "pro"',
        "then": "pro",
        "else": "route-2",
    }
    assert steps["route-2"]["condition"] == {
        "when": 'inputs.plan == "free"',
        "then": "free",
        "else": "other",
    }
    assert findings_of(manifest) == []
    assert compare(data, to_n8n(manifest).workflow) == []
    # Editing a rule in flowpin cannot be written back as Switch rules: said, not hidden.
    steps["route-2"]["condition"]["when"] = 'inputs.plan == "team"'
    assert any("Switch" in n for n in to_n8n(manifest).notes)


@pytest.mark.parametrize(
    ("data", "code", "words"),
    [
        ([1, 2], "not-n8n-workflow", "expected a JSON object"),
        ({"name": "x"}, "not-n8n-workflow", "no `nodes` list"),
        ({"nodes": {}, "connections": {}}, "n8n-schema", "`nodes` must be a list"),
        ({"nodes": [{"type": "n8n-nodes-base.noOp"}]}, "n8n-schema", "has no name"),
        (
            {"nodes": [node("A", "noOp"), node("A", "set")], "connections": {}},
            "duplicate-node-name",
            "two nodes are named 'A'",
        ),
        ({"nodes": [sticky("Only", "hi")], "connections": {}}, "no-steps", "at least one step"),
        ({"nodes": [node("A", "noOp")], "connections": []}, "n8n-schema", "must be an object"),
    ],
)
def test_malformed_files_are_refused_with_the_reason(data: Any, code: str, words: str) -> None:
    conversion = from_n8n(data, "file")
    assert conversion.refused
    errors = [n for n in conversion.notes if n.severity == "error"]
    assert any(n.code == code and words in n.message for n in errors), conversion.notes


def test_partial_files_import_with_findings() -> None:
    data = {
        "nodes": [webhook(), n8n_node("A")],
        "connections": {
            "Webhook": {"main": [link("A", "Ghost")]},
            "Nobody": {"main": [link("A")]},
        },
    }
    manifest, conversion = convert(copy.deepcopy(data))
    assert manifest["metadata"]["name"] == "fallback"
    messages = [n.message for n in conversion.notes]
    assert any("no name" in m for m in messages)
    assert any("'Ghost', which is not a node" in m for m in messages)
    assert any("no such node" in m for m in messages)
    assert findings_of(manifest) == []
    assert compare(data, to_n8n(manifest).workflow) == []


def test_edits_in_flowpin_regenerate_the_node_and_keep_its_identity() -> None:
    manifest, _ = convert(intake())
    steps = steps_of(manifest)
    steps["fetch-lead"]["http"]["url"] = "https://crm.example/v2/${ inputs.id }"
    steps["remember"]["next"] = "tell-sales"
    exported = to_n8n(manifest)
    assert exported.notes == ["step fetch-lead changed in flowpin: its n8n node was regenerated"]
    paths = {d.path for d in compare(intake(), exported.workflow)}
    assert paths and all(
        p.startswith('nodes["Fetch lead"].') or p.startswith("connections.Remember") for p in paths
    )
    fetch = next(n for n in exported.workflow["nodes"] if n["name"] == "Fetch lead")
    assert fetch["id"] == "id-fetch-lead" and fetch["position"] == [0, 0]
    assert fetch["parameters"]["url"] == "=https://crm.example/v2/{{ inputs.id }}"
    assert exported.workflow["connections"]["Remember"] == {"main": [link("Tell sales")]}


def test_removed_steps_drop_their_connections() -> None:
    manifest, _ = convert(intake())
    manifest["spec"]["steps"] = [s for s in manifest["spec"]["steps"] if s["id"] != "remember"]
    del steps_of(manifest)["is-hot"]["condition"]["else"]
    exported = to_n8n(manifest)
    assert exported.workflow["connections"]["Is hot"] == {"main": [link("Tell sales"), []]}
    assert any("removed in flowpin" in n for n in exported.notes)


NATIVE: dict[str, Any] = {
    "apiVersion": "flowpin.dev/v1alpha1",
    "kind": "Workflow",
    "metadata": {"name": "lead-nurture"},
    "spec": {
        "version": "1.4.0",
        "triggers": [
            {"id": "signup", "type": "webhook", "secretRef": {"name": "hook"}},
            {
                "id": "nightly",
                "type": "schedule",
                "schedule": "0 9 * * *",
                "timezone": "Europe/Berlin",
            },
        ],
        "steps": [
            {
                "id": "welcome",
                "type": "http",
                "http": {
                    "method": "POST",
                    "url": "https://mail.example/send",
                    "body": {"to": "${ inputs.email }"},
                },
                "retry": {"limit": 3, "backoff": "exponential", "initialDelay": "1s"},
                "next": "wait-2d",
            },
            {"id": "wait-2d", "type": "wait", "wait": {"duration": "48h"}, "next": "opened"},
            {
                "id": "opened",
                "type": "condition",
                "condition": {
                    "when": "steps.welcome.output.status == 200",
                    "then": "follow-up",
                    "else": "end",
                },
            },
            {"id": "follow-up", "type": "set", "set": {"done": "true"}},
        ],
    },
}


def test_native_workflows_export_to_current_n8n_nodes() -> None:
    exported = to_n8n(NATIVE).workflow
    by_name = {n["name"]: n for n in exported["nodes"]}
    assert [n["type"].split(".")[-1] for n in exported["nodes"]] == [
        "webhook",
        "scheduleTrigger",
        "httpRequest",
        "wait",
        "if",
        "set",
    ]
    assert by_name["welcome"]["parameters"]["jsonBody"] == '={"to": "{{ inputs.email }}"}'
    assert by_name["welcome"]["maxTries"] == 4 and by_name["welcome"]["waitBetweenTries"] == 1000
    assert by_name["wait-2d"]["parameters"] == {"amount": 2, "unit": "days"}
    assert exported["settings"] == {"executionOrder": "v1", "timezone": "Europe/Berlin"}
    assert exported["connections"] == {
        "welcome": {"main": [link("wait-2d")]},
        "wait-2d": {"main": [link("opened")]},
        "opened": {"main": [link("follow-up")]},
        "signup": {"main": [link("welcome")]},
        "nightly": {"main": [link("welcome")]},
    }
    assert all(isinstance(n["position"], list) for n in exported["nodes"])
    # And back: a valid flowpin workflow again, with the same graph.
    again, _ = convert(exported)
    assert findings_of(again) == []
    # CEL went out verbatim inside {{ }}; n8n cannot evaluate `inputs.…` or `steps.…`, and
    # neither is it JavaScript flowpin translates, so those nodes come back as n8n steps.
    assert [s["type"] for s in again["spec"]["steps"]] == ["n8n", "wait", "n8n", "set"]


@pytest.mark.parametrize(
    ("before", "after", "paths"),
    [
        ({"a": 1}, {"a": 1.0}, []),
        ({"a": True}, {"a": 1}, ["a"]),
        ({"nodes": [{"name": "x"}, {"name": "y"}]}, {"nodes": [{"name": "y"}, {"name": "x"}]}, []),
        (
            {"nodes": [{"name": "x", "p": [1]}]},
            {"nodes": [{"name": "x", "p": [1, 2]}]},
            ['nodes["x"].p[1]'],
        ),
        ({"settings": {}}, {}, ["settings"]),
    ],
)
def test_compare(before: Any, after: Any, paths: list[str]) -> None:
    assert [d.path for d in compare(before, after)] == paths


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Send Email 1", "send-email-1"),
        ("When clicking \u2018Test workflow\u2019", "when-clicking-test-workflow"),
        ("数据", ""),
    ],
)
def test_slug(text: str, expected: str) -> None:
    assert slug(text) == expected


def test_a_node_named_end_gets_another_step_id() -> None:
    """`next: end` ends a run, so no step may be called `end`."""
    data = workflow(
        [webhook(), http("End", "https://crm.example/done")],
        {"Webhook": {"main": [link("End")]}},
    )
    manifest, _ = convert(data)
    assert list(steps_of(manifest)) == ["end-2"]
    assert findings_of(manifest) == []
