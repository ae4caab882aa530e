"""The committed CRDs are exactly what the schemas generate, and `kubectl explain` has a
description for every field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controller.api import kinds
from controller.api.crds import build_crd, crd_filename, render_crd, to_structural

CRDS = Path(__file__).resolve().parents[2] / "crds"


@pytest.mark.parametrize("kind", kinds.ALL_KINDS, ids=lambda kind: kind.kind)
def test_committed_crd_is_fresh(kind: kinds.Kind) -> None:
    committed = (CRDS / crd_filename(kind)).read_text()
    assert committed == render_crd(kind), "crds/ is stale: run `make crds` and commit"


def _fields_without_description(node: dict[str, Any], path: str) -> list[str]:
    missing = []
    for name, sub in node.get("properties", {}).items():
        where = f"{path}.{name}"
        if name not in {"apiVersion", "kind", "metadata"} and not sub.get("description"):
            missing.append(where)
        missing += _fields_without_description(sub, where)
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            missing += _fields_without_description(node[key], f"{path}[]")
    return missing


@pytest.mark.parametrize("kind", kinds.ALL_KINDS, ids=lambda kind: kind.kind)
def test_every_field_has_a_description(kind: kinds.Kind) -> None:
    schema = build_crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert _fields_without_description(schema, kind.kind) == []


@pytest.mark.parametrize("kind", kinds.ALL_KINDS, ids=lambda kind: kind.kind)
def test_crd_names_status_subresource_and_category(kind: kinds.Kind) -> None:
    crd = build_crd(kind)
    version = crd["spec"]["versions"][0]
    assert crd["spec"]["names"]["categories"] == ["flowpin"]
    assert crd["spec"]["names"]["shortNames"] == list(kind.short_names)
    assert version["subresources"] == {"status": {}}
    assert version["additionalPrinterColumns"][-1]["name"] == "Age"
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert status["conditions"]["x-kubernetes-list-map-keys"] == ["type"]
    assert "observedGeneration" in status


def test_workflow_version_spec_is_immutable_by_cel_rule() -> None:
    spec = build_crd(kinds.WORKFLOW_VERSION)["spec"]["versions"][0]["schema"]["openAPIV3Schema"][
        "properties"
    ]["spec"]
    assert spec["x-kubernetes-validations"][0]["rule"] == "self == oldSelf"


def test_definition_schema_comes_from_the_workflow_language() -> None:
    spec = build_crd(kinds.WORKFLOW_VERSION)["spec"]["versions"][0]["schema"]["openAPIV3Schema"][
        "properties"
    ]["spec"]
    step = spec["properties"]["definition"]["properties"]["steps"]["items"]
    assert "http" in step["properties"]["type"]["enum"]
    assert step["properties"]["http"]["properties"]["body"] == {
        "description": step["properties"]["http"]["properties"]["body"]["description"],
        "x-kubernetes-preserve-unknown-fields": True,
    }


@pytest.mark.parametrize(
    ("json_schema", "structural"),
    [
        ({"type": "string", "const": "x"}, {"type": "string", "enum": ["x"]}),
        (
            {"type": "object", "additionalProperties": False, "properties": {}},
            {"type": "object", "properties": {}},
        ),
        (
            {"type": "object", "additionalProperties": {"type": "string"}},
            {"type": "object", "additionalProperties": {"type": "string"}},
        ),
        (
            {"description": "d", "anyOf": [{"type": "integer"}, {"type": "string"}]},
            {"description": "d", "x-kubernetes-int-or-string": True},
        ),
        (
            {"type": "object", "x-flowpin-any": True},
            {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        ),
        ({"type": "object", "allOf": [{"if": {}, "then": {}}]}, {"type": "object"}),
    ],
)
def test_to_structural(json_schema: dict[str, Any], structural: dict[str, Any]) -> None:
    assert to_structural(json_schema) == structural
