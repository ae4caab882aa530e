from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.model.diff import (
    CHANGE_CLASSES,
    Change,
    WorkflowDiff,
    diff_specs,
    render_json,
    render_markdown,
    render_text,
    required_bump,
    unmapped_breaking_changes,
)

Spec = dict[str, Any]
Edit = Callable[[Spec], object]  # an in-place edit; what it returns is ignored

BASE: Spec = {
    "version": "1.4.0",
    "description": "Welcome a lead.",
    "inputs": {
        "type": "object",
        "required": ["email"],
        "properties": {
            "email": {"type": "string", "minLength": 3, "maxLength": 100},
            "plan": {"type": "string", "enum": ["free", "pro"]},
            "age": {"type": "number", "minimum": 0, "maximum": 150},
            "note": {"type": ["string", "null"], "description": "Free text."},
            "meta": {"type": "object", "additionalProperties": False},
            "extra": {"type": "object"},
            "anything": True,
        },
    },
    "settings": {"timeout": "7d"},
    "triggers": [
        {"id": "signup", "type": "webhook", "secretRef": {"name": "hook"}},
        {"id": "nightly", "type": "schedule", "schedule": "0 9 * * *"},
    ],
    "steps": [
        {
            "id": "welcome",
            "type": "http",
            "http": {
                "method": "POST",
                "url": "https://mail.example/send",
                "body": {"to": "${ inputs.email }", "flag": True},
            },
            "retry": {"limit": 3, "backoff": "exponential"},
            "onError": "goto:alert",
            "next": "wait-1d",
        },
        {"id": "wait-1d", "type": "wait", "wait": {"duration": "24h"}, "next": "opened"},
        {
            "id": "opened",
            "type": "condition",
            "condition": {
                "when": "steps.welcome.output.status == 200",
                "then": "follow-up",
                "else": "end",
            },
        },
        {
            "id": "follow-up",
            "type": "http",
            "http": {"url": "https://mail.example/follow"},
            "next": "done",
        },
        {"id": "done", "type": "log", "log": {"message": "done"}},
        {"id": "alert", "type": "fail", "fail": {"message": "welcome failed"}},
    ],
    "migrations": [{"from": ">=1.0.0 <1.4.0", "map": {"wait-2d": "wait-1d"}}],
}


def edit(*edits: Edit) -> Spec:
    spec = copy.deepcopy(BASE)
    for fn in edits:
        fn(spec)
    return spec


def step(spec: Spec, sid: str) -> dict[str, Any]:
    return next(s for s in spec["steps"] if s["id"] == sid)


def prop(spec: Spec, name: str) -> dict[str, Any]:
    result: dict[str, Any] = spec["inputs"]["properties"][name]
    return result


def trigger(spec: Spec, tid: str) -> dict[str, Any]:
    return next(t for t in spec["triggers"] if t["id"] == tid)


def remove_step(sid: str) -> Edit:
    return lambda s: s["steps"].remove(step(s, sid))


def rename_step(old: str, new: str) -> Edit:
    """Rename a step and every edge that pointed at it."""

    def fn(spec: Spec) -> None:
        for st_ in spec["steps"]:
            if st_["id"] == old:
                st_["id"] = new
            if st_.get("next") == old:
                st_["next"] = new
            if st_.get("onError") == f"goto:{old}":
                st_["onError"] = f"goto:{new}"
            for branch in ("then", "else"):
                if st_.get("condition", {}).get(branch) == old:
                    st_["condition"][branch] = new

    return fn


def setter(path: Callable[[Spec], dict[str, Any]], key: str, value: Any) -> Edit:
    def fn(spec: Spec) -> None:
        path(spec)[key] = value

    return fn


def deleter(path: Callable[[Spec], dict[str, Any]], key: str) -> Edit:
    return lambda spec: path(spec).pop(key)


def s_(sid: str) -> Callable[[Spec], dict[str, Any]]:
    return lambda spec: step(spec, sid)


def p_(name: str) -> Callable[[Spec], dict[str, Any]]:
    return lambda spec: prop(spec, name)


def t_(tid: str) -> Callable[[Spec], dict[str, Any]]:
    return lambda spec: trigger(spec, tid)


def http_(sid: str) -> Callable[[Spec], dict[str, Any]]:
    return lambda spec: step(spec, sid)["http"]


def cond(spec: Spec) -> dict[str, Any]:
    result: dict[str, Any] = step(spec, "opened")["condition"]
    return result


def inputs(spec: Spec) -> dict[str, Any]:
    result: dict[str, Any] = spec["inputs"]
    return result


def inputs_props(spec: Spec) -> dict[str, Any]:
    result: dict[str, Any] = spec["inputs"]["properties"]
    return result


def move_first(sid: str) -> Edit:
    def fn(spec: Spec) -> None:
        target = step(spec, sid)
        spec["steps"].remove(target)
        spec["steps"].insert(0, target)

    return fn


def swap(a: int, b: int) -> Edit:
    def fn(spec: Spec) -> None:
        spec["steps"][a], spec["steps"][b] = spec["steps"][b], spec["steps"][a]

    return fn


def add_step(new: dict[str, Any], first: bool = False) -> Edit:
    return lambda spec: spec["steps"].insert(0 if first else len(spec["steps"]), new)


def reordered_keys(spec: Spec) -> None:
    spec["steps"] = [dict(reversed(list(s.items()))) for s in spec["steps"]]
    spec["inputs"] = dict(reversed(list(spec["inputs"].items())))


Expected = list[tuple[str, str, str]]  # (kind, class, path)

