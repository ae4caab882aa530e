"""What a WorkflowSource mirrors into its namespace, and which writes get there.

`desired_objects` turns the version index into WorkflowVersion, Environment and
WorkflowDeployment objects; `plan_writes` compares them with what the cluster holds and
returns only the writes that change something, so an idle source makes no API writes and a
commit touching one workflow writes only its objects. Versions are never deleted here
except by retention with `prune`; a deleted environment or pin deletes its deployments only
when they have no active runs.

A deployment's spec names the commit that set its pin (not the environment file's last
commit), so an edit of one pin rewrites one deployment. `Mirrored` is what a source knows is
in the namespace between two full listings (the last listing plus its own writes since), for
planning an incremental sync without listing; `restore_writes` is the part of retention
that needs no listing.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from controller.api import kinds
from controller.model.conditions import set_condition
from controller.model.diff import diff_specs
from controller.model.durations import parse_duration
from controller.model.findings import Finding
from controller.model.semver import parse_version
from controller.model.versions import (
    CommitMeta,
    EnvironmentRecord,
    VersionIndex,
    VersionRecord,
)

LATEST = "latest"
Obj = dict[str, Any]


@dataclass(frozen=True)
class SourceMeta:
    namespace: str
    name: str
    uid: str
    created: str = ""  # creationTimestamp, for conflicts: the older source wins


@dataclass(frozen=True)
class Retention:
    keep_versions: int = 10
    archive_after: datetime.timedelta = datetime.timedelta(days=90)
    prune: bool = False

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | None) -> Retention:
        spec = spec or {}
        return cls(
            keep_versions=int(spec.get("keepVersions", 10)),
            archive_after=parse_duration(str(spec.get("archiveAfter", "90d"))),
            prune=bool(spec.get("prune", False)),
        )


def label_value(text: str) -> str:
    """Label values allow [-A-Za-z0-9_.]; semver build metadata uses `+`."""
    return text.replace("+", "_")[:63]


def _owner(source: SourceMeta) -> list[Obj]:
    return [
        {
            "apiVersion": kinds.API_VERSION,
            "kind": kinds.WORKFLOW_SOURCE.kind,
            "name": source.name,
            "uid": source.uid,
            "controller": True,
            "blockOwnerDeletion": False,
        }
    ]


def _metadata(name: str, source: SourceMeta, labels: Mapping[str, str]) -> Obj:
    return {
        "name": name,
        "namespace": source.namespace,
        "labels": {
            kinds.LABEL_SOURCE: source.name,
            kinds.LABEL_MANAGED_BY: kinds.MANAGED_BY,
            **labels,
        },
        "ownerReferences": _owner(source),
    }


def version_object(record: VersionRecord, source: SourceMeta) -> Obj:
    return {
        "apiVersion": kinds.API_VERSION,
        "kind": kinds.WORKFLOW_VERSION.kind,
        "metadata": _metadata(
            kinds.version_object_name(record.workflow, record.version),
            source,
            {
                kinds.LABEL_WORKFLOW: record.workflow,
                kinds.LABEL_VERSION: label_value(record.version),
            },
        ),
        "spec": {
            "workflow": record.workflow,
            "version": record.version,
            "digest": record.digest,
            "source": source.name,
            "labels": record.labels,
            "definition": record.spec,
            "git": {
                "commit": record.commit.id,
                "path": record.path,
                "author": record.commit.author,
                "message": record.commit.message,
                "time": record.commit.time.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
        },
    }


# At most this many problems are kept in `spec.facts.problems`.
MAX_FACT_PROBLEMS = 20


def version_facts(record: VersionRecord, previous: VersionRecord | None) -> Obj:
    """`spec.facts`: what never changes about a version once mirrored (its change against
    the previous version, its validity), written with its spec at creation so that a new
    version needs no status write."""
    change = "initial" if previous is None else diff_specs(previous.spec, record.spec).change_class
    errors = [p for p in record.problems if p.is_error]
    facts: Obj = {"changeClass": change}
    if previous is not None:
        facts["previousVersion"] = previous.version
    facts["valid"] = not errors
    facts["problems"] = [f"{p.file}:{p.line}: {p.message}" for p in errors[:MAX_FACT_PROBLEMS]]
    return facts


def invalid_message(problems: Sequence[str]) -> str:
    """The message of an invalid version, from its `spec.facts.problems`."""
    return "Invalid: " + "; ".join(str(p) for p in problems[:5])


def version_status(
    record: VersionRecord, previous: VersionRecord | None, generation: int = 1
) -> Obj:
    """The status a version got once, when it was mirrored, before its spec carried
    `facts`: written now only for such a version whose status is missing (a crash between
    its create and its status)."""
    change = "initial" if previous is None else diff_specs(previous.spec, record.spec).change_class
    errors = [p for p in record.problems if p.is_error]
    message = (
        "Valid."
        if not errors
        else invalid_message([f"{p.file}:{p.line}: {p.message}" for p in errors])
    )
    conditions = set_condition(
        [],
        "Ready",
        "True" if not errors else "False",
        "Valid" if not errors else "InvalidDefinition",
        message,
        generation,
    )
    status: Obj = {"phase": "Available", "changeClass": change, "conditions": conditions}
    if previous is not None:
        status["previousVersion"] = previous.version
    return status


def environment_object(record: EnvironmentRecord, source: SourceMeta) -> Obj:
    return {
        "apiVersion": kinds.API_VERSION,
        "kind": kinds.ENVIRONMENT.kind,
        "metadata": _metadata(
            record.name, source, {kinds.LABEL_ENVIRONMENT: record.name, **record.labels}
        ),
        "spec": record.spec,
    }


def _latest(ordered: Sequence[VersionRecord]) -> str:
    """The highest valid version of versions in ascending order (the highest at all if none
    is valid), among those the tracked history still holds: an orphaned version (from a
    history rewritten away) is never chosen by itself, only by an exact pin."""
    reachable = [record for record in ordered if not record.orphaned]
    for record in reversed(reachable):
        if record.valid:
            return record.version
    return reachable[-1].version if reachable else LATEST


def resolve_pin(pin: str, versions: Mapping[str, VersionRecord]) -> str:
    """`latest` is the highest valid version in history (the highest at all if none is
    valid); an exact pin is itself, known or not (the deployment reports a missing one)."""
    if pin != LATEST:
        return pin
    return _latest(sorted(versions.values(), key=lambda r: parse_version(r.version)))


def pin_commit(
    environment: EnvironmentRecord, workflow: str, pin: str, record: VersionRecord | None
) -> CommitMeta:
    """The commit a deployment's spec names: the one that last changed its pin; for `latest`,
    the newer of that and the commit where the resolved version appeared (what moved it).
    Never the environment file's last commit, so editing one pin rewrites one deployment."""
    commit = environment.pin_commit(workflow)
    if pin == LATEST and record is not None and record.commit.time > commit.time:
        return record.commit
    return commit


