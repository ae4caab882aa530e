"""One node at a time: what each n8n node type becomes, and why some stay verbatim."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from controller.interop.expressions import Segment, Untranslatable, cel_path
from controller.interop.n8n_nodes import (
    fresh_step_node,
    fresh_trigger_node,
    n8n_step,
    translate_step,
    translate_trigger,
)
from tests.unit.interop.n8nfixtures import node


def resolve(name: str | None, path: Sequence[Segment]) -> str:
    if name is None:
        return cel_path('steps["prev"].output.body', path)
    raise Untranslatable(f"no node {name}")


def step(data: dict[str, Any]) -> list[dict[str, Any]]:
    return translate_step(data, resolve).bodies


@pytest.mark.parametrize(
    ("data", "bodies"),
    [
        (
            node("Get", "httpRequest", 4.2, parameters={"url": "https://a.example", "options": {}}),
            [{"type": "http", "http": {"url": "https://a.example"}}],
        ),
        (
            node(
                "Post",
                "httpRequest",
                4.1,
                parameters={
                    "method": "POST",
                    "url": "=https://a.example/{{ $json.id }}",
                    "sendHeaders": True,
                    "headerParameters": {"parameters": [{"name": "X-Key", "value": "k"}]},
                    "sendBody": True,
                    "bodyParameters": {"parameters": [{"name": "n", "value": "={{ $json.n }}"}]},
                    "options": {"timeout": 5000},
                },
            ),
            [
                {
                    "type": "http",
                    "http": {
                        "url": 'https://a.example/${ steps["prev"].output.body.id }',
                        "method": "POST",
                        "headers": {"X-Key": "k"},
                        "body": {"n": '${ steps["prev"].output.body.n }'},
                        "timeout": "5000ms",
                    },
                }
            ],
        ),
        (
            node(
                "Json",
                "httpRequest",
                4.2,
                parameters={
                    "method": "PUT",
                    "url": "https://a.example",
                    "sendBody": True,
                    "specifyBody": "json",
                    "jsonBody": '={"id": "{{ $json.id }}", "note": "n={{ $json.n }}", "k": 1}',
                },
            ),
            [
                {
                    "type": "http",
                    "http": {
                        "url": "https://a.example",
                        "method": "PUT",
                        "body": {
                            "id": '${ string(steps["prev"].output.body.id) }',
                            "note": 'n=${ steps["prev"].output.body.n }',
                            "k": 1,
                        },
                    },
                }
            ],
        ),
        (
            node("W", "wait", 1.1, parameters={"amount": 90}),
            [{"type": "wait", "wait": {"duration": "90s"}}],
        ),
        (
            node("W", "wait", 1, parameters={"amount": 2}),
            [{"type": "wait", "wait": {"duration": "7200s"}}],
        ),
        (
            node("W", "wait", 1.1, parameters={"amount": 1.5, "unit": "seconds"}),
            [{"type": "wait", "wait": {"duration": "1500ms"}}],
        ),
        (
            node(
                "W",
                "wait",
                1.1,
                parameters={"resume": "specificTime", "dateTime": "2030-01-01T09:00:00Z"},
            ),
            [{"type": "wait", "wait": {"until": "2030-01-01T09:00:00Z"}}],
        ),
        (
            node(
                "S",
                "set",
                2,
                parameters={
                    "values": {
                        "string": [{"name": "a", "value": "x"}],
                        "number": [{"name": "b", "value": 2}],
                    }
                },
            ),
            [{"type": "set", "set": {"a": '"x"', "b": "2"}}],
        ),
        (
            node(
                "S",
                "set",
                3.4,
                parameters={
                    "assignments": {
                        "assignments": [{"name": "tags", "type": "array", "value": '["a"]'}]
                    },
                    "includeOtherFields": True,
                    "options": {},
                },
            ),
            [{"type": "set", "set": {"tags": '["a"]'}}],
        ),
        (
            node(
                "If1",
                "if",
                1,
                parameters={
                    "conditions": {
                        "number": [
                            {"value1": "={{ $json.n }}", "operation": "larger", "value2": 3}
                        ],
                        "string": [
                            {"value1": "={{ $json.s }}", "operation": "startsWith", "value2": "a"}
                        ],
                    },
                    "combineOperation": "any",
                },
            ),
            [
                {
                    "type": "condition",
                    "condition": {
                        "when": '(steps["prev"].output.body.n > 3) || '
                        '(steps["prev"].output.body.s.startsWith("a"))'
                    },
                }
            ],
        ),
        (node("N", "noOp"), [{"type": "noop"}]),
        (
            node("Stop", "stopAndError", parameters={"errorMessage": "=bad {{ $json.id }}"}),
            [{"type": "fail", "fail": {"message": 'bad ${ steps["prev"].output.body.id }'}}],
        ),
        (
            node(
                "H",
                "httpRequest",
                4.2,
                parameters={"url": "https://a.example"},
                notes="Why",
                onError="continueRegularOutput",
            ),
            [
                {
                    "type": "http",
                    "http": {"url": "https://a.example"},
                    "onError": "continue",
                    "description": "Why",
                }
            ],
        ),
    ],
)
def test_translations(data: dict[str, Any], bodies: list[dict[str, Any]]) -> None:
    assert step(data) == bodies


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (
            node(
                "H",
                "httpRequest",
                3,
                parameters={"url": "x", "authentication": "genericCredentialType"},
            ),
            "credentials",
        ),
        (node("H", "httpRequest", 2, parameters={"url": "x"}), "version 2"),
        (
            node("H", "httpRequest", 4.2, parameters={"url": "x", "options": {"redirect": {}}}),
            "'redirect'",
        ),
        (
            node("H", "httpRequest", 4.2, parameters={"url": "x", "sendQuery": True}),
            "query parameters",
        ),
        (
            node(
                "H",
                "httpRequest",
                4.2,
                parameters={"url": "x", "sendBody": True, "contentType": "multipart-form-data"},
            ),
            "multipart-form-data body",
        ),
        (
            node(
                "H",
                "httpRequest",
                4.2,
                parameters={
                    "url": "x",
                    "sendBody": True,
                    "specifyBody": "json",
                    "jsonBody": "={{ $json }}",
                },
            ),
            "outside JSON strings",
        ),
        (node("W", "wait", 1.1, parameters={"resume": "webhook"}), "resumes on webhook"),
        (
            node(
                "W",
                "wait",
                1.1,
                parameters={"resume": "specificTime", "dateTime": "2030-01-01T09:00"},
            ),
            "no time zone",
        ),
        (node("S", "set", 3.4, parameters={"mode": "raw", "jsonOutput": "{}"}), "'jsonOutput'"),
        (node("S", "set", 3.2, parameters={"fields": {}}), "Set version 3.2"),
        (
            node(
                "S",
                "set",
                3.4,
                parameters={"assignments": {"assignments": [{"name": "a.b", "value": 1}]}},
            ),
            "identifiers",
        ),
        (node("C", "code", 2, parameters={"jsCode": "return []"}), "no flowpin step type"),
        (node("X", "noOp", alwaysOutputData=True), "alwaysOutputData"),
        (node("X", "noOp", executeOnce=True), "executeOnce"),
        (node("X", "noOp", retryOnFail=True), "cannot fail"),
        (
            node("X", "httpRequest", 4.2, parameters={"url": "x"}, onError="bogus"),
            "onError 'bogus'",
        ),
    ],
)
def test_untranslatable(data: dict[str, Any], reason: str) -> None:
    with pytest.raises(Untranslatable, match=reason):
        translate_step(data, resolve)


def filter_if(
    operation: str, kind: str = "string", right: Any = "v", **options: Any
) -> dict[str, Any]:
    return node(
        "If",
        "if",
        2,
        parameters={
            "conditions": {
                "options": {"caseSensitive": True, "typeValidation": "strict", **options},
                "conditions": [
                    {
                        "leftValue": "={{ $json.v }}",
                        "rightValue": right,
                        "operator": {"type": kind, "operation": operation},
                    }
                ],
                "combinator": "and",
            },
            "options": {},
        },
    )


V = 'steps["prev"].output.body.v'


@pytest.mark.parametrize(
    ("data", "when"),
    [
        (filter_if("equals"), f'{V} == "v"'),
        (filter_if("notContains"), f'!{V}.contains("v")'),
        (filter_if("regex", right="^a"), f'{V}.matches("^a")'),
        (filter_if("exists"), f"has({V})"),
        (filter_if("notExists"), f"!has({V})"),
        (filter_if("empty"), f'{V} == ""'),
        (filter_if("gte", "number", "10"), f"{V} >= 10"),
        (filter_if("true", "boolean"), f"{V} == true"),
    ],
)
def test_if_conditions(data: dict[str, Any], when: str) -> None:
    assert step(data)[0]["condition"]["when"] == when


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (filter_if("equals", caseSensitive=False), "case-insensitive"),
        (filter_if("equals", typeValidation="loose"), "loose"),
        (filter_if("before", "dateTime"), "dateTime operation 'before'"),
    ],
)
def test_if_conditions_refused(data: dict[str, Any], reason: str) -> None:
    with pytest.raises(Untranslatable, match=reason):
        translate_step(data, resolve)


def test_outputs_and_retry() -> None:
    translation = translate_step(
        node(
            "H",
            "httpRequest",
            4.2,
            parameters={"url": "x"},
            onError="continueErrorOutput",
            retryOnFail=True,
        ),
        resolve,
    )
    assert translation.outputs == [{"next": 0, "onError": 1}]
    assert translation.bodies[0]["retry"] == {
        "limit": 2,
        "backoff": "fixed",
        "initialDelay": "1000ms",
    }
    assert translate_step(filter_if("equals"), resolve).outputs == [
        {"condition.then": 0, "condition.else": 1}
    ]


@pytest.mark.parametrize(
    ("data", "trigger"),
    [
        (node("M", "manualTrigger"), {"type": "manual"}),
        (
            node("H", "webhook", 2, parameters={"httpMethod": "POST", "path": "p"}),
            {"type": "webhook", "secretRef": {"name": "wf-webhook"}},
        ),
        (
            node(
                "S",
                "scheduleTrigger",
                1.2,
                parameters={"rule": {"interval": [{"triggerAtHour": 15}]}},
            ),
            {"type": "schedule", "schedule": "0 15 * * *"},
        ),
        (
            node(
                "S",
                "scheduleTrigger",
                1.2,
                parameters={"rule": {"interval": [{"field": "minutes", "minutesInterval": 10}]}},
            ),
            {"type": "schedule", "schedule": "*/10 * * * *"},
        ),
        (
            node(
                "S",
                "scheduleTrigger",
                1.2,
                parameters={
                    "rule": {
                        "interval": [
                            {
                                "field": "weeks",
                                "triggerAtDay": [1, 5],
                                "triggerAtHour": 8,
                                "triggerAtMinute": 30,
                            }
                        ]
                    }
                },
            ),
            {"type": "schedule", "schedule": "30 8 * * 1,5"},
        ),
        (
            node(
                "S",
                "scheduleTrigger",
                1.2,
                parameters={
                    "rule": {
                        "interval": [{"field": "cronExpression", "expression": "0 15 9 * * 1"}]
                    }
                },
            ),
            {"type": "schedule", "schedule": "15 9 * * 1"},
        ),
        (
            node(
                "S",
                "scheduleTrigger",
                1.2,
                parameters={"rule": {"interval": [{"field": "months", "triggerAtDayOfMonth": 3}]}},
            ),
            {"type": "schedule", "schedule": "0 0 3 * *"},
        ),
        (
            node(
                "C",
                "cron",
                1,
                parameters={"triggerTimes": {"item": [{"mode": "everyDay", "hour": 6}]}},
            ),
            {"type": "schedule", "schedule": "0 6 * * *"},
        ),
    ],
)
def test_triggers(data: dict[str, Any], trigger: dict[str, Any]) -> None:
    assert translate_trigger(data, "wf", None).bodies == [trigger]


def test_schedule_time_zone_comes_from_settings() -> None:
    data = node("S", "scheduleTrigger", 1.2, parameters={})
    translation = translate_trigger(data, "wf", "Europe/Berlin")
    assert translation.bodies == [
        {"type": "schedule", "schedule": "0 0 * * *", "timezone": "Europe/Berlin"}
    ]
    assert translate_trigger(data, "wf", None).notes  # UTC, said


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (
            node(
                "S",
                "scheduleTrigger",
                1.2,
                parameters={"rule": {"interval": [{"field": "seconds"}]}},
            ),
            "every seconds",
        ),
        (
            node("S", "scheduleTrigger", 1.2, parameters={"rule": {"interval": [{}, {}]}}),
            "several rules",
        ),
        (
            node(
                "S",
                "scheduleTrigger",
                1.2,
                parameters={"rule": {"interval": [{"field": "weeks", "weeksInterval": 2}]}},
            ),
            "every N weeks",
        ),
    ],
)
def test_triggers_refused(data: dict[str, Any], reason: str) -> None:
    with pytest.raises(Untranslatable, match=reason):
        translate_trigger(data, "wf", None)


def test_verbatim_step_keeps_everything_that_defines_the_node() -> None:
    data = node(
        "Slack",
        "slack",
        2.2,
        parameters={"text": "hi"},
        credentials={"slackApi": {"id": "1", "name": "S"}},
        notes="n",
    )
    assert n8n_step(data).bodies == [
        {
            "type": "n8n",
            "n8n": {
                "nodeType": "n8n-nodes-base.slack",
                "typeVersion": 2.2,
                "parameters": {"text": "hi"},
                "credentials": {"slackApi": {"id": "1", "name": "S"}},
            },
            "description": "n",
        }
    ]


def test_fresh_nodes_are_stable() -> None:
    a = fresh_step_node(
        {"id": "x", "type": "fail", "fail": {"message": "no ${ inputs.a }"}}, "wf", "x"
    )
    assert a == fresh_step_node(
        {"id": "x", "type": "fail", "fail": {"message": "no ${ inputs.a }"}}, "wf", "x"
    )
    assert a["parameters"] == {"errorMessage": "=no {{ inputs.a }}"}
    assert (
        fresh_trigger_node({"id": "go", "type": "manual"}, "wf", "go")["type"]
        == "n8n-nodes-base.manualTrigger"
    )
