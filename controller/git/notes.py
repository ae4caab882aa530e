"""Audit records as git notes: one JSON line per record in `refs/notes/flowpin` on the
commit they are about, pushed to the source's remote (when `audit.gitNotes` is set).

Appending is idempotent per record id: writing the same record twice (a retried handler)
leaves one line. A push that is rejected because the remote's notes moved is merged and
retried: notes from two writers both survive.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pygit2

from controller.git.fetch import CredentialCallbacks, Credentials, FetchError

NOTES_REF = "refs/notes/flowpin"
SIGNATURE = pygit2.Signature("flowpin", "flowpin@flowpin.dev")


def read_records(repo: pygit2.Repository, commit: str) -> list[dict[str, Any]]:
    try:
        note = repo.lookup_note(commit, NOTES_REF)
    except KeyError:
        return []
    return read_records_from_text(note.message)


def append_record(repo: pygit2.Repository, commit: str, record: Mapping[str, Any]) -> bool:
    """Add `record` (which must carry an `id`) to the note on `commit`; False when a record
    with that id is already there."""
    if "id" not in record:
        raise ValueError("a git-note record needs an id (to stay idempotent)")
    try:
        existing = repo.lookup_note(commit, NOTES_REF).message
    except KeyError:
        existing = ""
    if any(r.get("id") == record["id"] for r in read_records(repo, commit)):
        return False
    line = json.dumps(dict(record), sort_keys=True, separators=(",", ":"))
    message = (existing.rstrip("\n") + "\n" if existing.strip() else "") + line + "\n"
    repo.create_note(message, SIGNATURE, SIGNATURE, commit, NOTES_REF, True)
    return True


def push_notes(
    repo: pygit2.Repository, credentials: Credentials | None = None, attempts: int = 3
) -> None:
    """Push `refs/notes/flowpin` to origin; on a rejection, fetch theirs, merge, retry."""
    remote = repo.remotes["origin"]
    last = ""
    for _ in range(attempts):
        try:
            remote.push(
                [f"{NOTES_REF}:{NOTES_REF}"],
                callbacks=CredentialCallbacks(credentials or Credentials()),
            )
            return
        except pygit2.GitError as error:
            last = str(error)
            _merge_remote_notes(repo, CredentialCallbacks(credentials or Credentials()))
    raise FetchError(
        "FetchFailed", f"pushing {NOTES_REF} to {remote.url} failed {attempts} times: {last}"
    )


def _merge_remote_notes(repo: pygit2.Repository, callbacks: CredentialCallbacks) -> None:
    theirs_ref = "refs/notes/flowpin-remote"
    repo.remotes["origin"].fetch([f"+{NOTES_REF}:{theirs_ref}"], callbacks=callbacks)
    try:
        theirs = repo.lookup_reference(theirs_ref).peel(pygit2.Commit)
    except KeyError:
        return
    for note in repo.notes(theirs_ref):  # type: ignore[call-arg]  # stubs lack the ref
        annotated = str(note.annotated_id)
        for record in read_records_from_text(note.message):
            if "id" in record:
                append_record(repo, annotated, record)
    # Make ours a descendant of theirs, so the next push fast-forwards.
    ours = repo.lookup_reference(NOTES_REF).peel(pygit2.Commit)
    merged = repo.create_commit(
        None, SIGNATURE, SIGNATURE, "Merge flowpin notes", ours.tree.id, [ours.id, theirs.id]
    )
    repo.lookup_reference(NOTES_REF).set_target(merged)


def read_records_from_text(text: str) -> list[dict[str, Any]]:
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # somebody else's free text in our notes ref: keep it, skip it
        if isinstance(record, dict):
            records.append(record)
    return records
