"""Which versions an export takes, and each single-file format."""

from __future__ import annotations

import json
import re

import pytest

from controller.interop.exports import ExportError, pinned, render, select_versions

WORKFLOW = b"""apiVersion: flowpin.dev/v1alpha1
kind: Workflow
metadata: {name: a}
spec:
  version: 1.0.0
  steps: [{id: hello, type: log, log: {message: hi}}]
"""


def test_pinned_resolves_latest() -> None:
    environments = {"dev": {"a": "latest"}, "prod": {"a": "1.0.0"}, "qa": {"b": "1.0.0"}}
    assert pinned(environments, "a", "1.2.0") == {"dev": "1.2.0", "prod": "1.0.0"}


@pytest.mark.parametrize(
    ("requested", "pins", "chosen"),
    [
        ([], {}, ["1.10.0"]),
        ([], {"prod": "1.0.0", "dev": "1.10.0"}, ["1.0.0", "1.10.0"]),
        (["1.2.0"], {"prod": "1.0.0"}, ["1.2.0"]),
        (["1.10.0", "1.0.0"], {}, ["1.0.0", "1.10.0"]),
    ],
)
def test_select_versions(requested: list[str], pins: dict[str, str], chosen: list[str]) -> None:
    assert select_versions(["1.0.0", "1.10.0", "1.2.0"], requested, pins, "a") == chosen


def test_unknown_version_is_refused() -> None:
    with pytest.raises(ExportError, match=re.escape("a has no version 9.9.9 (versions: 1.0.0)")):
        select_versions(["1.0.0"], ["9.9.9"], {}, "a")


def test_render() -> None:
    assert render(WORKFLOW, "w.yaml", "yaml") == (WORKFLOW, [])
    data, _ = render(WORKFLOW, "w.yaml", "json")
    assert json.loads(data)["spec"]["steps"][0]["id"] == "hello"
    data, notes = render(WORKFLOW, "w.yaml", "n8n")
    node = json.loads(data)["nodes"][0]
    assert (node["type"], node["notes"]) == ("n8n-nodes-base.noOp", "hi")
    assert notes == []
    with pytest.raises(ExportError, match="not a Workflow"):
        render(b"kind: Environment\nmetadata: {name: x}\n", "e.yaml", "n8n")
