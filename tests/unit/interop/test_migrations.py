"""Older flowpin formats migrate to flowpin.dev/v1alpha1, each change listed."""

from __future__ import annotations

import re
from typing import Any

import pytest

from controller.interop.formats import dump_yaml
from controller.interop.migrations import CURRENT, MigrationError, migrate
from controller.model.validate import validate_manifests

V0_WORKFLOW: dict[str, Any] = {
    "apiVersion": "flowpin.dev/v0",
    "kind": "Workflow",
    "name": "welcome",
    "labels": {"team": "growth"},
    "version": "1.0.0",
    "triggers": [{"id": "daily", "type": "schedule", "cron": "0 9 * * *"}],
    "steps": [
        {"id": "hello", "type": "http", "http": {"url": "https://x.example"}, "goto": "pause"},
        {"id": "pause", "type": "wait", "wait": {"seconds": 30}, "goto": "check"},
        {"id": "check", "type": "condition", "condition": {"if": "true", "then": "end"}},
    ],
}


def test_v0_workflow_migrates_through_every_format() -> None:
    migrated, applied = migrate(V0_WORKFLOW)
    assert [(a.source, a.target) for a in applied] == [
        ("flowpin.dev/v0", "flowpin.dev/v1alpha0"),
        ("flowpin.dev/v1alpha0", CURRENT),
    ]
    assert applied[0].changes == (
        "name → metadata.name",
        "labels → metadata.labels",
        "version → spec.version",
        "triggers → spec.triggers",
        "steps → spec.steps",
    )
    assert applied[1].changes == (
        "spec.steps[0].goto → next",
        "spec.steps[1].goto → next",
        "spec.steps[1].wait.seconds: 30 → duration: 30s",
        "spec.steps[2].condition.if → when",
        "spec.triggers[0].cron → schedule",
    )
    assert migrated["metadata"] == {"name": "welcome", "labels": {"team": "growth"}}
    assert migrated["spec"]["steps"][1] == {
        "id": "pause",
        "type": "wait",
        "wait": {"duration": "30s"},
        "next": "check",
    }
    _, findings = validate_manifests({"workflows/welcome.yaml": dump_yaml(migrated)})
    assert findings == []
    assert V0_WORKFLOW["steps"][0]["goto"] == "pause"  # the input is not changed


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"kind": "Environment", "name": "dev", "pins": {"welcome": "latest"}},
            {
                "apiVersion": CURRENT,
                "kind": "Environment",
                "metadata": {"name": "dev"},
                "spec": {"pins": {"welcome": "latest"}},
            },
        ),
        (
            {
                "apiVersion": "flowpin.dev/v1alpha0",
                "kind": "Environment",
                "metadata": {"name": "dev"},
                "spec": {"versions": {"a": "1.0.0"}},
            },
            {
                "apiVersion": CURRENT,
                "kind": "Environment",
                "metadata": {"name": "dev"},
                "spec": {"pins": {"a": "1.0.0"}},
            },
        ),
        (
            {"kind": "Environment", "metadata": {"name": "dev"}, "spec": {}},
            {"apiVersion": CURRENT, "kind": "Environment", "metadata": {"name": "dev"}, "spec": {}},
        ),
    ],
)
def test_environments(data: dict[str, Any], expected: dict[str, Any]) -> None:
    migrated, applied = migrate(data)
    assert migrated == expected
    assert applied


def test_current_documents_are_untouched() -> None:
    data = {"apiVersion": CURRENT, "kind": "Workflow", "metadata": {"name": "a"}, "spec": {}}
    assert migrate(data) == (data, [])


def test_unknown_format_is_refused() -> None:
    with pytest.raises(MigrationError, match=re.escape("'flowpin.dev/v9' is not a flowpin format")):
        migrate({"apiVersion": "flowpin.dev/v9", "kind": "Workflow"})
