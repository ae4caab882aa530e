"""Loading the JSON Schemas in `controller/api/schemas/`, the single source of truth for the
Workflow and Environment languages and for the CRDs generated from them."""

from __future__ import annotations

import copy
import functools
from importlib import resources
from typing import Any, Literal

import yaml

SchemaName = Literal["workflow", "environment", "resources"]
SCHEMA_FILES: dict[str, SchemaName] = {
    "workflow.yaml": "workflow",
    "environment.yaml": "environment",
    "resources.yaml": "resources",
}


@functools.cache
def _load(name: SchemaName) -> dict[str, Any]:
    text = resources.files("controller.api").joinpath("schemas", f"{name}.yaml").read_text()
    data = yaml.safe_load(text)
    assert isinstance(data, dict), f"schema {name} is not a mapping"
    return data


def load_schema(name: SchemaName) -> dict[str, Any]:
    """A fresh copy of a schema document, `$ref`s intact (as editors and jsonschema want it)."""
    return copy.deepcopy(_load(name))


def resolve_refs(node: Any, document: SchemaName) -> Any:
    """The schema with every `$ref` inlined; keys beside a `$ref` override the target's.

    The CRD generator needs this because structural schemas allow no references.
    """
    if isinstance(node, list):
        return [resolve_refs(item, document) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target, target_doc = _follow(node["$ref"], document)
        merged = {**resolve_refs(target, target_doc)}
        for key, value in node.items():
            if key != "$ref":
                merged[key] = resolve_refs(value, document)
        return merged
    return {key: resolve_refs(value, document) for key, value in node.items() if key != "$defs"}


def _follow(ref: str, document: SchemaName) -> tuple[Any, SchemaName]:
    file_part, _, pointer = ref.partition("#")
    target_doc = SCHEMA_FILES[file_part] if file_part else document
    node: Any = _load(target_doc)
    for part in pointer.strip("/").split("/"):
        if part:
            node = node[part]
    return node, target_doc
