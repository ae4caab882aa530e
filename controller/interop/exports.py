"""`flowpin export`, the decisions: which versions, and what bytes each format gives. Pure:
version contents come in as the committed bytes.

Secrets never leave: manifests hold only `secretRef`s (names of Kubernetes Secrets, which
export never reads), and n8n exports carry credential names and ids as n8n itself does,
never credential data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from controller.interop import bundle as bundles
from controller.interop.formats import dump_json
from controller.interop.n8n import to_n8n
from controller.model.semver import parse_version
from controller.model.source_map import load_yaml

FORMATS = ("yaml", "json", "n8n", "bundle")
SUFFIXES = {"yaml": ".yaml", "json": ".json", "n8n": ".n8n.json", "bundle": ".tar.gz"}
LATEST = "latest"


class ExportError(ValueError):
    """A request that cannot be met; the message says why."""


def pinned(
    environments: Mapping[str, Mapping[str, str]], workflow: str, latest: str
) -> dict[str, str]:
    """Environment → the version of `workflow` it pins (`latest` resolved)."""
    found: dict[str, str] = {}
    for environment, pins in sorted(environments.items()):
        pin = pins.get(workflow)
        if pin is not None:
            found[environment] = latest if pin == LATEST else pin
    return found


def select_versions(
    available: Sequence[str],
    requested: Sequence[str],
    pins: Mapping[str, str],
    workflow: str,
) -> list[str]:
    """The requested versions, or every pinned version and the latest; oldest first."""
    ordered = sorted(available, key=parse_version)
    if not ordered:
        raise ExportError(f"{workflow} has no versions in history")
    if requested:
        missing = [v for v in requested if v not in ordered]
        if missing:
            raise ExportError(
                f"{workflow} has no version {missing[0]} (versions: {', '.join(ordered)})"
            )
        chosen = set(requested)
    else:
        chosen = {ordered[-1]} | {v for v in pins.values() if v in ordered}
    return [v for v in ordered if v in chosen]


def render(content: bytes, path: str, fmt: str) -> tuple[bytes, list[str]]:
    """One version in a single-file format, and notes on what n8n cannot hold."""
    if fmt == "yaml":
        return content, []
    document = load_yaml(content, path)
    if not document.ok or not isinstance(document.data, dict):
        raise ExportError(f"{path} does not parse as it was committed")
    if fmt == "json":
        return dump_json(document.data), []
    if fmt == "n8n":
        if document.data.get("kind") != "Workflow":
            raise ExportError(f"{path} is not a Workflow; only workflows export to n8n")
        exported = to_n8n(document.data)
        return dump_json(exported.workflow), exported.notes
    raise ExportError(f"format {fmt!r} is not a single file")


def build_bundle(
    versions: Mapping[str, Mapping[str, bytes]],
    environments: Mapping[str, bytes],
    info: Mapping[str, Mapping[str, Any]],
    *,
    exported_at: str,
    source_commit: str,
    generator: str,
    mtime: int,
) -> bytes:
    """A bundle of workflow versions (name → version → file) and environment files."""
    files: dict[str, bytes] = {}
    for workflow, by_version in versions.items():
        for version, content in by_version.items():
            files[bundles.version_path(workflow, version)] = content
    for name, content in environments.items():
        files[f"environments/{name}.yaml"] = content
    manifest = bundles.build_manifest(
        files,
        exported_at=exported_at,
        source_commit=source_commit,
        generator=generator,
        workflows=info,
        environments=list(environments),
    )
    return bundles.pack(files, manifest, mtime)