def deployment_object(
    workflow: str,
    environment: EnvironmentRecord,
    pin: str,
    version: str,
    source: SourceMeta,
    commit: CommitMeta | None = None,
) -> Obj:
    commit = commit or environment.pin_commit(workflow)
    return {
        "apiVersion": kinds.API_VERSION,
        "kind": kinds.WORKFLOW_DEPLOYMENT.kind,
        "metadata": _metadata(
            kinds.deployment_object_name(workflow, environment.name),
            source,
            {kinds.LABEL_WORKFLOW: workflow, kinds.LABEL_ENVIRONMENT: environment.name},
        ),
        "spec": {
            "workflow": workflow,
            "environment": environment.name,
            "version": version,
            "pin": pin,
            "source": source.name,
            "commit": commit.id,
            "author": commit.author,
        },
    }


@dataclass
class Desired:
    versions: dict[str, Obj] = field(default_factory=dict)
    # name → (record, previous version's record): the facts (a diff against the previous
    # version) are computed only for the versions a write needs them for.
    version_records: dict[str, tuple[VersionRecord, VersionRecord | None]] = field(
        default_factory=dict
    )
    environments: dict[str, Obj] = field(default_factory=dict)
    deployments: dict[str, Obj] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    def version_status(self, name: str) -> Obj:
        record, previous = self.version_records[name]
        return version_status(record, previous)

    def orphaned(self, name: str) -> bool:
        return self.version_records[name][0].orphaned

    def version_to_create(self, name: str) -> Obj:
        """The version as created: its object with `spec.facts`. (`versions` holds them
        without: a version's spec is never compared, and the facts need a diff.)"""
        obj = self.versions[name]
        record, previous = self.version_records[name]
        return {**obj, "spec": {**obj["spec"], "facts": version_facts(record, previous)}}

    def workflows(self) -> set[str]:
        return {obj["spec"]["workflow"] for obj in self.versions.values()}


