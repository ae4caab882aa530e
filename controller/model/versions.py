"""Versions from git history, as a pure fold over commits.

For each workflow file, every distinct `spec.version` becomes one version whose content is
the file as of the commit where that version first appeared. A later commit that changes the
content without bumping the version does not change it; it raises a `version-mutated`
finding instead. A deleted or invalid file removes nothing. `VersionIndex.apply` takes one
commit's changed files, so the same fold serves a full walk and an incremental sync.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from controller.model.findings import Finding
from controller.model.validate import (
    Manifest,
    check_environment,
    check_workflow,
    parse_manifest,
)


@dataclass(frozen=True)
class CommitMeta:
    id: str
    author: str  # "Name <email>"
    time: datetime.datetime
    message: str  # first line


@dataclass(frozen=True)
class VersionRecord:
    workflow: str
    version: str
    spec: dict[str, Any]
    labels: dict[str, str]
    digest: str
    path: str
    commit: CommitMeta
    problems: tuple[Finding, ...] = ()  # semantic errors: the version exists but is invalid
    # Mirrored from a history that was rewritten away: kept (nothing is lost), but no longer
    # reachable from the tracked ref, so `latest` and every other automatic choice skip it.
    orphaned: bool = False

    @property
    def valid(self) -> bool:
        return not any(problem.is_error for problem in self.problems)


@dataclass(frozen=True)
class EnvironmentRecord:
    name: str
    spec: dict[str, Any]
    labels: dict[str, str]
    digest: str
    path: str
    commit: CommitMeta  # the file's last commit
    # workflow → the commit that last changed that pin (set it, or changed its value)
    pin_commits: Mapping[str, CommitMeta] = field(default_factory=dict)

    def pin_commit(self, workflow: str) -> CommitMeta:
        """The commit that set this environment's pin of `workflow` to its current value."""
        return self.pin_commits.get(workflow, self.commit)


def pins_of(spec: Mapping[str, Any]) -> dict[str, str]:
    pins = spec.get("pins")
    if not isinstance(pins, Mapping):
        return {}
    return {str(workflow): str(pin) for workflow, pin in pins.items()}


def fold_pin_commits(
    previous: EnvironmentRecord | None, spec: Mapping[str, Any], commit: CommitMeta
) -> dict[str, CommitMeta]:
    """Per pin, the commit that last changed it: kept from `previous` when the pin's value
    is the same, `commit` when the pin is new or changed."""
    before = pins_of(previous.spec) if previous is not None else {}
    return {
        workflow: (
            previous.pin_commit(workflow)
            if previous is not None and before.get(workflow) == pin
            else commit
        )
        for workflow, pin in pins_of(spec).items()
    }


@dataclass(frozen=True)
class FileState:
    """What the newest commit says about one manifest file."""

    kind: str | None  # None when the file does not parse
    name: str | None
    version: str | None
    digest: str | None
    findings: tuple[Finding, ...] = ()
    commit: str = ""


def digest_of(value: Any) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class VersionIndex:
    versions: dict[str, dict[str, VersionRecord]] = field(default_factory=dict)
    environments: dict[str, EnvironmentRecord] = field(default_factory=dict)
    files: dict[str, FileState] = field(default_factory=dict)
    last_commit: str | None = None

    def orphan_all(self) -> None:
        """Before folding a rewritten history again: every version is orphaned until the new
        history shows it (`_apply_workflow` takes the mark off)."""
        for versions in self.versions.values():
            for number, record in versions.items():
                versions[number] = replace(record, orphaned=True)

    def orphaned(self) -> list[VersionRecord]:
        return [r for versions in self.versions.values() for r in versions.values() if r.orphaned]

    def apply(self, commit: CommitMeta, changes: Mapping[str, bytes | None]) -> list[Finding]:
        """Fold one commit's changed manifest files (path → content, None when deleted).
        Returns the findings this commit raised."""
        raised: list[Finding] = []
        for path in sorted(changes):
            content = changes[path]
            if content is None:
                state = self.files.pop(path, None)
                if state is not None and state.kind == "Environment" and state.name:
                    record = self.environments.get(state.name)
                    if record is not None and record.path == path:
                        del self.environments[state.name]
                continue
            manifest, findings = parse_manifest(content, path)
            if manifest is None:
                self.files[path] = FileState(None, None, None, None, tuple(findings), commit.id)
                raised += findings
                continue
            if manifest.kind == "Workflow":
                raised += self._apply_workflow(manifest, commit)
            else:
                raised += self._apply_environment(manifest, commit)
        self.last_commit = commit.id
        return raised

    def _apply_workflow(self, manifest: Manifest, commit: CommitMeta) -> list[Finding]:
        spec = manifest.spec
        version = spec["version"]
        digest = digest_of(spec)
        known = self.versions.setdefault(manifest.name, {})
        existing = known.get(version)
        if existing is not None and existing.orphaned:  # the new history has it too
            existing = known[version] = replace(existing, orphaned=False)
        raised: list[Finding] = []
        if existing is None:
            # Semantic checks only for a new version: an existing one was checked when it
            # appeared, and its content never changes.
            problems = tuple(check_workflow(manifest))
            raised = [p for p in problems if p.is_error]
            known[version] = VersionRecord(
                workflow=manifest.name,
                version=version,
                spec=spec,
                labels=dict(manifest.data["metadata"].get("labels", {})),
                digest=digest,
                path=manifest.path,
                commit=commit,
                problems=problems,
            )
        elif existing.digest != digest:
            raised.append(
                manifest.at(
                    ("spec", "version"),
                    "version-mutated",
                    f"{manifest.name} {version} changed in commit {commit.id[:12]} without a "
                    f"version bump; the mirrored {version} keeps the content of commit "
                    f"{existing.commit.id[:12]}. Bump spec.version to publish the change",
                    "warning",
                )
            )
        else:
            raised = [p for p in existing.problems if p.is_error and p.file == manifest.path]
        self.files[manifest.path] = FileState(
            "Workflow", manifest.name, version, digest, tuple(raised), commit.id
        )
        return raised

    def _apply_environment(self, manifest: Manifest, commit: CommitMeta) -> list[Finding]:
        problems = tuple(check_environment(manifest))
        digest = digest_of(manifest.spec)
        previous = self.environments.get(manifest.name)
        self.environments[manifest.name] = EnvironmentRecord(
            name=manifest.name,
            spec=manifest.spec,
            labels=dict(manifest.data["metadata"].get("labels", {})),
            digest=digest,
            path=manifest.path,
            commit=commit,
            pin_commits=fold_pin_commits(previous, manifest.spec, commit),
        )
        errors = tuple(p for p in problems if p.is_error)
        self.files[manifest.path] = FileState(
            "Environment", manifest.name, None, digest, errors, commit.id
        )
        return list(errors)

    def mutated(self) -> list[Finding]:
        """`version-mutated` findings that still hold at the newest commit."""
        return [
            finding
            for state in self.files.values()
            for finding in state.findings
            if finding.code == "version-mutated"
        ]

    def invalid_files(self) -> list[Finding]:
        """Error findings of files as they are at the newest commit."""
        return sorted(
            finding
            for state in self.files.values()
            for finding in state.findings
            if finding.is_error
        )

    def current_versions(self) -> dict[str, str]:
        """Workflow → the version its file declares at the newest commit."""
        return {
            state.name: state.version
            for state in self.files.values()
            if state.kind == "Workflow" and state.name and state.version
        }


