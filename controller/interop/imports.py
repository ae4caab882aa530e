"""`flowpin import`, the decisions: read each file into manifests, resolve name conflicts,
validate the repository as it would be, and plan the commits. Pure: files come in as bytes,
the repository as its HEAD files and a `History`; the CLI does the reading and committing.

Every input file is all or nothing: a file (an n8n export, a manifest, a bundle) whose
items do not all pass is left out whole, with its reasons, and the others go ahead. Nothing
is decided before everything is validated, so a refused file never leaves half of itself in
the repository.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from controller.interop import bundle as bundles
from controller.interop.conflicts import Decision, Mode, Taken, decide
from controller.interop.formats import detect, dump_yaml, locate
from controller.interop.migrations import MigrationError, migrate
from controller.interop.n8n import compare, from_n8n, to_n8n
from controller.model import jsonsafe
from controller.model.findings import Finding, format_path
from controller.model.history_rules import (
    BaseFile,
    check_against,
    effective_class,
    needed_bump,
    next_version,
)
from controller.model.report import finding_object
from controller.model.semver import parse_version
from controller.model.source_map import load_yaml
from controller.model.validate import (
    History,
    Manifest,
    check_files,
    check_repository,
    parse_manifest,
)
from controller.model.versions import digest_of


@dataclass
class Item:
    """One manifest to write."""

    kind: str  # Workflow | Environment
    name: str
    data: dict[str, Any]
    raw: bytes | None = None  # the original bytes, written as they are when nothing changed
    origin: str = "flowpin"  # flowpin | n8n
    history_only: bool = False  # an older version from a bundle: committed first, replaced
    original: Any = None  # the n8n document, for the round-trip check
    where: str = ""  # the input it came from (`file`, or `bundle:member` for a bundle)
    path: str = ""  # decided by the plan
    content: bytes = b""
    action: str = ""  # create, rename or overwrite (decided by the plan)

    @property
    def version(self) -> str | None:
        spec = self.data.get("spec")
        version = spec.get("version") if isinstance(spec, dict) else None
        return version if isinstance(version, str) else None


@dataclass
class FileResult:
    """What happened to one input file."""

    source: str
    format: str
    items: list[Item] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    migrations: list[str] = field(default_factory=list)
    status: str = "pending"  # imported renamed overwritten skipped unchanged failed
    reasons: list[str] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    loaded: list[Finding] | None = None  # the findings of reading, before validation

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    def fail(self, reason: str) -> None:
        self.status = "failed"
        if reason not in self.reasons:
            self.reasons.append(reason)


# --------------------------------------------------------------------------- reading


def unexpected(error: BaseException) -> str:
    """The reason for a file that made flowpin fail: a bug, reported, not a traceback."""
    text = jsonsafe.printable(str(error))
    detail = f"{type(error).__name__}: {text[:200]}" if text else type(error).__name__
    return f"flowpin failed on this file ({detail}); please report it as a bug"


def load_file(source: str, content: bytes) -> FileResult:
    """Detect the format of one file and read its manifests (converting n8n, migrating
    older flowpin formats). Problems are reasons and findings, never exceptions."""
    try:
        return _load_file(source, content)
    except Exception as error:  # a flowpin bug fails this file, not the whole import
        result = FileResult(source, "unknown")
        result.fail(unexpected(error))
        return result


def _load_file(source: str, content: bytes) -> FileResult:
    detected = detect(source, content)
    result = FileResult(source, detected.format)
    if detected.format == "unknown":
        result.findings += detected.findings
        result.fail(detected.reason)
        return result
    if detected.format == "bundle":
        _load_bundle(result, content)
    elif detected.format == "n8n":
        stem = source.rsplit("/", 1)[-1].split(".")[0]
        for index, document in enumerate(detected.documents):
            prefix = (index,) if len(detected.documents) > 1 else ()
            _load_n8n(result, content, document, stem, prefix)
    else:
        raw = content if detected.format == "flowpin-yaml" else None
        _load_flowpin(result, detected.documents[0], raw, source)
    if not result.items and not result.failed:
        result.fail("no workflows or environments in it")
    return result


def _load_flowpin(result: FileResult, data: Any, raw: bytes | None, where: str) -> Item | None:
    if not isinstance(data, dict):
        result.fail(f"{where}: not a manifest")
        return None
    try:
        migrated, applied = migrate(data)
    except MigrationError as error:
        result.fail(f"{where}: {error}")
        return None
    for step in applied:
        result.migrations.append(f"{where}: {step.describe()}")
    kind = migrated.get("kind")
    if kind not in ("Workflow", "Environment"):
        result.fail(f"{where}: kind must be Workflow or Environment, not {kind!r}")
        return None
    metadata = migrated.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if not isinstance(name, str) or not name:
        result.fail(f"{where}: metadata.name is missing")
        return None
    item = Item(str(kind), name, migrated, raw if not applied else None, where=where)
    result.items.append(item)
    return item


def _load_bundle(result: FileResult, content: bytes) -> None:
    try:
        _, files = bundles.unpack(content)  # the manifest's checksums were all that mattered
    except bundles.BundleError as error:
        result.fail(f"bundle refused: {error}")
        return
    workflows: dict[str, list[Item]] = {}
    for path in sorted(files):
        where = f"{result.source}:{path}"
        if not path.endswith((".yaml", ".yml")) or path.split("/")[0] not in (
            "workflows",
            "environments",
        ):
            result.fail(f"{where}: not a manifest path (workflows/ or environments/)")
            continue
        document = load_yaml(files[path], where)
        if not document.ok:
            result.findings += document.findings
            result.fail(f"{where}: does not parse")
            continue
        item = _load_flowpin(result, document.data, files[path], where)
        if item is not None and item.kind == "Workflow":
            workflows.setdefault(item.name, []).append(item)
    for versions in workflows.values():
        try:
            versions.sort(key=lambda i: parse_version(i.version or ""))
        except ValueError:
            result.fail(f"{result.source}: a workflow version is not semver")
            return
        for older in versions[:-1]:
            older.history_only = True


def _load_n8n(
    result: FileResult, content: bytes, document: Any, stem: str, prefix: tuple[int, ...]
) -> None:
    conversion = from_n8n(document, stem)
    paths = [(*prefix, *note.path) for note in conversion.notes]
    positions = locate(content, result.source, paths) if paths else {}
    for note, path in zip(conversion.notes, paths, strict=True):
        line, column = positions.get(path, (1, 1))
        result.findings.append(
            Finding(
                result.source,
                line,
                column,
                note.code,
                note.message,
                format_path(path),
                note.severity,
            )
        )
    if conversion.manifest is None:
        errors = [n.message for n in conversion.notes if n.severity == "error"]
        result.fail("; ".join(errors) or "not an n8n workflow")
        return
    name = conversion.manifest["metadata"]["name"]
    result.items.append(
        Item("Workflow", name, conversion.manifest, origin="n8n", original=document)
    )


# --------------------------------------------------------------------------- planning


@dataclass
class Plan:
    results: list[FileResult]
    commits: list[tuple[str, dict[str, bytes]]]  # (message, files), oldest first

    @property
    def written(self) -> list[Item]:
        return [i for r in self.results if not r.failed for i in r.items if i.path]


class _History:
    """HEAD's history plus the older versions this import commits first."""

    def __init__(self, base: History, extra: Mapping[str, Mapping[str, Any]]) -> None:
        self.base = base
        self.extra = extra

    def versions(self, workflow: str) -> Mapping[str, Mapping[str, Any]]:
        return {**self.base.versions(workflow), **self.extra.get(workflow, {})}

    def has_version(self, workflow: str, version: str) -> bool:
        return version in self.extra.get(workflow, {}) or self.base.has_version(workflow, version)


