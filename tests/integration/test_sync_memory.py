"""Full and incremental source syncs, on real git repositories, against an in-memory API.

The end-to-end suite runs the same code against a real API server; here the API is a plain
dictionary so that the test can count what each sync lists and writes, break a write, and
compare the namespace after an incremental sync with what a full sync would do.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pygit2
import pytest

from controller.operator.sync import SourceSyncer, SyncReport
from controller.testing.gitrepo import commit_all, repo_from_directory

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
LEAD = "workflows/lead-nurture.yaml"
NS = "ns"
Obj = dict[str, Any]


class Conflict(Exception):
    pass


class MemoryKube:
    """The part of `controller.operator.kube.Kube` a sync uses, over a dictionary."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], Obj] = {}
        self.writes = 0
        self.metrics = None
        self.lists: list[str] = []
        self.calls: list[tuple[str, str, str]] = []  # (verb, kind, name) of each write
        self.fail: Callable[[str, str, str], bool] = lambda verb, kind, name: False
        self._version = 0

    def _written(self, verb: str, kind: str, name: str) -> None:
        self.writes += 1
        self.calls.append((verb, kind, name))
        if self.fail(verb, kind, name):
            raise RuntimeError(f"API server unavailable ({verb} {kind} {name})")

    def _stamp(self, obj: Obj) -> None:
        self._version += 1
        obj["metadata"]["resourceVersion"] = str(self._version)

    def put(self, kind: str, obj: Obj) -> None:
        obj = copy.deepcopy(obj)
        self._stamp(obj)
        self.objects[(kind, obj["metadata"].get("namespace", NS), obj["metadata"]["name"])] = obj

    async def list(self, kind: str, namespace: str, label_selector: str | None = None) -> list[Obj]:
        self.lists.append(kind)
        return [
            copy.deepcopy(o)
            for (k, ns, _), o in self.objects.items()
            if (k, ns) == (kind, namespace)
        ]

    async def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        obj = self.objects.get((kind, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    async def secret(self, namespace: str, name: str) -> dict[str, str] | None:
        return None

    async def create(self, kind: str, namespace: str, body: Obj) -> bool:
        name = body["metadata"]["name"]
        self._written("create", kind, name)
        if (kind, namespace, name) in self.objects:
            return False
        obj = copy.deepcopy(body)
        obj.pop("status", None)
        self.put(kind, obj)
        return True

    def _existing(self, kind: str, namespace: str, name: str) -> Obj:
        obj = self.objects.get((kind, namespace, name))
        if obj is None:
            raise Conflict(f"{kind} {name} not found")
        return obj

    async def replace_spec(self, kind: str, namespace: str, name: str, body: Obj) -> None:
        self._written("patch", kind, name)
        obj = self._existing(kind, namespace, name)
        obj["spec"] = copy.deepcopy(body["spec"])
        obj["metadata"]["labels"] = dict(body["metadata"]["labels"])
        self._stamp(obj)

    async def patch_metadata(self, kind: str, namespace: str, name: str, metadata: Obj) -> None:
        self._written("patch-metadata", kind, name)
        obj = self._existing(kind, namespace, name)
        obj["metadata"].setdefault("labels", {}).update(metadata.get("labels", {}))
        if "ownerReferences" in metadata:  # a merge patch replaces a list whole
            obj["metadata"]["ownerReferences"] = copy.deepcopy(metadata["ownerReferences"])
        self._stamp(obj)

    async def patch_status(self, kind: str, namespace: str, name: str, status: Obj) -> None:
        self._written("patch-status", kind, name)
        obj = self._existing(kind, namespace, name)
        obj.setdefault("status", {}).update(copy.deepcopy(status))
        self._stamp(obj)

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        self._written("delete", kind, name)
        self.objects.pop((kind, namespace, name), None)

    async def event(self, obj: Obj, reason: str, message: str, type_: str = "Normal") -> None:
        self._written("create", "Event", obj["metadata"]["name"])

    def names(self, kind: str) -> list[str]:
        return sorted(name for (k, _, name) in self.objects if k == kind)

    def mirrored(self) -> dict[tuple[str, str], Obj]:
        """Spec, labels and the source's status fields of every mirrored object."""
        return {
            (kind, name): {
                "spec": obj.get("spec"),
                "labels": obj["metadata"].get("labels"),
                "status": {
                    k: v
                    for k, v in (obj.get("status") or {}).items()
                    if k in ("phase", "changeClass", "previousVersion", "conditions")
                },
            }
            for (kind, _, name), obj in self.objects.items()
            if kind != "WorkflowSource"
        }


@pytest.fixture
def repo(tmp_path: Path) -> pygit2.Repository:
    return repo_from_directory(EXAMPLES, tmp_path / "repo", "Add examples")


@pytest.fixture
def kube(repo: pygit2.Repository) -> MemoryKube:
    kube = MemoryKube()
    kube.put(
        "WorkflowSource",
        {
            "apiVersion": "flowpin.dev/v1alpha1",
            "kind": "WorkflowSource",
            "metadata": {
                "name": "src",
                "namespace": NS,
                "uid": "uid-1",
                "generation": 1,
                "creationTimestamp": "2026-01-01T00:00:00Z",
            },
            "spec": {"url": str(repo.workdir), "ref": {"branch": "main"}},
        },
    )
    return kube


def syncer(kube: MemoryKube, tmp_path: Path, full_every: int = 10) -> SourceSyncer:
    return SourceSyncer(kube, tmp_path / "cache", full_every=full_every)  # type: ignore[arg-type]


def sync(syncer: SourceSyncer) -> SyncReport:
    return asyncio.run(syncer.sync(NS, "src"))


def bump(repo: pygit2.Repository, version: str) -> str:
    file = Path(repo.workdir) / LEAD
    text = file.read_text()
    current = text.split("version: ")[1].split("\n")[0]
    file.write_text(text.replace(f"version: {current}", f"version: {version}", 1))
    return commit_all(repo, f"lead-nurture {version}")


def fresh_full_sync_writes(kube: MemoryKube, tmp_path: Path) -> list[tuple[str, str, str]]:
    """The writes a newly started operator (a full sync) would still make."""
    before = len(kube.calls)
    sync(SourceSyncer(kube, tmp_path / "other-cache"))  # type: ignore[arg-type]
    return [call for call in kube.calls[before:] if call[1] != "WorkflowSource"]


def test_a_new_commit_is_synced_without_listing_and_as_a_full_sync_would(
    kube: MemoryKube, repo: pygit2.Repository, tmp_path: Path
) -> None:
    source = syncer(kube, tmp_path)
    first = sync(source)
    assert first.full and first.reason == "Synced"
    assert set(kube.lists) == {
        "WorkflowVersion",
        "Environment",
        "WorkflowDeployment",
        "WorkflowSource",
        "WorkflowRun",
    }
    assert len(kube.names("WorkflowDeployment")) == 6

    kube.lists.clear()
    before = len(kube.calls)
    bump(repo, "1.5.0")
    second = sync(source)
    assert (second.reason, second.full, kube.lists) == ("Synced", False, [])
    assert sorted(kube.calls[before:]) == [
        ("create", "Event", "src"),  # Ready: "synced <commit>"
        ("create", "WorkflowVersion", "lead-nurture.v1.5.0"),
        ("patch", "WorkflowDeployment", "lead-nurture.dev"),  # dev pins latest
        ("patch-status", "WorkflowSource", "src"),
    ]  # the version's facts are in its spec: no status write
    version = kube.objects[("WorkflowVersion", NS, "lead-nurture.v1.5.0")]
    assert version["spec"]["facts"]["previousVersion"] == "1.4.0"
    assert "status" not in version
    assert kube.objects[("WorkflowSource", NS, "src")]["status"]["counts"]["versions"] == 3
    assert fresh_full_sync_writes(kube, tmp_path) == []  # nothing left for a full sync


def test_every_nth_round_and_a_request_list_everything(
    kube: MemoryKube, repo: pygit2.Repository, tmp_path: Path
) -> None:
    source = syncer(kube, tmp_path, full_every=3)
    reports = []
    for version in ("1.5.0", "1.6.0", "1.7.0", None, "1.8.0", None):
        if version:
            bump(repo, version)
        reports.append(sync(source))
    assert [r.full for r in reports] == [True, False, False, True, False, False]
    assert [r.skipped_listing for r in reports] == [False] * 5 + [True]
    source_obj = kube.objects[("WorkflowSource", NS, "src")]
    source_obj["metadata"]["annotations"] = {"flowpin.dev/requestedAt": "now"}
    assert sync(source).full  # flowpin sync: a full one
    assert not sync(source).full


def test_an_object_deleted_by_hand_returns_with_the_next_full_sync(
    kube: MemoryKube, repo: pygit2.Repository, tmp_path: Path
) -> None:
    source = syncer(kube, tmp_path, full_every=3)
    sync(source)
    del kube.objects[("WorkflowDeployment", NS, "onboarding.prod")]
    bump(repo, "1.5.0")
    assert not sync(source).full
    assert "onboarding.prod" not in kube.names("WorkflowDeployment")  # not seen yet
    bump(repo, "1.6.0")
    assert not sync(source).full
    assert sync(source).full  # the third round
    assert "onboarding.prod" in kube.names("WorkflowDeployment")


def test_a_failed_write_makes_the_next_sync_a_full_one(
    kube: MemoryKube, repo: pygit2.Repository, tmp_path: Path
) -> None:
    source = syncer(kube, tmp_path)
    sync(source)
    bump(repo, "1.5.0")
    kube.fail = lambda verb, kind, name: verb == "patch" and kind == "WorkflowDeployment"
    assert sync(source).reason == "SyncFailed"  # said on the source, not only in the log
    assert "RuntimeError: API server unavailable" in ready(kube)["message"]
    kube.fail = lambda verb, kind, name: False
    kube.lists.clear()
    again = sync(source)  # the same commit: completed by listing everything
    assert again.full and kube.lists
    version = kube.objects[("WorkflowVersion", NS, "lead-nurture.v1.5.0")]
    assert version["spec"]["facts"]["changeClass"] == "none"
    assert fresh_full_sync_writes(kube, tmp_path) == []


def test_an_object_someone_else_created_meanwhile_is_left_to_a_full_sync(
    kube: MemoryKube, repo: pygit2.Repository, tmp_path: Path
) -> None:
    source = syncer(kube, tmp_path)
    sync(source)
    bump(repo, "1.5.0")
    theirs = {
        "metadata": {
            "name": "lead-nurture.v1.5.0",
            "namespace": NS,
            "labels": {"flowpin.dev/source": "other"},
        },
        "spec": {"workflow": "lead-nurture", "version": "1.5.0"},
    }
    kube.put("WorkflowVersion", theirs)
    before = len(kube.calls)
    report = sync(source)
    assert not report.full and report.details["surprises"] == 1
    assert ("patch-status", "WorkflowVersion", "lead-nurture.v1.5.0") not in kube.calls[before:]
    assert sync(source).full  # what it found is looked at with everything else


def ready(kube: MemoryKube) -> Obj:
    status = kube.objects[("WorkflowSource", NS, "src")].get("status") or {}
    return next(c for c in status.get("conditions", []) if c["type"] == "Ready")


def test_a_key_yaml_reads_as_a_boolean_is_reported_and_the_rest_still_syncs(
    kube: MemoryKube, repo: pygit2.Repository, tmp_path: Path
) -> None:
    """`on: error` in a step is the boolean key true in YAML 1.1: it used to crash every sync
    while the source stayed Ready on the old commit (issue 13)."""
    the_syncer = syncer(kube, tmp_path)
    sync(the_syncer)
    file = Path(repo.workdir) / LEAD
    file.write_text(
        file.read_text().replace("    - id: welcome\n", "    - id: welcome\n      on: error\n", 1)
    )
    bump(repo, "9.0.0")
    report = sync(the_syncer)
    assert report.reason == "Synced"
    condition = ready(kube)
    assert (condition["status"], condition["reason"]) == ("False", "InvalidManifests")
    assert f"{LEAD}:" in condition["message"] and "key `on` is not a string" in condition["message"]
    assert "lead-nurture.v9.0.0" not in kube.names("WorkflowVersion")
    assert kube.names("WorkflowVersion")  # what was mirrored stays


def test_an_unexpected_error_after_the_fetch_reaches_the_status_and_an_event(
    kube: MemoryKube, repo: pygit2.Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    the_syncer = syncer(kube, tmp_path)
    sync(the_syncer)
    mirrored = kube.mirrored()
    bump(repo, "9.0.0")

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("walk broke")

    monkeypatch.setattr("controller.operator.sync.walk", broken)
    events_before = [call for call in kube.calls if call[1] == "Event"]
    report = sync(the_syncer)
    assert report.reason == "SyncFailed"
    condition = ready(kube)
    assert (condition["status"], condition["reason"]) == ("False", "SyncFailed")
    assert "ValueError: walk broke" in condition["message"]
    assert len([call for call in kube.calls if call[1] == "Event"]) == len(events_before) + 1
    assert kube.mirrored() == mirrored  # nothing lost, nothing half-written
    monkeypatch.undo()
    assert sync(the_syncer).reason == "Synced"
    assert ready(kube)["reason"] == "Succeeded"
    assert "lead-nurture.v9.0.0" in kube.names("WorkflowVersion")


def test_a_source_deleted_and_created_again_starts_with_a_full_sync(
    kube: MemoryKube, repo: pygit2.Repository, tmp_path: Path
) -> None:
    """kubectl delete + apply of an unchanged source: owner GC removes its objects, and the
    new object (another uid) must mirror everything at once, not trust the old object's
    memory and mirror nothing until the tenth round (issue 14)."""
    the_syncer = syncer(kube, tmp_path)
    sync(the_syncer)
    versions = kube.names("WorkflowVersion")
    assert versions
    old_cache = next((tmp_path / "cache").rglob("*.git"))
    source = kube.objects[("WorkflowSource", NS, "src")]
    kube.objects = {("WorkflowSource", NS, "src"): source}  # what owner GC leaves
    source["metadata"]["uid"] = "uid-2"
    source.pop("status", None)
    report = sync(the_syncer)
    assert report.full and report.reason == "Synced"
    assert kube.names("WorkflowVersion") == versions
    assert not old_cache.exists()  # the old object's cache is gone


def test_a_cache_left_by_another_source_object_is_never_read(
    kube: MemoryKube, repo: pygit2.Repository, tmp_path: Path
) -> None:
    """A fresh cluster whose operator finds an earlier run's cache at the same path (same
    namespace, name and URL; another repository's content) mirrors what git has now."""
    earlier = tmp_path / "earlier"
    other = repo_from_directory(EXAMPLES, earlier, "Another repository")
    file = Path(other.workdir) / LEAD
    file.write_text(file.read_text().replace("version: ", "version: 7.7.7 #", 1))
    commit_all(other, "a version only the earlier repository had")
    kube_before = MemoryKube()
    source = copy.deepcopy(kube.objects[("WorkflowSource", NS, "src")])
    source["metadata"]["uid"] = "uid-earlier"
    kube_before.put("WorkflowSource", source)
    the_url = source["spec"]["url"]
    Path(the_url).rename(tmp_path / "ours")
    Path(other.workdir).rename(the_url)  # the earlier run's repository, at the same path
    sync(syncer(kube_before, tmp_path))
    assert "lead-nurture.v7.7.7" in kube_before.names("WorkflowVersion")
    Path(the_url).rename(earlier)
    (tmp_path / "ours").rename(the_url)

    report = sync(syncer(kube, tmp_path))  # a new operator, the same cache root
    assert report.reason == "Synced"
    assert "lead-nurture.v7.7.7" not in kube.names("WorkflowVersion")
    condition = ready(kube)
    assert condition["reason"] == "Succeeded", condition


def test_a_rewrite_is_said_until_a_full_sync_and_latest_skips_orphans(
    kube: MemoryKube, repo: pygit2.Repository, tmp_path: Path
) -> None:
    the_syncer = syncer(kube, tmp_path)
    sync(the_syncer)
    root = repo.head.target
    bump(repo, "1.7.0")
    sync(the_syncer)
    dev = kube.objects[("WorkflowDeployment", NS, "lead-nurture.dev")]
    assert dev["spec"]["version"] == "1.7.0"
    repo.reset(root, pygit2.enums.ResetMode.HARD)
    bump(repo, "1.5.0")
    report = sync(the_syncer)
    assert not report.full  # found by an incremental sync
    assert ready(kube)["reason"] == "HistoryRewritten"
    dev = kube.objects[("WorkflowDeployment", NS, "lead-nurture.dev")]
    assert dev["spec"]["version"] == "1.5.0"  # latest: what git has now, not 1.7.0
    assert kube.objects[("WorkflowVersion", NS, "lead-nurture.v1.7.0")]["status"]["orphaned"]
    bump(repo, "1.5.1")
    assert not sync(the_syncer).full
    assert ready(kube)["reason"] == "HistoryRewritten"  # not a plain Succeeded
    kube.objects[("WorkflowSource", NS, "src")]["metadata"]["generation"] = 2  # a full sync
    assert sync(the_syncer).full
    assert ready(kube)["reason"] == "Succeeded"
    assert kube.objects[("WorkflowVersion", NS, "lead-nurture.v1.7.0")]["status"]["orphaned"]


def test_a_source_applied_again_before_garbage_collection_adopts_what_is_there(
    kube: MemoryKube, repo: pygit2.Repository, tmp_path: Path
) -> None:
    """`kubectl delete` returns before garbage collection runs: the new object's first sync
    may list the old object's versions. It must move their owner to its own uid (or GC
    takes them all, and memory said they were there), and list everything again next time."""
    the_syncer = syncer(kube, tmp_path)
    sync(the_syncer)
    source = kube.objects[("WorkflowSource", NS, "src")]
    source["metadata"]["uid"] = "uid-2"  # deleted and applied again; nothing collected yet
    source.pop("status", None)
    before = len(kube.calls)
    report = sync(the_syncer)
    adopted = [call for call in kube.calls[before:] if call[0] == "patch-metadata"]
    mirrored = [key for key in kube.objects if key[0] != "WorkflowSource"]
    assert report.full and len(adopted) == len(mirrored)
    for key in mirrored:
        (owner,) = kube.objects[key]["metadata"]["ownerReferences"]
        assert owner["uid"] == "uid-2", key
    # GC wins a race for one of them anyway: the next sync lists everything and restores it.
    del kube.objects[("WorkflowVersion", NS, "lead-nurture.v1.4.0")]
    assert sync(the_syncer).full
    assert "lead-nurture.v1.4.0" in kube.names("WorkflowVersion")