# (id, edit of the old spec or None, edit of the new spec, expected changes)
CASES: list[tuple[str, Edit | None, Edit, Expected]] = [
    # --- nothing that matters
    ("identical", None, lambda s: None, []),
    ("version only", None, setter(lambda s: s, "version", "9.9.9"), []),
    ("key order", None, reordered_keys, []),
    ("later steps reordered", None, swap(4, 5), []),
    ("triggers reordered", None, lambda s: s["triggers"].reverse(), []),
    (
        "description",
        None,
        setter(lambda s: s, "description", "Welcome a new lead."),
        [("description-changed", "none", "spec.description")],
    ),
    (
        "step description",
        None,
        setter(s_("done"), "description", "Say so."),
        [("description-changed", "none", "spec.steps[done].description")],
    ),
    # --- steps removed / added / retyped
    (
        "step removed, predecessor re-wired",
        None,
        lambda s: (remove_step("done")(s), step(s, "follow-up").pop("next")),
        [
            ("step-removed", "breaking", "spec.steps[done]"),
            ("edge-changed", "fix", "spec.steps[follow-up].next"),
        ],
    ),
    (
        "step added at the end of a branch",
        None,
        lambda s: (
            add_step({"id": "audit", "type": "noop"})(s),
            setter(s_("done"), "next", "audit")(s),
        ),
        [
            ("step-added", "feature", "spec.steps[audit]"),
            ("edge-changed", "fix", "spec.steps[done].next"),
        ],
    ),
    (
        "step added with nothing leading to it",
        None,
        add_step({"id": "spare", "type": "noop"}),
        [("step-added", "feature", "spec.steps[spare]")],
    ),
    (
        "step retyped",
        None,
        lambda s: (
            setter(s_("wait-1d"), "type", "noop")(s),
            deleter(s_("wait-1d"), "wait")(s),
        ),
        [("step-retyped", "breaking", "spec.steps[wait-1d].type")],
    ),
    # --- renames
    (
        "pure rename",
        None,
        rename_step("wait-1d", "wait-one-day"),
        [("step-renamed", "breaking", "spec.steps[wait-1d].id")],
    ),
    (
        "rename of the entry step and a goto target",
        None,
        lambda s: (rename_step("welcome", "hello")(s), rename_step("alert", "alarm")(s)),
        [
            ("step-renamed", "breaking", "spec.steps[alert].id"),
            ("step-renamed", "breaking", "spec.steps[welcome].id"),
        ],
    ),
    (
        "two chained renames",
        None,
        lambda s: (rename_step("wait-1d", "w1")(s), rename_step("opened", "o1")(s)),
        [
            ("step-renamed", "breaking", "spec.steps[opened].id"),
            ("step-renamed", "breaking", "spec.steps[wait-1d].id"),
        ],
    ),
    (
        "rename plus description",
        None,
        lambda s: (
            rename_step("wait-1d", "wait-one-day")(s),
            setter(s_("wait-one-day"), "description", "Pause.")(s),
        ),
        [
            ("step-renamed", "breaking", "spec.steps[wait-1d].id"),
            ("description-changed", "none", "spec.steps[wait-one-day].description"),
        ],
    ),
    (
        "rename with other content is remove + add",
        None,
        lambda s: (
            rename_step("wait-1d", "wait-2d")(s),
            setter(lambda x: step(x, "wait-2d")["wait"], "duration", "48h")(s),
        ),
        [
            ("step-removed", "breaking", "spec.steps[wait-1d]"),
            ("step-added", "feature", "spec.steps[wait-2d]"),
            ("edge-changed", "fix", "spec.steps[welcome].next"),
        ],
    ),
    (
        "rename with a changed edge",
        None,
        lambda s: (
            rename_step("done", "finished")(s),
            setter(s_("finished"), "next", "alert")(s),
        ),
        [
            ("step-renamed", "breaking", "spec.steps[done].id"),
            ("edge-changed", "fix", "spec.steps[finished].next"),
        ],
    ),
    # --- configuration
    (
        "url",
        None,
        setter(http_("welcome"), "url", "https://mail.example/v2"),
        [("step-changed", "fix", "spec.steps[welcome].http.url")],
    ),
    (
        "body true becomes 1",
        None,
        setter(http_("welcome"), "body", {"to": "${ inputs.email }", "flag": 1}),
        [("step-changed", "fix", "spec.steps[welcome].http.body")],
    ),
    (
        "retry limit",
        None,
        setter(lambda s: step(s, "welcome")["retry"], "limit", 5),
        [("step-changed", "fix", "spec.steps[welcome].retry.limit")],
    ),
    (
        "retry added",
        None,
        setter(s_("follow-up"), "retry", {"limit": 2}),
        [("step-changed", "fix", "spec.steps[follow-up].retry")],
    ),
    (
        "timeout added",
        None,
        setter(s_("follow-up"), "timeout", "10s"),
        [("step-changed", "fix", "spec.steps[follow-up].timeout")],
    ),
    (
        "condition expression",
        None,
        setter(cond, "when", "steps.welcome.output.status == 202"),
        [("step-changed", "fix", "spec.steps[opened].condition.when")],
    ),
    (
        "onError mode",
        None,
        setter(s_("follow-up"), "onError", "continue"),
        [("step-changed", "fix", "spec.steps[follow-up].onError")],
    ),
    (
        "onError default written out",
        None,
        setter(s_("follow-up"), "onError", "fail"),
        [("step-changed", "none", "spec.steps[follow-up].onError")],
    ),
    # --- edges and reachability
    (
        "edge keeps every step reachable",
        None,
        setter(cond, "else", "done"),
        [("edge-changed", "fix", "spec.steps[opened].condition.else")],
    ),
    (
        "edge leaves a step unreachable",
        None,
        setter(cond, "then", "done"),
        [
            ("edge-changed", "breaking", "spec.steps[opened].condition.then"),
            ("step-unreachable", "breaking", "spec.steps[follow-up]"),
        ],
    ),
    (
        "dropped goto leaves its target unreachable",
        None,
        deleter(s_("welcome"), "onError"),
        [
            ("edge-changed", "breaking", "spec.steps[welcome].onError"),
            ("step-unreachable", "breaking", "spec.steps[alert]"),
        ],
    ),
    (
        "goto added",
        None,
        setter(s_("follow-up"), "onError", "goto:alert"),
        [("edge-changed", "fix", "spec.steps[follow-up].onError")],
    ),
    (
        "end written out",
        None,
        setter(s_("done"), "next", "end"),
        [("edge-changed", "none", "spec.steps[done].next")],
    ),
    (
        "step that was unreachable stays so",
        add_step({"id": "orphan", "type": "noop", "next": "done"}),
        setter(s_("orphan"), "next", "end"),
        [("edge-changed", "fix", "spec.steps[orphan].next")],
    ),
    (
        "new entry step leading to the old one",
        None,
        add_step({"id": "intro", "type": "noop", "next": "welcome"}, first=True),
        [
            ("step-added", "feature", "spec.steps[intro]"),
            ("entry-changed", "fix", "spec.steps"),
        ],
    ),
    (
        "entry moved strands the old start",
        None,
        move_first("wait-1d"),
        [
            ("entry-changed", "breaking", "spec.steps"),
            ("step-unreachable", "breaking", "spec.steps[alert]"),
            ("step-unreachable", "breaking", "spec.steps[welcome]"),
        ],
    ),
    # --- inputs
    (
        "existing input made required",
        None,
        lambda s: s["inputs"]["required"].append("plan"),
        [("input-required-added", "breaking", "spec.inputs.required[plan]")],
    ),
    (
        "new required input",
        None,
        lambda s: (
            setter(lambda x: x["inputs"]["properties"], "name", {"type": "string"})(s),
            s["inputs"]["required"].append("name"),
        ),
        [("input-required-added", "breaking", "spec.inputs.required[name]")],
    ),
    (
        "new optional input",
        None,
        setter(lambda x: x["inputs"]["properties"], "name", {"type": "string"}),
        [("input-optional-added", "feature", "spec.inputs.properties.name")],
    ),
    (
        "input removed",
        None,
        deleter(lambda x: x["inputs"]["properties"], "note"),
        [("input-removed", "breaking", "spec.inputs.properties.note")],
    ),
    (
        "required input removed altogether",
        None,
        lambda s: (s["inputs"]["properties"].pop("email"), s["inputs"].pop("required")),
        [("input-removed", "breaking", "spec.inputs.properties.email")],
    ),
    (
        "input made optional",
        None,
        setter(inputs, "required", []),
        [("input-made-optional", "feature", "spec.inputs.required[email]")],
    ),
    (
        "inputs appear where there were none",
        lambda s: s.pop("inputs"),
        setter(lambda s: s, "inputs", BASE["inputs"]),
        [
            ("input-optional-added", "feature", f"spec.inputs.properties.{name}")
            for name in ("age", "anything", "extra", "meta", "note", "plan")
        ]
        + [("input-required-added", "breaking", "spec.inputs.required[email]")],
    ),
    (
        "type loses null",
        None,
        setter(p_("note"), "type", "string"),
        [("input-type-narrowed", "breaking", "spec.inputs.properties.note.type")],
    ),
    (
        "type number to integer",
        None,
        setter(p_("age"), "type", "integer"),
        [("input-type-narrowed", "breaking", "spec.inputs.properties.age.type")],
    ),
    (
        "type integer to number",
        setter(p_("age"), "type", "integer"),
        setter(p_("age"), "type", "number"),
        [("input-type-widened", "feature", "spec.inputs.properties.age.type")],
    ),
    (
        "type gains null",
        None,
        setter(p_("email"), "type", ["string", "null"]),
        [("input-type-widened", "feature", "spec.inputs.properties.email.type")],
    ),
    (
        "type swapped counts as narrowed",
        None,
        setter(p_("email"), "type", "number"),
        [("input-type-narrowed", "breaking", "spec.inputs.properties.email.type")],
    ),
    (
        "type constrained from any",
        None,
        setter(lambda x: x["inputs"]["properties"], "anything", {"type": "string"}),
        [("input-type-narrowed", "breaking", "spec.inputs.properties.anything.type")],
    ),
    (
        "type spelled as a list",
        None,
        setter(p_("email"), "type", ["string"]),
        [("input-changed", "none", "spec.inputs.properties.email.type")],
    ),
    (
        "enum loses a value",
        None,
        setter(p_("plan"), "enum", ["free"]),
        [("input-type-narrowed", "breaking", "spec.inputs.properties.plan.enum")],
    ),
    (
        "enum gains a value",
        None,
        setter(p_("plan"), "enum", ["free", "pro", "team"]),
        [("input-type-widened", "feature", "spec.inputs.properties.plan.enum")],
    ),
    (
        "enum removed",
        None,
        deleter(p_("plan"), "enum"),
        [("input-type-widened", "feature", "spec.inputs.properties.plan.enum")],
    ),
    (
        "enum reordered",
        None,
        setter(p_("plan"), "enum", ["pro", "free"]),
        [("input-changed", "none", "spec.inputs.properties.plan.enum")],
    ),
    (
        "maxLength lowered",
        None,
        setter(p_("email"), "maxLength", 50),
        [("input-type-narrowed", "breaking", "spec.inputs.properties.email.maxLength")],
    ),
    (
        "maxLength raised",
        None,
        setter(p_("email"), "maxLength", 200),
        [("input-type-widened", "feature", "spec.inputs.properties.email.maxLength")],
    ),
    (
        "maxLength dropped",
        None,
        deleter(p_("email"), "maxLength"),
        [("input-type-widened", "feature", "spec.inputs.properties.email.maxLength")],
    ),
    (
        "maxLength as float with the same value",
        None,
        setter(p_("email"), "maxLength", 100.0),
        [("input-changed", "none", "spec.inputs.properties.email.maxLength")],
    ),
    (
        "minLength raised",
        None,
        setter(p_("email"), "minLength", 5),
        [("input-type-narrowed", "breaking", "spec.inputs.properties.email.minLength")],
    ),
    (
        "minLength lowered",
        None,
        setter(p_("email"), "minLength", 1),
        [("input-type-widened", "feature", "spec.inputs.properties.email.minLength")],
    ),
    (
        "maximum lowered and minimum raised",
        None,
        lambda s: (setter(p_("age"), "maximum", 120)(s), setter(p_("age"), "minimum", 18)(s)),
        [
            ("input-type-narrowed", "breaking", "spec.inputs.properties.age.maximum"),
            ("input-type-narrowed", "breaking", "spec.inputs.properties.age.minimum"),
        ],
    ),
    (
        "bound added",
        None,
        setter(p_("extra"), "maxProperties", 5),
        [("input-type-narrowed", "breaking", "spec.inputs.properties.extra.maxProperties")],
    ),
    (
        "additionalProperties becomes false",
        None,
        setter(p_("extra"), "additionalProperties", False),
        [("input-type-narrowed", "breaking", "spec.inputs.properties.extra.additionalProperties")],
    ),
    (
        "additionalProperties no longer false",
        None,
        deleter(p_("meta"), "additionalProperties"),
        [("input-type-widened", "feature", "spec.inputs.properties.meta.additionalProperties")],
    ),
    (
        "additionalProperties false on the inputs themselves",
        None,
        setter(inputs, "additionalProperties", False),
        [("input-type-narrowed", "breaking", "spec.inputs.additionalProperties")],
    ),
    (
        "boolean schema false",
        None,
        setter(lambda x: x["inputs"]["properties"], "anything", False),
        [("input-type-narrowed", "breaking", "spec.inputs.properties.anything")],
    ),
    (
        "pattern added narrows",
        None,
        setter(p_("email"), "pattern", "^.+@.+$"),
        [("input-type-narrowed", "breaking", "spec.inputs.properties.email.pattern")],
    ),
    (
        "pattern changed narrows",
        setter(p_("email"), "pattern", "^.+@.+$"),
        setter(p_("email"), "pattern", "^.+@example[.]com$"),
        [("input-type-narrowed", "breaking", "spec.inputs.properties.email.pattern")],
    ),
    (
        "pattern removed widens",
        setter(p_("email"), "pattern", "^.+@.+$"),
        deleter(p_("email"), "pattern"),
        [("input-type-widened", "feature", "spec.inputs.properties.email.pattern")],
    ),
    (
        "const added narrows",
        None,
        setter(p_("plan"), "const", "pro"),
        [("input-type-narrowed", "breaking", "spec.inputs.properties.plan.const")],
    ),
    (
        "const removed widens",
        setter(p_("plan"), "const", "pro"),
        deleter(p_("plan"), "const"),
        [("input-type-widened", "feature", "spec.inputs.properties.plan.const")],
    ),
    (
        "format added narrows",
        None,
        setter(p_("email"), "format", "email"),
        [("input-type-narrowed", "breaking", "spec.inputs.properties.email.format")],
    ),
    (
        "format removed widens",
        setter(p_("email"), "format", "email"),
        deleter(p_("email"), "format"),
        [("input-type-widened", "feature", "spec.inputs.properties.email.format")],
    ),
    (
        "uniqueItems false written out",
        setter(inputs_props, "tags", {"type": "array"}),
        setter(p_("tags"), "uniqueItems", False),
        [("input-changed", "none", "spec.inputs.properties.tags.uniqueItems")],
    ),
    (
        "items added narrows",
        setter(inputs_props, "tags", {"type": "array"}),
        setter(p_("tags"), "items", {"type": "integer"}),
        [("input-type-narrowed", "breaking", "spec.inputs.properties.tags.items.type")],
    ),
    (
        "items narrowed",
        setter(inputs_props, "tags", {"type": "array", "items": {"type": "number"}}),
        setter(p_("tags"), "items", {"type": "integer"}),
        [("input-type-narrowed", "breaking", "spec.inputs.properties.tags.items.type")],
    ),
    (
        "items widened",
        setter(inputs_props, "tags", {"type": "array", "items": {"type": "integer"}}),
        setter(p_("tags"), "items", {"type": "number"}),
        [("input-type-widened", "feature", "spec.inputs.properties.tags.items.type")],
    ),
    (
        "items removed widens",
        setter(inputs_props, "tags", {"type": "array", "items": {"type": "integer"}}),
        deleter(p_("tags"), "items"),
        [("input-type-widened", "feature", "spec.inputs.properties.tags.items.type")],
    ),
    (
        "minItems and maxItems added narrow",
        setter(inputs_props, "tags", {"type": "array"}),
        lambda s: (setter(p_("tags"), "minItems", 1)(s), setter(p_("tags"), "maxItems", 9)(s)),
        [
            ("input-type-narrowed", "breaking", "spec.inputs.properties.tags.maxItems"),
            ("input-type-narrowed", "breaking", "spec.inputs.properties.tags.minItems"),
        ],
    ),
    (
        "nested required added narrows",
        setter(inputs_props, "addr", {"type": "object", "properties": {"zip": {"type": "string"}}}),
        setter(p_("addr"), "required", ["zip"]),
        [("input-type-narrowed", "breaking", "spec.inputs.properties.addr.required")],
    ),
    (
        "nested required removed widens",
        setter(
            inputs_props,
            "addr",
            {"type": "object", "required": ["zip"], "properties": {"zip": {"type": "string"}}},
        ),
        deleter(p_("addr"), "required"),
        [("input-type-widened", "feature", "spec.inputs.properties.addr.required")],
    ),
    (
        "nested property narrowed",
        setter(inputs_props, "addr", {"type": "object", "properties": {"zip": {"type": "string"}}}),
        setter(lambda s: prop(s, "addr")["properties"], "zip", {"type": "string", "maxLength": 5}),
        [
            (
                "input-type-narrowed",
                "breaking",
                "spec.inputs.properties.addr.properties.zip.maxLength",
            )
        ],
    ),
    (
        "nested property added to an open object narrows",
        setter(inputs_props, "addr", {"type": "object"}),
        setter(p_("addr"), "properties", {"zip": {"type": "string"}}),
        [("input-type-narrowed", "breaking", "spec.inputs.properties.addr.properties.zip")],
    ),
    (
        "nested property removed from an open object widens",
        setter(inputs_props, "addr", {"type": "object", "properties": {"zip": {"type": "string"}}}),
        deleter(p_("addr"), "properties"),
        [("input-type-widened", "feature", "spec.inputs.properties.addr.properties.zip")],
    ),
    (
        "nested property removed from a closed object narrows",
        setter(
            inputs_props,
            "addr",
            {"type": "object", "properties": {"zip": {}}, "additionalProperties": False},
        ),
        setter(p_("addr"), "properties", {}),
        [("input-type-narrowed", "breaking", "spec.inputs.properties.addr.properties.zip")],
    ),
    (
        "nested property added to a closed object widens",
        setter(inputs_props, "addr", {"type": "object", "additionalProperties": False}),
        setter(p_("addr"), "properties", {"zip": {"type": "string"}}),
        [("input-type-widened", "feature", "spec.inputs.properties.addr.properties.zip")],
    ),
    (
        "input description",
        None,
        setter(p_("note"), "description", "Anything."),
        [("description-changed", "none", "spec.inputs.properties.note.description")],
    ),
    (
        "inputs title",
        None,
        setter(inputs, "title", "Lead"),
        [("description-changed", "none", "spec.inputs.title")],
    ),
    # --- triggers
    (
        "trigger removed",
        None,
        lambda s: s["triggers"].pop(),
        [("trigger-removed", "breaking", "spec.triggers[nightly]")],
    ),
    (
        "trigger retyped",
        None,
        lambda s: (
            setter(t_("signup"), "type", "manual")(s),
            deleter(t_("signup"), "secretRef")(s),
        ),
        [("trigger-retyped", "breaking", "spec.triggers[signup].type")],
    ),
    (
        "trigger added",
        None,
        lambda s: s["triggers"].append({"id": "by-hand", "type": "manual"}),
        [("trigger-added", "feature", "spec.triggers[by-hand]")],
    ),
    (
        "trigger schedule",
        None,
        setter(t_("nightly"), "schedule", "0 8 * * *"),
        [("trigger-changed", "fix", "spec.triggers[nightly].schedule")],
    ),
    # --- settings and migrations
    (
        "settings timeout",
        None,
        setter(lambda s: s["settings"], "timeout", "14d"),
        [("settings-changed", "fix", "spec.settings.timeout")],
    ),
    (
        "settings removed",
        None,
        lambda s: s.pop("settings"),
        [("settings-changed", "fix", "spec.settings.timeout")],
    ),
    (
        "migration map",
        None,
        setter(lambda s: s["migrations"][0], "map", {"wait-2d": "opened"}),
        [("migration-changed", "fix", "spec.migrations[>=1.0.0 <1.4.0]")],
    ),
    (
        "migration added",
        None,
        lambda s: s["migrations"].append({"from": "^1.4.0", "map": {}}),
        [("migration-changed", "fix", "spec.migrations[^1.4.0]")],
    ),
]