def _head_manifests(head: Mapping[str, bytes]) -> dict[str, Manifest]:
    manifests: dict[str, Manifest] = {}
    for path, content in head.items():
        manifest, _ = parse_manifest(content, path)
        if manifest is not None:
            manifests[path] = manifest
    return manifests


def plan_import(
    results: Sequence[FileResult],
    head: Mapping[str, bytes],
    history: History,
    mode: Mode,
    round_trip: bool = True,
) -> Plan:
    """Decide, serialize and validate every item; fail whole files that do not pass. Runs
    the repository checks again after each round of failures, since a file may have relied
    on another (an environment pinning a workflow from a refused file)."""
    head_manifests = _head_manifests(head)
    for _ in range(len(results) + 1):
        live = [r for r in results if not r.failed]
        for result in live:
            result.status = "pending"
            result.decisions = []
        _decide(live, head, head_manifests, mode)
        live = [r for r in results if not r.failed]
        before = sum(1 for r in results if r.failed)
        _validate(live, head, head_manifests, history, round_trip)
        if sum(1 for r in results if r.failed) == before:
            break
    for result in results:
        if result.failed:
            for item in result.items:
                item.path = ""
    return Plan(list(results), _commits(results))


def _decide(
    results: Sequence[FileResult],
    head: Mapping[str, bytes],
    head_manifests: Mapping[str, Manifest],
    mode: Mode,
) -> None:
    taken = {"Workflow": Taken(), "Environment": Taken()}
    for path, manifest in head_manifests.items():
        taken[manifest.kind].names.setdefault(manifest.name, path)
    for kind in taken.values():
        kind.paths = set(head)
    head_by_name = {(m.kind, m.name): m for m in head_manifests.values()}
    for result in results:
        try:
            trial = _decide_file(result, taken, head_by_name, mode)
        except Exception as error:  # a flowpin bug fails this file, not the whole import
            result.fail(unexpected(error))
            continue
        if trial is not None:
            taken = trial