def desired_objects(index: VersionIndex, source: SourceMeta) -> Desired:
    desired = Desired()
    latest: dict[str, str] = {}
    for workflow, versions in sorted(index.versions.items()):
        previous: VersionRecord | None = None
        ordered = sorted(versions.values(), key=lambda r: parse_version(r.version))
        latest[workflow] = _latest(ordered)
        for record in ordered:
            obj = version_object(record, source)
            name = obj["metadata"]["name"]
            desired.versions[name] = obj
            desired.version_records[name] = (record, previous)
            previous = record
    for env_name, environment in sorted(index.environments.items()):
        desired.environments[env_name] = environment_object(environment, source)
        upstream = (environment.spec.get("promotion") or {}).get("from")
        if upstream and upstream not in index.environments:
            desired.findings.append(
                Finding(
                    environment.path,
                    1,
                    1,
                    "unknown-environment",
                    f"{env_name} promotes from {upstream!r}, but there is no such environment; "
                    "its deployments are Stalled until `promotion.from` names one",
                    "spec.promotion.from",
                )
            )
        for workflow, pin in sorted(environment.spec.get("pins", {}).items()):
            versions = index.versions.get(workflow, {})
            version = latest.get(workflow, LATEST) if str(pin) == LATEST else str(pin)
            if version not in versions:
                desired.findings.append(
                    Finding(
                        environment.path,
                        1,
                        1,
                        "unknown-version",
                        f"{env_name} pins {workflow} {pin}, which is not a version in git "
                        "history; its deployment stays Blocked until the pin names one",
                        f"spec.pins.{workflow}",
                    )
                )
            commit = pin_commit(environment, workflow, str(pin), versions.get(version))
            obj = deployment_object(workflow, environment, str(pin), version, source, commit)
            desired.deployments[obj["metadata"]["name"]] = obj
    return desired


# --------------------------------------------------------------------------- writes


Kind = Literal["WorkflowVersion", "Environment", "WorkflowDeployment"]


@dataclass(frozen=True)
class Write:
    action: Literal["create", "replace-spec", "patch-status", "delete", "adopt"]
    kind: Kind
    name: str
    body: Obj | None = None


@dataclass
class WritePlan:
    writes: list[Write] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)  # messages
    kept_for_runs: list[str] = field(default_factory=list)  # deployment names

    def count(self) -> int:
        return len(self.writes)


@dataclass(frozen=True)
class Actual:
    """Objects of these kinds in the namespace, by name (any source)."""

    versions: Mapping[str, Obj]
    environments: Mapping[str, Obj]
    deployments: Mapping[str, Obj]
    source_created: Mapping[str, str]  # source name → creationTimestamp
    active_runs: Mapping[str, int] = field(default_factory=dict)  # deployment → active runs


def _source_of(obj: Obj) -> str | None:
    labels = obj.get("metadata", {}).get("labels") or {}
    value = labels.get(kinds.LABEL_SOURCE)
    return str(value) if value is not None else None


def _older(a: tuple[str, str], b: tuple[str, str]) -> bool:
    """(created, name) order: the earlier creation wins, then the name."""
    return a < b


def _owned_by_another_object(me: SourceMeta, obj: Obj) -> bool:
    """Whether `obj`'s owner is another object than this source (by uid): what a source
    deleted and created again, or another source, left behind. Garbage collection deletes
    it with that owner unless it is adopted (ownerReferences moved to this uid) first.
    Unknown (no references, as in a source's memory of its own writes) is not another."""
    references = (obj.get("metadata") or {}).get("ownerReferences") or []
    uids = {
        str(ref.get("uid")) for ref in references if ref.get("kind") == kinds.WORKFLOW_SOURCE.kind
    }
    return bool(uids) and me.uid not in uids


def _owner_wins(me: SourceMeta, other: str | None, actual: Actual) -> bool:
    """Whether this source may write an object currently labelled with `other`."""
    if other is None or other == me.name or other not in actual.source_created:
        return True  # ours, unlabelled, or its source is gone: adopt it
    return _older((me.created, me.name), (actual.source_created[other], other))


def _needs_update(desired: Obj, current: Obj) -> bool:
    if desired.get("spec") != current.get("spec"):
        return True
    labels = current.get("metadata", {}).get("labels") or {}
    return any(labels.get(k) != v for k, v in desired["metadata"]["labels"].items())


def _status_missing(current: Obj) -> bool:
    """A version created before versions carried `spec.facts` whose status was never
    written (a crash between create and status). A version with facts needs no status."""
    if (current.get("spec") or {}).get("facts"):
        return False
    status = current.get("status") or {}
    return not status.get("changeClass") or not status.get("conditions")