@pytest.mark.parametrize(
    ("old_edit", "new_edit", "expected"),
    [pytest.param(o, n, e, id=i) for i, o, n, e in CASES],
)
def test_classification(old_edit: Edit | None, new_edit: Edit, expected: Expected) -> None:
    old = edit(old_edit) if old_edit else copy.deepcopy(BASE)
    new = copy.deepcopy(old)
    new_edit(new)
    diff = diff_specs(old, new)
    got = sorted((c.kind, c.change_class, c.path) for c in diff.changes)
    assert got == sorted(expected)


def test_change_class_is_the_worst_and_order_is_severity_then_path() -> None:
    new = edit(
        setter(http_("welcome"), "url", "https://x.example"),
        remove_step("done"),
        lambda s: step(s, "follow-up").pop("next"),
        setter(lambda s: s, "description", "x"),
        lambda s: s["triggers"].append({"id": "by-hand", "type": "manual"}),
    )
    diff = diff_specs(BASE, new)
    assert diff.change_class == "breaking"
    assert [(c.change_class, c.path) for c in diff.changes] == [
        ("breaking", "spec.steps[done]"),
        ("feature", "spec.triggers[by-hand]"),
        ("fix", "spec.steps[follow-up].next"),
        ("fix", "spec.steps[welcome].http.url"),
        ("none", "spec.description"),
    ]
    assert [c.path for c in diff.breaking] == ["spec.steps[done]"]
    groups = diff.by_class()
    assert list(groups) == list(CHANGE_CLASSES)
    assert [len(groups[c]) for c in CHANGE_CLASSES] == [1, 1, 2, 1]