def _decide_file(
    result: FileResult,
    taken: Mapping[str, Taken],
    head_by_name: Mapping[tuple[str, str], Manifest],
    mode: Mode,
) -> dict[str, Taken] | None:
    """Decide one file's items; the names taken after it (None when it fails)."""
    trial = {k: Taken(dict(v.names), set(v.paths)) for k, v in taken.items()}
    groups: dict[tuple[str, str], Decision] = {}
    for item in result.items:
        key = (item.kind, item.name)
        if key not in groups:
            groups[key] = decide(item.kind, item.name, mode, trial[item.kind])
    failures = [d.reason for d in groups.values() if d.action == "fail"]
    if failures:
        for reason in failures:
            result.fail(reason)
        return None
    result.decisions = list(groups.values())
    renames = {name: d.name for (kind, name), d in groups.items() if kind == "Workflow"}
    for item in result.items:
        decision = groups[(item.kind, item.name)]
        if decision.action == "skip":
            item.path = ""
            continue
        item.path = decision.path
        item.action = decision.action
        _apply_renames(item, decision, renames)
        if decision.action == "overwrite" and item.origin == "n8n":
            existing = head_by_name.get((item.kind, decision.name))
            if existing is not None and _bump(item, existing):
                item.path = ""  # same content: nothing to write
                result.decisions = [
                    Decision("skip", d.name, d.path, "unchanged") if d is decision else d
                    for d in result.decisions
                ]
        item.content = item.raw if item.raw is not None else dump_yaml(item.data)
    actions = {d.action for d in result.decisions}
    if actions == {"skip"}:
        result.status = (
            "unchanged" if all(d.reason == "unchanged" for d in result.decisions) else "skipped"
        )
    elif "rename" in actions:
        result.status = "renamed"
    elif "overwrite" in actions:
        result.status = "overwritten"
    else:
        result.status = "imported"
    return trial


def _apply_renames(item: Item, decision: Decision, renames: Mapping[str, str]) -> None:
    changed = False
    if decision.name != item.name:
        item.data = copy.deepcopy(item.data)
        item.data["metadata"]["name"] = decision.name
        changed = True
    spec = item.data.get("spec")
    if item.kind == "Environment" and isinstance(spec, dict):
        pins = spec.get("pins")
        if isinstance(pins, dict) and any(renames.get(w, w) != w for w in pins):
            item.data = copy.deepcopy(item.data)
            item.data["spec"]["pins"] = {renames.get(w, w): v for w, v in pins.items()}
            changed = True
    if changed:
        item.raw = None


def _bump(item: Item, existing: Manifest) -> bool:
    """An n8n import over an existing workflow gets the version its changes need (the CI
    bump rules). True when nothing changed."""
    old_spec = existing.spec
    new_spec = item.data["spec"]
    if digest_of({**new_spec, "version": old_spec["version"]}) == digest_of(old_spec):
        return True
    from controller.model.diff import diff_specs

    old = parse_version(old_spec["version"])
    diff = diff_specs(old_spec, new_spec)
    needed = needed_bump(effective_class(diff, new_spec, str(old)), old)
    new_spec["version"] = next_version(old, needed if needed != "none" else "patch")
    item.raw = None
    return False


