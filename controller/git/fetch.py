"""Fetching a source's repository into a local cache with pygit2.

The cache is a bare repository per source. Only fetches happen (no work tree); a failed
fetch leaves the cache as it was, so the last good commit stays readable.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pygit2

from controller.git.history import GitError

RefKind = Literal["branch", "tag", "commit"]
FailureReason = Literal["FetchFailed", "AuthFailed"]


@dataclass(frozen=True)
class SourceRef:
    kind: RefKind
    name: str

    @classmethod
    def from_spec(cls, ref: dict[str, str] | None) -> SourceRef:
        ref = ref or {}
        kinds: tuple[RefKind, ...] = ("commit", "tag", "branch")
        for kind in kinds:
            if ref.get(kind):
                return cls(kind, ref[kind])
        return cls("branch", "main")

    def describe(self) -> str:
        return f"{self.kind} {self.name}"


@dataclass(frozen=True)
class Credentials:
    """From the source's secretRef: https username/password (token), or an ssh key."""

    username: str | None = None
    password: str | None = None
    ssh_identity: str | None = None  # private key, PEM/OpenSSH
    ssh_known_hosts: str | None = None

    def __repr__(self) -> str:  # never print secrets
        kinds = [k for k in ("username", "password", "ssh_identity") if getattr(self, k)]
        return f"Credentials({', '.join(kinds) or 'none'})"


class FetchError(GitError):
    def __init__(self, reason: FailureReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


_AUTH_PATTERNS = re.compile(
    r"auth|credential|401|403|permission denied|access denied|unauthori[sz]ed", re.IGNORECASE
)


def cache_path(cache_root: Path, namespace: str, name: str, url: str) -> Path:
    digest = hashlib.sha256(url.encode()).hexdigest()[:12]
    return cache_root / namespace / name / f"{digest}.git"


def normalize_url(url: str) -> str:
    """A local path becomes an absolute path; everything else is used as written."""
    if url.startswith("file://"):
        return url
    if re.match(r"^[a-z][a-z0-9+.-]*://", url) or re.match(r"^[^/]+@[^/]+:", url):
        return url
    return str(Path(url).expanduser().resolve())


class CredentialCallbacks(pygit2.RemoteCallbacks):
    """Answers libgit2's credential questions from a source's Secret, three times at most."""

    def __init__(self, credentials: Credentials) -> None:
        super().__init__()
        self._credentials = credentials
        self._attempts = 0

    def credentials(
        self, url: str, username_from_url: str | None, allowed: pygit2.enums.CredentialType
    ) -> pygit2.Username | pygit2.UserPass | pygit2.Keypair:
        self._attempts += 1
        if self._attempts > 3:  # libgit2 asks again after a rejection; stop the loop
            raise FetchError("AuthFailed", f"{url}: credentials were rejected")
        c = self._credentials
        if allowed & pygit2.enums.CredentialType.SSH_KEY and c.ssh_identity:
            return pygit2.KeypairFromMemory(
                username_from_url or c.username or "git", None, c.ssh_identity, ""
            )
        if allowed & pygit2.enums.CredentialType.USERPASS_PLAINTEXT and c.password:
            return pygit2.UserPass(c.username or username_from_url or "git", c.password)
        raise FetchError(
            "AuthFailed",
            f"{url} asks for credentials; set secretRef to a Secret with "
            "username and password (https) or identity and known_hosts (ssh)",
        )


def _refspecs(ref: SourceRef) -> list[str]:
    if ref.kind == "branch":
        return [f"+refs/heads/{ref.name}:refs/remotes/origin/{ref.name}"]
    if ref.kind == "tag":
        return [f"+refs/tags/{ref.name}:refs/tags/{ref.name}"]
    return ["+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"]


def fetch(
    url: str,
    cache: Path,
    ref: SourceRef,
    credentials: Credentials | None = None,
    timeout: float = 60.0,
) -> tuple[pygit2.Repository, pygit2.Commit]:
    """Fetch `ref` of `url` into the bare repository at `cache`; return it and the commit
    the ref points at. Raises FetchError (FetchFailed or AuthFailed) with a message that
    says what to do."""
    outcome: dict[str, object] = {}

    def work() -> None:
        try:
            outcome["result"] = _fetch(url, cache, ref, credentials or Credentials())
        except BaseException as error:  # handed over to the caller's thread
            outcome["error"] = error

    worker = threading.Thread(target=work, name=f"fetch {cache.name}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise FetchError("FetchFailed", f"fetching {url} took longer than {timeout:.0f}s")
    if "error" in outcome:
        error = outcome["error"]
        if isinstance(error, FetchError):
            raise error
        if isinstance(error, pygit2.GitError | KeyError | ValueError | OSError):
            text = str(error) or type(error).__name__
            reason: FailureReason = "AuthFailed" if _AUTH_PATTERNS.search(text) else "FetchFailed"
            raise FetchError(reason, f"fetching {url}: {text}") from error
        raise error  # type: ignore[misc]
    result = outcome["result"]
    assert isinstance(result, tuple)
    return result


def _fetch(
    url: str, cache: Path, ref: SourceRef, credentials: Credentials
) -> tuple[pygit2.Repository, pygit2.Commit]:
    if (cache / "HEAD").exists():
        repo = pygit2.Repository(str(cache))
    else:
        cache.parent.mkdir(parents=True, exist_ok=True)
        repo = pygit2.init_repository(str(cache), bare=True)
    remote_url = normalize_url(url)
    local = remote_url.removeprefix("file://")
    if local.startswith("/") and not Path(local).exists():
        raise FetchError("FetchFailed", f"repository path {local} does not exist")
    if "origin" in [r.name for r in repo.remotes]:
        if repo.remotes["origin"].url != remote_url:
            repo.remotes.set_url("origin", remote_url)
    else:
        repo.remotes.create("origin", remote_url)
    remote = repo.remotes["origin"]
    remote.fetch(
        _refspecs(ref),
        callbacks=CredentialCallbacks(credentials),
        prune=pygit2.enums.FetchPrune.PRUNE,
    )
    return repo, _tip(repo, ref)


def _tip(repo: pygit2.Repository, ref: SourceRef) -> pygit2.Commit:
    if ref.kind == "branch":
        name = f"refs/remotes/origin/{ref.name}"
    elif ref.kind == "tag":
        name = f"refs/tags/{ref.name}"
    else:
        try:
            commit = repo.revparse_single(ref.name).peel(pygit2.Commit)
        except (KeyError, ValueError, pygit2.GitError) as error:
            raise FetchError(
                "FetchFailed", f"commit {ref.name} is not in the repository"
            ) from error
        assert isinstance(commit, pygit2.Commit)
        return commit
    try:
        target = repo.lookup_reference(name).peel(pygit2.Commit)
    except KeyError as error:
        raise FetchError(
            "FetchFailed", f"{ref.describe()} does not exist in the repository"
        ) from error
    assert isinstance(target, pygit2.Commit)
    return target