@pytest.mark.parametrize(
    ("new_edit", "expected"),
    [
        (setter(http_("welcome"), "url", "https://x.example"), "fix"),
        (lambda s: s["triggers"].append({"id": "by-hand", "type": "manual"}), "feature"),
        (setter(lambda s: s, "description", "x"), "none"),
        (lambda s: None, "none"),
    ],
)
def test_change_class(new_edit: Edit, expected: str) -> None:
    diff = diff_specs(BASE, edit(new_edit))
    assert diff.change_class == expected
    assert not diff.breaking


def test_workflow_diff_sorts_whatever_it_is_given() -> None:
    a = Change("step-changed", "spec.steps[b].x", "fix", "b")
    b = Change("step-removed", "spec.steps[z]", "breaking", "z")
    c = Change("step-changed", "spec.steps[a].x", "fix", "a")
    diff = WorkflowDiff((a, b, c))
    assert diff.changes == (b, c, a)
    assert WorkflowDiff().change_class == "none"


@pytest.mark.parametrize(
    ("kind", "cls"), [("StepRemoved", "breaking"), ("step-removed", "major"), ("-x", "fix")]
)
def test_change_rejects_bad_kind_or_class(kind: str, cls: str) -> None:
    with pytest.raises(ValueError):
        Change(kind, "spec", cls, "why")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("cls", "bump"),
    [("breaking", "major"), ("feature", "minor"), ("fix", "patch"), ("none", "none")],
)
def test_required_bump(cls: str, bump: str) -> None:
    assert required_bump(cls) == bump