def plan_writes(desired: Desired, actual: Actual, me: SourceMeta) -> WritePlan:
    plan = WritePlan()
    groups: Sequence[tuple[Kind, Mapping[str, Obj], Mapping[str, Obj]]] = (
        ("WorkflowVersion", desired.versions, actual.versions),
        ("Environment", desired.environments, actual.environments),
        ("WorkflowDeployment", desired.deployments, actual.deployments),
    )
    for kind, wanted, existing in groups:
        for name, obj in wanted.items():
            current = existing.get(name)
            if current is None:
                if kind == "WorkflowVersion":  # its facts in the spec: no status write
                    if desired.orphaned(name):
                        continue  # gone from git and from the cluster: never brought back
                    obj = desired.version_to_create(name)
                plan.writes.append(Write("create", kind, name, obj))
                continue
            owner = _source_of(current)
            if not _owner_wins(me, owner, actual):
                plan.conflicts.append(
                    f"{kind} {name} is mirrored by the older source {owner}; "
                    f"remove it from one of the two repositories"
                )
                continue
            if owner != me.name or _owned_by_another_object(me, current):
                plan.writes.append(Write("adopt", kind, name, obj))  # labels and owner
            if kind == "WorkflowVersion":
                # The spec is immutable (never replaced, also not to add the facts a version
                # created before them lacks): adopted above if needed; finish the status of
                # such a version when a crash came between its create and its status.
                if _status_missing(current):
                    plan.writes.append(
                        Write("patch-status", kind, name, desired.version_status(name))
                    )
                orphaned = desired.orphaned(name)
                if bool((current.get("status") or {}).get("orphaned")) != orphaned:
                    mark = {"orphaned": True if orphaned else None}  # a merge patch
                    plan.writes.append(Write("patch-status", kind, name, mark))
            elif _needs_update(obj, current):
                plan.writes.append(Write("replace-spec", kind, name, obj))
    for name, current in actual.environments.items():
        if _source_of(current) == me.name and name not in desired.environments:
            plan.writes.append(Write("delete", "Environment", name))
    for name, current in actual.deployments.items():
        if _source_of(current) == me.name and name not in desired.deployments:
            if actual.active_runs.get(name, 0) > 0:
                plan.kept_for_runs.append(name)
            else:
                plan.writes.append(Write("delete", "WorkflowDeployment", name))
    return plan


# --------------------------------------------------------------------------- memory

_VERSION_STATUS_KEYS = ("phase", "changeClass", "previousVersion", "conditions", "orphaned")


def _reduced(kind: Kind, obj: Obj) -> Obj:
    """What `plan_writes` and retention compare of an object: its labels; the spec of an
    Environment or a WorkflowDeployment (a version's spec is immutable: only its facts, if
    it has them); the status fields of a version that a source writes."""
    labels = dict((obj.get("metadata") or {}).get("labels") or {})
    reduced: Obj = {"metadata": {"labels": labels}}
    if kind == "WorkflowVersion":
        facts = (obj.get("spec") or {}).get("facts")
        if facts:
            reduced["spec"] = {"facts": facts}
        status = obj.get("status") or {}
        reduced["status"] = {k: status[k] for k in _VERSION_STATUS_KEYS if k in status}
    else:
        reduced["spec"] = obj.get("spec")
    return reduced


@dataclass
class Mirrored:
    """What the namespace holds of the kinds a source writes, as far as that source knows:
    taken from a full listing, then kept current with every write the source makes, so that
    a sync after a new commit can plan its writes without listing every object again. It
    does not see what others change meanwhile (a user deleting or editing a mirrored object,
    another source creating one): the next full listing does."""

    versions: dict[str, Obj] = field(default_factory=dict)
    environments: dict[str, Obj] = field(default_factory=dict)
    deployments: dict[str, Obj] = field(default_factory=dict)
    source_created: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_actual(cls, actual: Actual) -> Mirrored:
        return cls(
            versions={n: _reduced("WorkflowVersion", o) for n, o in actual.versions.items()},
            environments={n: _reduced("Environment", o) for n, o in actual.environments.items()},
            deployments={
                n: _reduced("WorkflowDeployment", o) for n, o in actual.deployments.items()
            },
            source_created=dict(actual.source_created),
        )

    def actual(self, active_runs: Mapping[str, int] | None = None) -> Actual:
        return Actual(
            self.versions,
            self.environments,
            self.deployments,
            self.source_created,
            active_runs or {},
        )

    def _objects(self, kind: Kind) -> dict[str, Obj]:
        if kind == "WorkflowVersion":
            return self.versions
        return self.environments if kind == "Environment" else self.deployments

    def record(self, write: Write) -> None:
        """Remember a write the API server accepted."""
        objects = self._objects(write.kind)
        if write.action == "delete":
            objects.pop(write.name, None)
            return
        assert write.body is not None
        current = objects.get(write.name)
        if write.action in ("create", "replace-spec") or current is None:
            if write.action == "patch-status":
                return  # not known here (retention of a version listed by no one)
            objects[write.name] = _reduced(write.kind, write.body)
        elif write.action == "adopt":  # a merge patch of labels
            labels = current["metadata"]["labels"]
            labels.update(write.body["metadata"]["labels"])
        else:  # patch-status, a merge patch
            status = current.setdefault("status", {})
            status.update({k: v for k, v in write.body.items() if k in _VERSION_STATUS_KEYS})

    def phase_of(self, name: str) -> str:
        return str((self.versions.get(name, {}).get("status") or {}).get("phase") or "Available")