# ------------------------------------------------------------------ persistence

# 2: environments carry `pinCommits` (workflow → commit id, the commits in `commits`). A
# snapshot of format 1 lacks them and is not read: the history is walked again once, which
# gives every pin the commit that really set it.
INDEX_FORMAT = 2


def _commit_to_json(commit: CommitMeta) -> dict[str, Any]:
    return {**asdict(commit), "time": commit.time.isoformat()}


def _commit_from_json(data: dict[str, Any]) -> CommitMeta:
    return CommitMeta(**{**data, "time": datetime.datetime.fromisoformat(data["time"])})


def _findings_from_json(items: list[dict[str, Any]]) -> tuple[Finding, ...]:
    return tuple(Finding(**item) for item in items)


def _environment_to_json(record: EnvironmentRecord, commits: dict[str, Any]) -> dict[str, Any]:
    for commit in record.pin_commits.values():
        if commit.id not in commits:
            commits[commit.id] = _commit_to_json(commit)
    return {
        "name": record.name,
        "spec": record.spec,
        "labels": record.labels,
        "digest": record.digest,
        "path": record.path,
        "commit": _commit_to_json(record.commit),
        "pinCommits": {workflow: c.id for workflow, c in record.pin_commits.items()},
    }


def index_to_json(index: VersionIndex) -> str:
    """A snapshot of the index, so a restarted operator walks only new commits."""
    commits: dict[str, Any] = {}
    environments = [_environment_to_json(r, commits) for r in index.environments.values()]
    return json.dumps(
        {
            "format": INDEX_FORMAT,
            "lastCommit": index.last_commit,
            "versions": [
                {
                    **{k: v for k, v in asdict(record).items() if k not in {"commit", "problems"}},
                    "commit": _commit_to_json(record.commit),
                    "problems": [asdict(p) for p in record.problems],
                }
                for versions in index.versions.values()
                for record in versions.values()
            ],
            "environments": environments,
            "commits": commits,
            "files": {
                path: {
                    **{k: v for k, v in asdict(state).items() if k != "findings"},
                    "findings": [asdict(f) for f in state.findings],
                }
                for path, state in index.files.items()
            },
        },
        separators=(",", ":"),
    )


def index_from_json(text: str) -> VersionIndex | None:
    """The index from a snapshot, or None when it is unreadable or of another format (the
    caller then walks the whole history again: a cache, never a source of truth)."""
    try:
        data = json.loads(text)
        if data.get("format") != INDEX_FORMAT:
            return None
        index = VersionIndex(last_commit=data["lastCommit"])
        for item in data["versions"]:
            record = VersionRecord(
                **{
                    **item,
                    "commit": _commit_from_json(item["commit"]),
                    "problems": _findings_from_json(item["problems"]),
                }
            )
            index.versions.setdefault(record.workflow, {})[record.version] = record
        commits = {
            commit_id: _commit_from_json(item) for commit_id, item in data["commits"].items()
        }
        for item in data["environments"]:
            env = EnvironmentRecord(
                name=item["name"],
                spec=item["spec"],
                labels=item["labels"],
                digest=item["digest"],
                path=item["path"],
                commit=_commit_from_json(item["commit"]),
                pin_commits={
                    workflow: commits[commit_id]
                    for workflow, commit_id in item["pinCommits"].items()
                },
            )
            index.environments[env.name] = env
        for path, item in data["files"].items():
            index.files[path] = FileState(
                **{**item, "findings": _findings_from_json(item["findings"])}
            )
        return index
    except (ValueError, KeyError, TypeError):
        return None