def test_required_bump_rejects_unknown_class() -> None:
    with pytest.raises(ValueError, match="is not one of breaking, feature, fix, none"):
        required_bump("major")


# --------------------------------------------------------------------------- details


def only(diff: WorkflowDiff) -> Change:
    assert len(diff.changes) == 1, diff.changes
    return diff.changes[0]


def test_removed_step_values_and_reason() -> None:
    new = edit(remove_step("alert"), deleter(s_("welcome"), "onError"))
    removed = next(c for c in diff_specs(BASE, new).changes if c.kind == "step-removed")
    assert removed.reason == "step alert removed: runs parked on it cannot continue"
    assert removed.old == step(BASE, "alert") and removed.new is None
    assert removed.step_id == "alert"


def test_rename_values_name_the_old_id() -> None:
    change = only(diff_specs(BASE, edit(rename_step("wait-1d", "wait-one-day"))))
    assert (change.old, change.new, change.step_id) == ("wait-1d", "wait-one-day", "wait-1d")
    assert change.reason == (
        "step wait-1d renamed to wait-one-day with the same wait configuration: "
        "runs parked on wait-1d need a migration mapping"
    )


def test_look_alike_renames_pair_in_document_order() -> None:
    old = edit(
        add_step({"id": "a", "type": "noop"}),
        add_step({"id": "b", "type": "noop"}),
    )
    new = edit(
        add_step({"id": "x", "type": "noop"}),
        add_step({"id": "y", "type": "noop"}),
    )
    renames = [(c.old, c.new) for c in diff_specs(old, new).changes]
    assert renames == [("a", "x"), ("b", "y")]


def test_scalar_reasons_quote_both_values() -> None:
    change = only(diff_specs(BASE, edit(setter(http_("welcome"), "url", "https://v2.example"))))
    assert change.reason == (
        'step welcome: http.url changed from "https://mail.example/send" to "https://v2.example"'
    )
    assert (change.old, change.new, change.step_id) == (
        "https://mail.example/send",
        "https://v2.example",
        "welcome",
    )


def test_large_values_name_the_places_that_differ() -> None:
    long = "x" * 80
    old = edit(setter(http_("welcome"), "body", {"to": long, "cc": [long, "a"], "bcc": long}))
    new = edit(setter(http_("welcome"), "body", {"to": long + "!", "cc": [long, "b"], "z": 1}))
    change = only(diff_specs(old, new))
    assert change.reason == "step welcome: http.body changed at bcc, cc[1], to and 1 more"


