"""Git notes on real repositories: append idempotently, push to a bare remote, and merge
when another writer pushed first."""

from __future__ import annotations

from pathlib import Path

import pygit2

from controller.git.fetch import SourceRef, fetch
from controller.git.notes import NOTES_REF, append_record, push_notes, read_records
from controller.testing.gitrepo import repo_from_directory

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def setup(tmp_path: Path) -> tuple[pygit2.Repository, str]:
    work = repo_from_directory(EXAMPLES, tmp_path / "work", "Add examples")
    remote = pygit2.init_repository(str(tmp_path / "remote.git"), bare=True)
    work.remotes.create("origin", remote.path)
    work.remotes["origin"].push(["refs/heads/main:refs/heads/main"])
    return remote, str(work.head.target)


def test_records_are_appended_once_and_pushed(tmp_path: Path) -> None:
    remote, commit = setup(tmp_path)
    cache, _ = fetch(remote.path, tmp_path / "cache.git", SourceRef("branch", "main"))
    assert append_record(cache, commit, {"id": "a", "environment": "prod", "result": "Activated"})
    assert not append_record(cache, commit, {"id": "a", "environment": "prod"})  # a retry
    push_notes(cache)
    assert [r["id"] for r in read_records(remote, commit)] == ["a"]
    assert remote.lookup_reference(NOTES_REF)


def test_a_rejected_push_merges_the_other_writers_notes(tmp_path: Path) -> None:
    remote, commit = setup(tmp_path)
    first, _ = fetch(remote.path, tmp_path / "first.git", SourceRef("branch", "main"))
    second, _ = fetch(remote.path, tmp_path / "second.git", SourceRef("branch", "main"))
    append_record(first, commit, {"id": "from-first"})
    push_notes(first)
    append_record(second, commit, {"id": "from-second"})
    push_notes(second)  # rejected once (not a fast-forward), merged, pushed
    assert sorted(r["id"] for r in read_records(remote, commit)) == ["from-first", "from-second"]