def _validate(
    results: Sequence[FileResult],
    head: Mapping[str, bytes],
    head_manifests: Mapping[str, Manifest],
    history: History,
    round_trip: bool,
) -> None:
    owner: dict[str, FileResult] = {}
    final: dict[str, Manifest] = {}
    extra: dict[str, dict[str, Any]] = {}
    for result in results:
        if result.loaded is None:
            result.loaded = list(result.findings)
        result.findings = list(result.loaded)
        for item in result.items:
            if not item.path:
                continue
            try:
                manifests = _check_item(result, item, head, round_trip)
            except Exception as error:  # a flowpin bug fails this file, not the whole import
                result.fail(unexpected(error))
                continue
            if manifests is None:
                continue
            if item.history_only:
                extra.setdefault(manifests[0].name, {})[item.version or ""] = manifests[0].spec
            else:
                final[item.path] = manifests[0]
                owner[item.path] = result
    final = {p: m for p, m in final.items() if not owner[p].failed}
    kept = [m for p, m in head_manifests.items() if p not in final]
    findings = check_repository(
        [*kept, *final.values()], _History(history, extra), changed=set(final)
    )
    for finding in findings:
        holder = owner.get(finding.file)
        if holder is None or holder.failed:
            continue
        holder.findings.append(finding)
        if finding.is_error:
            holder.fail(f"{finding.file}: {finding.message}")


def _check_item(
    result: FileResult, item: Item, head: Mapping[str, bytes], round_trip: bool
) -> list[Manifest] | None:
    """The per-file checks of one item (None when they fail it), the round trip, and for an
    overwrite the checks `flowpin validate --against` will make (as warnings)."""
    manifests, findings = check_files({item.path: item.content})
    if item.raw is not None and item.where:
        # Written byte for byte: the lines are the input's, so name the input.
        findings = [replace(f, file=item.where) if f.file == item.path else f for f in findings]
    result.findings += findings
    if any(f.is_error for f in findings) or not manifests:
        shown = f"{item.where} → {item.path}" if item.raw is not None and item.where else item.path
        result.fail(f"{shown} ({item.name}) does not validate")
        return None
    if round_trip and item.original is not None:
        _round_trip(result, item, manifests[0])
    if item.action == "overwrite" and item.path in head and not item.history_only:
        base = {item.path: BaseFile(item.path, head[item.path])}
        for finding in check_against(manifests, base):
            result.findings.append(
                replace(
                    finding,
                    severity="warning",
                    message=f"`flowpin validate --against` will refuse this: {finding.message}",
                )
            )
    return manifests


def _round_trip(result: FileResult, item: Item, manifest: Manifest) -> None:
    exported = to_n8n(manifest.data)
    for difference in compare(item.original, exported.workflow):
        result.findings.append(
            Finding(
                result.source,
                1,
                1,
                "round-trip-difference",
                f"n8n → flowpin → n8n differs at {difference.describe()}",
                severity="warning",
            )
        )


def _commits(results: Sequence[FileResult]) -> list[tuple[str, dict[str, bytes]]]:
    commits: list[tuple[str, dict[str, bytes]]] = []
    final: dict[str, bytes] = {}
    lines: list[str] = []
    for result in results:
        if result.failed:
            continue
        for item in result.items:
            if not item.path:
                continue
            if item.history_only:
                commits.append(
                    (
                        f"flowpin import: {item.data['metadata']['name']} {item.version}\n\n"
                        f"An older version from {result.source}, committed so that history "
                        "holds it.",
                        {item.path: item.content},
                    )
                )
            else:
                final[item.path] = item.content
                lines.append(f"{result.source} → {item.path} ({result.status})")
    if final:
        count = len(final)
        title = f"flowpin import: {count} file{'s' if count != 1 else ''}"
        commits.append((title + "\n\n" + "\n".join(lines), final))
    return commits


def summary_json(plan: Plan) -> str:
    return json.dumps(
        [
            {
                "file": r.source,
                "format": r.format,
                "status": r.status,
                "written": [i.path for i in r.items if i.path],
                "reasons": r.reasons,
                "migrations": r.migrations,
                "findings": [finding_object(f) for f in sorted(r.findings)],
            }
            for r in plan.results
        ],
        indent=2,
    )