# `now` for restore_writes: no version is old enough to archive or prune at this moment.
_FAR_PAST = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def restore_writes(
    desired: Desired, mirrored: Mirrored, me: SourceMeta, retention: Retention
) -> list[Write]:
    """Retention between full listings, from what the source knows: an Archived version of
    this source that a desired deployment pins, or that is among the newest `keep_versions`
    again, becomes Available. Archiving (which depends on the deployments' statuses and runs)
    waits for the next full listing."""
    archived_workflows = {
        desired.version_records[name][0].workflow
        for name, obj in mirrored.versions.items()
        if name in desired.version_records
        and _source_of(obj) == me.name
        and mirrored.phase_of(name) == "Archived"
    }
    if not archived_workflows:
        return []
    in_use = {(d["spec"]["workflow"], d["spec"]["version"]) for d in desired.deployments.values()}
    facts = [
        VersionFacts(
            name=name,
            workflow=record.workflow,
            version=record.version,
            committed_at=record.commit.time,
            phase=mirrored.phase_of(name),
            orphaned=record.orphaned,
        )
        for name, (record, _) in desired.version_records.items()
        if record.workflow in archived_workflows
        and _source_of(mirrored.versions.get(name, {})) == me.name
    ]
    return [
        write
        for write in retention_writes(facts, in_use, retention, _FAR_PAST)
        if write.action == "patch-status" and write.body == {"phase": "Available"}
    ]


# --------------------------------------------------------------------------- retention


@dataclass(frozen=True)
class VersionFacts:
    name: str
    workflow: str
    version: str
    committed_at: datetime.datetime
    phase: str
    active_runs: int = 0
    orphaned: bool = False  # from a rewritten-away history: never takes a `keepVersions` slot


def retention_writes(
    versions: Sequence[VersionFacts],
    in_use: set[tuple[str, str]],  # (workflow, version) pinned, active or previous anywhere
    retention: Retention,
    now: datetime.datetime,
) -> list[Write]:
    """Versions beyond the newest `keep_versions` of their workflow, unused, without active
    runs and older than `archive_after` become Archived (or are deleted with prune). Only
    versions git still holds take the kept slots: after a rewrite back to a lower version,
    the orphaned higher ones must not push reachable ones out."""
    writes: list[Write] = []
    by_workflow: dict[str, list[VersionFacts]] = {}
    for facts in versions:
        by_workflow.setdefault(facts.workflow, []).append(facts)
    for items in by_workflow.values():
        ordered = sorted(items, key=lambda f: parse_version(f.version), reverse=True)
        kept = {f.name for f in [f for f in ordered if not f.orphaned][: retention.keep_versions]}
        for facts in ordered:
            used = (facts.workflow, facts.version) in in_use or facts.active_runs > 0
            if facts.phase == "Archived" and (used or facts.name in kept):
                writes.append(
                    Write("patch-status", "WorkflowVersion", facts.name, {"phase": "Available"})
                )
        for facts in (f for f in ordered if f.name not in kept):
            if (facts.workflow, facts.version) in in_use or facts.active_runs > 0:
                continue
            if now - facts.committed_at < retention.archive_after:
                continue
            if retention.prune:
                writes.append(Write("delete", "WorkflowVersion", facts.name))
            elif facts.phase != "Archived":
                writes.append(
                    Write("patch-status", "WorkflowVersion", facts.name, {"phase": "Archived"})
                )
    return writes