def test_edge_reasons() -> None:
    stranded = diff_specs(BASE, edit(setter(cond, "then", "done")))
    edge = next(c for c in stranded.changes if c.kind == "edge-changed")
    assert edge.reason == (
        "step opened: condition.then now goes to step done instead of step follow-up, "
        "which leaves step follow-up unreachable"
    )
    unreachable = next(c for c in stranded.changes if c.kind == "step-unreachable")
    assert unreachable.step_id == "follow-up"
    kept = only(diff_specs(BASE, edit(setter(cond, "else", "done"))))
    assert (
        kept.reason == "step opened: condition.else now goes to step done instead of ending the run"
    )
    old = edit(setter(s_("alert"), "next", "done"))  # done is also reached from alert
    kept = only(
        diff_specs(
            old, edit(setter(s_("alert"), "next", "done"), setter(s_("follow-up"), "next", "alert"))
        )
    )
    assert kept.reason.endswith("instead of step done, which stays reachable")
    old = edit(
        add_step({"id": "a", "type": "noop", "next": "b"}), add_step({"id": "b", "type": "noop"})
    )
    new = copy.deepcopy(old)
    step(new, "a")["next"] = "done"
    assert only(diff_specs(old, new)).reason == (
        "step a: next now goes to step done instead of step b, which was unreachable already"
    )


def test_on_error_reasons_say_what_a_failure_now_does() -> None:
    changes = diff_specs(BASE, edit(setter(s_("welcome"), "onError", "fail"))).changes
    fails = next(c for c in changes if c.kind == "edge-changed")
    assert fails.reason == (
        "step welcome: onError now fails the run instead of going to step alert, "
        "which leaves step alert unreachable"
    )
    goes = only(diff_specs(BASE, edit(setter(s_("follow-up"), "onError", "goto:alert"))))
    assert (
        goes.reason == "step follow-up: onError now goes to step alert instead of failing the run"
    )
    old = edit(setter(s_("follow-up"), "onError", "continue"))
    goes = only(diff_specs(old, edit(setter(s_("follow-up"), "onError", "goto:alert"))))
    assert goes.reason.endswith("now goes to step alert instead of continuing with next")
    old = edit(setter(s_("follow-up"), "onError", "goto:alert"))
    back = only(diff_specs(old, edit(setter(s_("follow-up"), "onError", "continue"))))
    assert back.reason == (
        "step follow-up: onError now continues with next instead of going to step alert, "
        "which stays reachable"
    )
    assert "end of the run" not in fails.reason + goes.reason + back.reason


def test_narrowing_reasons_name_the_input_and_keyword() -> None:
    narrowed = only(diff_specs(BASE, edit(setter(p_("plan"), "const", "pro"))))
    assert narrowed.reason == (
        'input plan: const added ("pro"); runs started with values the old version accepted '
        "may fail"
    )
    old = edit(setter(p_("email"), "pattern", "^a"))
    changed = only(diff_specs(old, edit(setter(p_("email"), "pattern", "^b"))))
    assert changed.reason.startswith('input email: pattern changed ("^b") (was "^a");')
    widened = only(diff_specs(old, edit()))
    assert widened.reason == 'input email: pattern removed (was "^a")'
    old = edit(setter(inputs_props, "tags", {"type": "array"}))
    new = edit(setter(inputs_props, "tags", {"type": "array", "items": {"type": "integer"}}))
    items = only(diff_specs(old, new))
    assert items.reason.startswith('input tags items: type changed from any to "integer"')
    old = edit(setter(inputs_props, "addr", {"type": "object"}))
    new = edit(setter(inputs_props, "addr", {"type": "object", "required": ["zip", "city"]}))
    assert only(diff_specs(old, new)).reason.startswith("input addr: required gained zip, city;")


def test_input_reasons() -> None:
    narrowed = only(diff_specs(BASE, edit(setter(p_("plan"), "enum", ["free"]))))
    assert narrowed.reason == (
        'input plan: enum lost ["pro"]; runs started with values the old version accepted may fail'
    )
    widened = only(diff_specs(BASE, edit(setter(p_("note"), "type", ["string", "null", "number"]))))
    assert widened.reason.endswith("now also accepting number")


def test_diff_does_not_alias_or_mutate_its_inputs() -> None:
    old, new = edit(), edit(remove_step("alert"), deleter(s_("welcome"), "onError"))
    before_old, before_new = copy.deepcopy(old), copy.deepcopy(new)
    diff = diff_specs(old, new)
    assert (old, new) == (before_old, before_new)
    step(old, "alert")["fail"]["message"] = "changed later"
    removed = next(c for c in diff.changes if c.kind == "step-removed")
    assert removed.old["fail"]["message"] == "welcome failed"


def test_nan_equals_itself() -> None:
    old = edit(setter(http_("welcome"), "body", {"x": float("nan")}))
    new = edit(setter(http_("welcome"), "body", {"x": float("nan")}))
    assert diff_specs(old, new).changes == ()


# --------------------------------------------------------------------------- migrations


def breaking_release(*migrations: dict[str, Any]) -> Spec:
    """wait-1d replaced by wait-2d, follow-up renamed, alert retyped (with a new fail step)."""

    def fn(spec: Spec) -> None:
        rename_step("wait-1d", "wait-2d")(spec)
        step(spec, "wait-2d")["wait"]["duration"] = "48h"
        rename_step("follow-up", "follow-up-2")(spec)
        alert = step(spec, "alert")
        alert["type"], alert["log"] = "log", {"message": "failed"}
        del alert["fail"]
        alert["next"] = "alert-v2"
        spec["steps"].append({"id": "alert-v2", "type": "fail", "fail": {"message": "x"}})
        spec["inputs"]["required"].append("plan")
        spec["migrations"] = list(migrations)

    return edit(fn)


FULL_MAP = {"wait-1d": "wait-2d", "follow-up": "follow-up-2", "alert": "alert-v2"}
ALL = ["alert", "follow-up", "wait-1d"]


@pytest.mark.parametrize(
    ("migrations", "old_version", "unmapped"),
    [
        pytest.param([], "1.4.0", ALL, id="no migrations"),
        pytest.param([{"from": ">=1.0.0 <2.0.0", "map": FULL_MAP}], "1.4.0", [], id="covered"),
        pytest.param([{"from": "<1.4.0", "map": FULL_MAP}], "1.4.0", ALL, id="wrong range"),
        pytest.param([{"from": "^1.4.0", "map": FULL_MAP}], "1.3.9", ALL, id="older version"),
        pytest.param(
            [{"from": "1.x", "map": {**FULL_MAP, "wait-1d": "nope"}}],
            "1.4.0",
            ["wait-1d"],
            id="target missing",
        ),
        pytest.param(
            [{"from": "1.x", "map": {**FULL_MAP, "wait-1d": "welcome", "alert": "alert"}}],
            "1.4.0",
            ["alert", "wait-1d"],
            id="target of other type",
        ),
        pytest.param(
            [{"from": "1.x", "map": {"follow-up": "follow-up-2"}}],
            "1.4.0",
            ["alert", "wait-1d"],
            id="partial map",
        ),
        pytest.param(
            [
                {"from": "<1.0.0", "map": FULL_MAP},
                {"from": "~1.4.0", "map": {"wait-1d": "wait-2d"}},
                {"from": ">=1.2.0", "map": {"alert": "alert-v2", "follow-up": "follow-up-2"}},
            ],
            "1.4.0",
            [],
            id="entries combine",
        ),
        pytest.param(
            [{"from": "not a range", "map": FULL_MAP}], "1.4.0", ALL, id="bad range covers nothing"
        ),
        pytest.param(
            [{"from": ">=1.0.0 <2.0.0", "map": FULL_MAP}],
            "1.4.0-rc.1",
            ALL,
            id="pre-release needs a pre-release range",
        ),
        pytest.param(
            [{"from": ">=1.4.0-rc.0 <2.0.0", "map": FULL_MAP}], "1.4.0-rc.1", [], id="pre-release"
        ),
        pytest.param([{"from": "1.x"}], "1.4.0", ALL, id="no map"),
    ],
)
def test_unmapped_breaking_changes(
    migrations: list[dict[str, Any]], old_version: str, unmapped: list[str]
) -> None:
    new = breaking_release(*migrations)
    diff = diff_specs(BASE, new)
    assert sorted(c.kind for c in diff.breaking) == [
        "input-required-added",
        "step-removed",
        "step-renamed",
        "step-retyped",
    ]
    got = unmapped_breaking_changes(diff, new, old_version)
    # The new required input can never be answered by a migration.
    assert [c.kind for c in got if c.step_id is None] == ["input-required-added"]
    assert sorted(c.step_id for c in got if c.step_id is not None) == unmapped


def test_unmapped_lists_breaking_changes_no_migration_can_cover() -> None:
    new = edit(
        lambda s: s["triggers"].pop(),
        lambda s: s["inputs"]["required"].append("plan"),
        setter(cond, "then", "done"),
        setter(lambda s: s["migrations"][0], "from", "*"),
        setter(lambda s: s["migrations"][0], "map", {"follow-up": "follow-up", "nightly": "x"}),
    )
    diff = diff_specs(BASE, new)
    assert len(diff.breaking) == 4
    assert unmapped_breaking_changes(diff, new, "1.4.0") == list(diff.breaking)


def test_unmapped_is_empty_without_breaking_changes() -> None:
    new = edit(setter(http_("welcome"), "url", "https://x.example"))
    assert unmapped_breaking_changes(diff_specs(BASE, new), new, "1.4.0") == []


def test_unmapped_rejects_a_bad_version() -> None:
    with pytest.raises(ValueError, match="is not a semantic version"):
        unmapped_breaking_changes(WorkflowDiff(), BASE, "v1")


# --------------------------------------------------------------------------- renderers

SMALL_NEW = edit(
    remove_step("done"),
    lambda s: step(s, "follow-up").pop("next"),
    setter(http_("welcome"), "url", "https://mail.example/a|b"),
    setter(lambda s: s, "description", "Welcome a lead *quickly*."),
)
SMALL = diff_specs(BASE, SMALL_NEW)


def test_render_text_golden() -> None:
    assert render_text(SMALL, "lead-nurture", "1.4.0", "2.0.0") == (
        "lead-nurture 1.4.0 → 2.0.0\n"
        "breaking (1)\n"
        "  ~ spec.steps[done]: step done removed: runs parked on it cannot continue\n"
        "fix (2)\n"
        "  ~ spec.steps[follow-up].next: step follow-up: next now goes to the end of the run "
        "instead of step done, which was removed\n"
        "  ~ spec.steps[welcome].http.url: step welcome: http.url changed from "
        '"https://mail.example/send" to "https://mail.example/a|b"\n'
        "none (1)\n"
        '  ~ spec.description: description changed from "Welcome a lead." to '
        '"Welcome a lead *quickly*." (text only)\n'
        "breaking: requires a major bump (1.4.0 → 2.0.0)\n"
    )


def test_render_text_color_strips_to_plain() -> None:
    colored = render_text(SMALL, "lead-nurture", "1.4.0", "2.0.0", color=True)
    assert "\x1b[31m" in colored
    plain = render_text(SMALL, "lead-nurture", "1.4.0", "2.0.0")
    assert re.sub(r"\x1b\[[0-9;]*m", "", colored) == plain
    assert "\x1b[" not in plain


@pytest.mark.parametrize(
    ("new_edit", "to", "summary"),
    [
        (lambda s: None, "1.4.1", "none: no version bump required (1.4.0 → 1.4.1)"),
        (
            setter(http_("welcome"), "url", "https://x.example"),
            "1.4.1",
            "fix: requires a patch bump (1.4.0 → 1.4.1)",
        ),
        (
            setter(http_("welcome"), "url", "https://x.example"),
            "1.4.0",
            "fix: requires a patch bump (1.4.0 → 1.4.0 is no bump)",
        ),
        (  # more than needed: said so, not "requires a patch bump (1.4.0 → 1.5.0)"
            setter(http_("welcome"), "url", "https://x.example"),
            "1.5.0",
            "fix: requires a patch bump or more (1.4.0 → 1.5.0, a minor bump)",
        ),
        (
            remove_step("alert"),
            "1.5.0",
            "breaking: requires a major bump (1.4.0 → 1.5.0 is only a minor bump)",
        ),
        (
            lambda s: s["triggers"].append({"id": "m", "type": "manual"}),
            "1.3.0",
            "feature: requires a minor bump (1.4.0 → 1.3.0 is a downgrade)",
        ),
        (
            lambda s: s["triggers"].append({"id": "m", "type": "manual"}),
            "next",
            "feature: requires a minor bump (1.4.0 → next)",
        ),
    ],
)
def test_render_text_summary(new_edit: Edit, to: str, summary: str) -> None:
    out = render_text(diff_specs(BASE, edit(new_edit)), "w", "1.4.0", to)
    assert out.splitlines()[-1] == summary


def test_render_text_no_changes() -> None:
    assert render_text(WorkflowDiff(), "w", "1.0.0", "1.0.1") == (
        "w 1.0.0 → 1.0.1\n  no changes\nnone: no version bump required (1.0.0 → 1.0.1)\n"
    )


def test_render_markdown_golden() -> None:
    assert render_markdown(SMALL, "lead-nurture", "1.4.0", "2.0.0") == (
        "### lead-nurture 1.4.0 → 2.0.0\n"
        "\n"
        "**breaking: requires a major bump (1.4.0 → 2.0.0)**\n"
        "\n"
        "| Class | Change | Where | Why |\n"
        "| --- | --- | --- | --- |\n"
        "| breaking | `step-removed` | `spec.steps[done]` | step done removed: runs parked on it "
        "cannot continue |\n"
        "| fix | `edge-changed` | `spec.steps[follow-up].next` | step follow-up: next now goes "
        "to the end of the run instead of step done, which was removed |\n"
        "| fix | `step-changed` | `spec.steps[welcome].http.url` | step welcome: http.url "
        'changed from "https://mail.example/send" to "https://mail.example/a\\|b" |\n'
        "| none | `description-changed` | `spec.description` | description changed from "
        '"Welcome a lead." to "Welcome a lead \\*quickly\\*." (text only) |\n'
    )


def test_render_markdown_escapes_pipes_in_paths_and_no_changes() -> None:
    change = Change("spec-changed", 'spec["a|b"]', "fix", "x | y\nz <b> ${ q }")
    out = render_markdown(WorkflowDiff((change,)), "w", "1.0.0", "1.0.1")
    row = out.splitlines()[-1]
    assert row == '| fix | `spec-changed` | `spec["a\\|b"]` | x \\| y z \\<b\\> \\${ q } |'
    assert row.count("|") - row.count("\\|") == 5  # four cells, nothing leaking
    empty = render_markdown(WorkflowDiff(), "w", "1.0.0", "1.0.1")
    assert empty.endswith("No changes.\n")


def test_render_json() -> None:
    document = json.loads(render_json(SMALL, "lead-nurture", "1.4.0", "2.0.0"))
    assert list(document) == ["workflow", "from", "to", "changeClass", "requiredBump", "changes"]
    assert document["changeClass"] == "breaking" and document["requiredBump"] == "major"
    assert [list(c) for c in document["changes"]] == [
        ["kind", "class", "path", "stepId", "reason", "old", "new"]
    ] * 4
    first = document["changes"][0]
    assert (first["kind"], first["stepId"], first["new"]) == ("step-removed", "done", None)
    assert first["old"] == step(BASE, "done")
    assert render_json(SMALL, "lead-nurture", "1.4.0", "2.0.0") == render_json(
        diff_specs(BASE, SMALL_NEW), "lead-nurture", "1.4.0", "2.0.0"
    )


# --------------------------------------------------------------------------- properties

IDS = st.from_regex(r"[a-z][a-z0-9-]{0,5}", fullmatch=True)
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.floats(allow_nan=True, allow_infinity=False)
    | st.text(max_size=4),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)
PROPERTY = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["string", "number", "integer", ["string", "null"]]),
        "enum": st.lists(JSON, max_size=3),
        "maxLength": st.integers(0, 9),
        "minimum": st.integers(-3, 3),
        "additionalProperties": st.booleans(),
        "description": st.text(max_size=5),
    },
)


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    ids = draw(st.lists(IDS, min_size=1, max_size=8, unique=True))
    targets = st.sampled_from([*ids, "end"])
    steps = []
    for sid in ids:
        kind = draw(st.sampled_from(["http", "wait", "condition", "set", "fail", "noop", "log"]))
        new: dict[str, Any] = {"id": sid, "type": kind}
        if kind == "http":
            new["http"] = {
                "url": draw(st.sampled_from(["https://a", "https://b"])),
                "body": draw(JSON),
            }
        elif kind == "wait":
            new["wait"] = {"duration": draw(st.sampled_from(["1h", "2d"]))}
        elif kind == "condition":
            new["condition"] = {"when": "inputs.x == 1"}
            for branch in draw(st.sets(st.sampled_from(["then", "else"]))):
                new["condition"][branch] = draw(targets)
        elif kind == "set":
            new["set"] = draw(st.dictionaries(IDS, st.just("1 + 1"), max_size=2))
        elif kind in ("fail", "log"):
            new[kind] = {"message": draw(st.text(max_size=4))}
        if kind != "condition" and draw(st.booleans()):
            new["next"] = draw(targets)
        if draw(st.booleans()):
            new["onError"] = draw(
                st.sampled_from(["fail", "continue", *(f"goto:{i}" for i in ids)])
            )
        if draw(st.booleans()):
            new["retry"] = {"limit": draw(st.integers(0, 3))}
        steps.append(new)
    spec: Spec = {"version": "1.0.0", "steps": steps}
    if draw(st.booleans()):
        names = draw(st.lists(IDS, max_size=4, unique=True))
        spec["inputs"] = {
            "type": "object",
            "properties": {n: draw(PROPERTY) for n in names},
            "required": draw(st.lists(st.sampled_from(names), unique=True)) if names else [],
        }
    if draw(st.booleans()):
        spec["triggers"] = [
            {"id": t, "type": draw(st.sampled_from(["manual", "webhook"]))}
            for t in draw(st.lists(IDS, max_size=3, unique=True))
        ]
    if draw(st.booleans()):
        spec["migrations"] = [{"from": "^1.0.0", "map": {ids[0]: ids[-1]}}]
    return spec


@settings(max_examples=200, deadline=None)
@given(specs())
def test_property_a_spec_has_no_changes_against_itself(spec: Spec) -> None:
    assert diff_specs(spec, spec).changes == ()
    diff = diff_specs(spec, copy.deepcopy(spec))
    assert diff.changes == () and diff.change_class == "none"


@settings(max_examples=200, deadline=None)
@given(specs(), st.data())
def test_property_a_pure_rename_is_one_change(spec: Spec, data: st.DataObject) -> None:
    victim = data.draw(st.sampled_from([s["id"] for s in spec["steps"]]))
    fresh = "renamed-" + victim
    new = copy.deepcopy(spec)
    rename_step(victim, fresh)(new)
    change = only(diff_specs(spec, new))
    assert (change.kind, change.old, change.new, change.step_id) == (
        "step-renamed",
        victim,
        fresh,
        victim,
    )


@settings(max_examples=200, deadline=None)
@given(specs(), specs())
def test_property_any_two_specs_give_an_ordered_classified_diff(a: Spec, b: Spec) -> None:
    diff = diff_specs(a, b)
    ranks = {c: i for i, c in enumerate(CHANGE_CLASSES)}
    keys = [(ranks[c.change_class], c.path, c.kind) for c in diff.changes]
    assert keys == sorted(keys)
    worst = min((ranks[c.change_class] for c in diff.changes), default=ranks["none"])
    assert diff.change_class == CHANGE_CLASSES[worst]
    json.loads(render_json(diff, "w", "1.0.0", "2.0.0"))
