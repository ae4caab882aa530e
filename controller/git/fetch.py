"""Fetching a source's repository into a local cache with pygit2.

The cache is a bare repository per source. Only fetches happen (no work tree); a failed
fetch leaves the cache as it was, so the last good commit stays readable.

Over ssh the server's host key must be in the Secret's `known_hosts`; an unknown key is
refused, never trusted on first use. pygit2 hands `certificate_check` no host key (always
None), but libgit2 itself checks the key against `$HOME/.ssh/known_hosts` and passes the
verdict as `valid`. HOME is process-wide (and libgit2 reads it once), so an ssh fetch runs in
a short-lived child process whose HOME holds only that Secret's keys for that one host; the
child also keeps libssh2 crashes and a killed-on-timeout fetch out of the operator.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

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
    secret: str | None = None  # the Secret's name, for messages that say what to fix

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


def cache_path(cache_root: Path, namespace: str, name: str, uid: str, url: str) -> Path:
    """The bare mirror of one source object: keyed by its uid and URL, so a source deleted
    and created again, or a fresh cluster finding an earlier run's cache at the same path,
    never reads what an earlier object fetched."""
    digest = hashlib.sha256(f"{uid}\n{url}".encode()).hexdigest()[:16]
    return cache_root / namespace / name / f"{digest}.git"


def prune_caches(keep: Path) -> list[Path]:
    """Remove the other caches (and their index snapshots) of the same source name: what an
    earlier object with that name, or an earlier URL, fetched. Returns what was removed."""
    removed: list[Path] = []
    if not keep.parent.is_dir():
        return removed
    for entry in keep.parent.iterdir():
        if entry.name in (keep.name, keep.with_suffix(".index.json").name):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def normalize_url(url: str) -> str:
    """A local path becomes an absolute path; everything else is used as written."""
    if url.startswith("file://"):
        return url
    if re.match(r"^[a-z][a-z0-9+.-]*://", url) or re.match(r"^[^/]+@[^/]+:", url):
        return url
    return str(Path(url).expanduser().resolve())


# ------------------------------------------------------------------ ssh hosts


@dataclass(frozen=True)
class SshTarget:
    host: str  # as written in the URL: libgit2 looks it up in known_hosts as written
    port: int

    @property
    def pattern(self) -> str:
        """How OpenSSH names this host in known_hosts."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    @property
    def keyscan(self) -> str:
        port = f"-p {self.port} " if self.port != 22 else ""
        return f"ssh-keyscan {port}{self.host}"


_SSH_SCHEMES = ("ssh://", "ssh+git://", "git+ssh://")
_SCP_LIKE = re.compile(r"^[^/@]+@(?P<host>\[[^\]/]+\]|[^/:\[]+):")


def ssh_target(url: str) -> SshTarget | None:
    """The host and port of an ssh URL (`ssh://user@host:port/path` or scp-like
    `user@host:path`); None for any other URL."""
    if url.startswith(_SSH_SCHEMES):
        netloc = urlsplit(url).netloc.rpartition("@")[2]
        if netloc.startswith("["):
            host, _, rest = netloc[1:].partition("]")
            port = rest.removeprefix(":")
        else:
            host, _, port = netloc.partition(":")
        if not host or not (port.isdigit() or port == ""):
            raise FetchError("FetchFailed", f"{url} is not a valid ssh URL")
        return SshTarget(host, int(port) if port else 22)
    if "://" not in url and (match := _SCP_LIKE.match(url)):
        return SshTarget(match["host"].strip("[]"), 22)
    return None


# libssh2, which verifies the key, reads these types; markers and other types are left out.
_HOST_KEY_TYPES = frozenset(
    {"ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa"}
)


@dataclass(frozen=True)
class KnownHost:
    patterns: tuple[str, ...]
    key_type: str
    key: str  # base64 of the key blob, as written
    marker: str = ""  # "@revoked", "@cert-authority" or ""

    def names(self, target: SshTarget) -> bool:
        """Whether this line is for `target`, as OpenSSH reads it: a plain or hashed
        (`|1|salt|hash`) name, `[host]:port` for a port other than 22, `!` negates."""
        wanted = target.pattern.lower()
        found = False
        for pattern in self.patterns:
            negated = pattern.startswith("!")
            name = pattern[1:] if negated else pattern
            if _hashed_name_matches(name, wanted) or name.lower() == wanted:
                if negated:
                    return False
                found = True
        return found


def _hashed_name_matches(pattern: str, name: str) -> bool:
    if not pattern.startswith("|1|"):
        return False
    try:
        salt_b64, _, digest_b64 = pattern[3:].partition("|")
        salt, digest = base64.b64decode(salt_b64), base64.b64decode(digest_b64)
    except (binascii.Error, ValueError):
        return False
    mine = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return hmac.compare_digest(mine, digest)


def _key_blob_type(key: str) -> str | None:
    """The key type recorded inside a base64 ssh public key blob, or None if malformed."""
    try:
        blob = base64.b64decode(key, validate=True)
        (length,) = struct.unpack(">I", blob[:4])
        return blob[4 : 4 + length].decode("ascii") if len(blob) > 4 + length else None
    except (binascii.Error, ValueError, struct.error, UnicodeDecodeError):
        return None


def parse_known_hosts(text: str) -> list[KnownHost]:
    """The well-formed lines of an OpenSSH known_hosts file; comments, blank and malformed
    lines are dropped (a malformed line never grants trust)."""
    entries: list[KnownHost] = []
    for raw in text.splitlines():
        fields = raw.split()
        if not fields or fields[0].startswith("#"):
            continue
        marker = fields.pop(0) if fields[0].startswith("@") else ""
        if len(fields) < 3:
            continue
        patterns, key_type, key = fields[0], fields[1], fields[2]
        if _key_blob_type(key) != key_type:
            continue
        entries.append(KnownHost(tuple(patterns.split(",")), key_type, key, marker))
    return entries


def trusted_host_keys(known_hosts: str, target: SshTarget) -> list[KnownHost]:
    """The keys `known_hosts` trusts for `target`: lines naming it with a type libssh2
    verifies, minus any key marked @revoked anywhere in the file."""
    entries = parse_known_hosts(known_hosts)
    revoked = {(e.key_type, e.key) for e in entries if e.marker == "@revoked"}
    return [
        e
        for e in entries
        if not e.marker
        and e.key_type in _HOST_KEY_TYPES
        and (e.key_type, e.key) not in revoked
        and e.names(target)
    ]


def _secret_words(credentials: Credentials) -> str:
    return f"Secret {credentials.secret}" if credentials.secret else "the Secret in spec.secretRef"


def _host_key_advice(target: SshTarget) -> str:
    return (
        f"get it with `{target.keyscan}` and check its fingerprint against the one "
        "your git host publishes"
    )


def _untrusted_host_message(url: str, target: SshTarget, credentials: Credentials) -> str | None:
    """Why `url` must not be contacted with these credentials, or None when known_hosts
    holds a key for its host."""
    secret = _secret_words(credentials)
    if not credentials.ssh_identity and not credentials.ssh_known_hosts:
        return (
            f"{url} is an ssh URL: set spec.secretRef to a Secret with identity (the private "
            f"key) and known_hosts (the host key of {target.pattern}; {_host_key_advice(target)})"
        )
    if not (credentials.ssh_known_hosts or "").strip():
        return (
            f"{url}: {secret} has no known_hosts, and an unknown ssh host key is never "
            f"trusted; add the host key of {target.pattern} to known_hosts in {secret} "
            f"({_host_key_advice(target)})"
        )
    if not trusted_host_keys(credentials.ssh_known_hosts or "", target):
        return (
            f"{url}: known_hosts in {secret} has no usable key for host {target.pattern}; "
            f"add the host's key to known_hosts in {secret} ({_host_key_advice(target)}). "
            "Lines for other hosts, wildcards, @cert-authority and revoked keys do not count"
        )
    return None


def _mismatch_message(url: str, target: SshTarget, credentials: Credentials) -> str:
    secret = _secret_words(credentials)
    return (
        f"{url}: the ssh host key of {target.pattern} does not match known_hosts in "
        f"{secret}: the host changed its key, or something is intercepting the connection. "
        f"If the host rotated its key, replace its line in known_hosts in {secret} "
        f"({_host_key_advice(target)})"
    )


# ------------------------------------------------------------------ callbacks


class CredentialCallbacks(pygit2.RemoteCallbacks):
    """Answers libgit2's credential questions from a source's Secret, three times at most,
    and never accepts a host key that libgit2 could not verify."""

    def __init__(self, credentials: Credentials, url: str | None = None) -> None:
        super().__init__()
        self._credentials = credentials
        self._url = url
        self._attempts = 0

    def certificate_check(self, certificate: None, valid: bool, host: bytes) -> bool:
        """`valid` is libgit2's verdict: TLS verification, or for ssh whether the key is in
        $HOME/.ssh/known_hosts. pygit2 would accept any ssh key by default."""
        if valid:
            return True
        target = ssh_target(self._url) if self._url else None
        if target is not None:
            raise FetchError(
                "AuthFailed", _mismatch_message(self._url or "", target, self._credentials)
            )
        if self._url is not None:
            raise pygit2.Passthrough  # TLS: libgit2 refuses and says why, as without a callback
        return False  # transport unknown: refuse rather than guess

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
    credentials = credentials or Credentials()
    target = ssh_target(url)
    if target is not None:
        return _fetch_over_ssh(url, cache, ref, credentials, target, timeout)
    outcome: dict[str, object] = {}

    def work() -> None:
        try:
            outcome["result"] = _fetch(url, cache, ref, credentials)
        except BaseException as error:  # handed over to the caller's thread
            outcome["error"] = error

    worker = threading.Thread(target=work, name=f"fetch {cache.name}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise FetchError("FetchFailed", f"fetching {url} took longer than {timeout:.0f}s")
    if "error" in outcome:
        error = outcome["error"]
        assert isinstance(error, BaseException)
        raise _as_fetch_error(url, error) from error
    result = outcome["result"]
    assert isinstance(result, tuple)
    return result


def _as_fetch_error(url: str, error: BaseException) -> BaseException:
    """A FetchError for what a fetch can fail with; anything else unchanged."""
    if isinstance(error, FetchError):
        return error
    if isinstance(error, pygit2.GitError | KeyError | ValueError | OSError):
        text = str(error) or type(error).__name__
        reason: FailureReason = "AuthFailed" if _AUTH_PATTERNS.search(text) else "FetchFailed"
        return FetchError(reason, f"fetching {url}: {text}")
    return error


# Run by the child with the interpreter's isolated mode: no PYTHONPATH, no user site, no cwd.
_CHILD_CODE = (
    "import sys; sys.path.insert(0, {root!r}); "
    "from controller.git.fetch import _ssh_child; _ssh_child()"
)


def _fetch_over_ssh(
    url: str,
    cache: Path,
    ref: SourceRef,
    credentials: Credentials,
    target: SshTarget,
    timeout: float,
) -> tuple[pygit2.Repository, pygit2.Commit]:
    """Fetch in a child whose HOME holds only the trusted keys of `target` (see the module
    docstring); the identity goes over stdin, never into a file, argv or the environment."""
    refusal = _untrusted_host_message(url, target, credentials)
    if refusal:
        raise FetchError("AuthFailed", refusal)
    keys = trusted_host_keys(credentials.ssh_known_hosts or "", target)
    request = {
        "url": url,
        "cache": str(cache),
        "ref": [ref.kind, ref.name],
        "username": credentials.username,
        "identity": credentials.ssh_identity,
        "secret": credentials.secret,
    }
    with tempfile.TemporaryDirectory(prefix="flowpin-ssh-") as home:
        ssh_dir = Path(home) / ".ssh"
        ssh_dir.mkdir(mode=0o700)
        # Rewritten to the one name libgit2 asks for, so libssh2 matches as OpenSSH would.
        lines = [f"{target.pattern} {key.key_type} {key.key}\n" for key in keys]
        (ssh_dir / "known_hosts").write_text("".join(lines))
        env = {"HOME": home, "XDG_CONFIG_HOME": str(Path(home) / ".config")}
        env["PATH"] = os.environ.get("PATH", os.defpath)
        root = str(Path(__file__).resolve().parents[2])
        try:
            child = subprocess.run(
                [sys.executable, "-I", "-c", _CHILD_CODE.format(root=root)],
                input=json.dumps(request).encode(),
                capture_output=True,
                env=env,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            raise FetchError(
                "FetchFailed", f"fetching {url} took longer than {timeout:.0f}s"
            ) from error
    answer = _child_answer(child.stdout)
    if answer is None or child.returncode != 0:
        detail = child.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise FetchError(
            "FetchFailed",
            f"fetching {url}: the fetch process ended with status {child.returncode} "
            f"({detail[0][:300]})",
        )
    if "reason" in answer:
        message = str(answer.get("message", ""))
        if answer["reason"] == "AuthFailed":
            raise FetchError("AuthFailed", message)
        if "Unable to exchange encryption keys" in message:
            # libgit2 asks only for the key types known_hosts has for the host
            types = ", ".join(sorted({key.key_type for key in keys}))
            raise FetchError(
                "AuthFailed",
                f"{_mismatch_message(url, target, credentials)}; it offers no {types} key "
                f"({message.rpartition(': ')[2]})",
            )
        raise FetchError("FetchFailed", message)
    repo = pygit2.Repository(str(cache))
    return repo, _tip(repo, ref)


def _child_answer(stdout: bytes) -> dict[str, Any] | None:
    lines = stdout.decode(errors="replace").strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else None
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


def _ssh_child() -> None:
    """The child's side of `_fetch_over_ssh`: one fetch, one JSON line on stdout."""
    request = json.loads(sys.stdin.buffer.read())
    url = str(request["url"])
    kind, name = request["ref"]
    credentials = Credentials(
        username=request.get("username"),
        ssh_identity=request.get("identity"),
        secret=request.get("secret"),
    )
    answer: dict[str, str]
    try:
        _, tip = _fetch(url, Path(request["cache"]), SourceRef(kind, name), credentials)
        answer = {"commit": str(tip.id)}
    except Exception as error:
        failure = _as_fetch_error(url, error)
        if isinstance(failure, FetchError):
            answer = {"reason": failure.reason, "message": str(failure)}
        else:
            answer = {"reason": "FetchFailed", "message": f"fetching {url}: {error!r}"}
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()


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
        callbacks=CredentialCallbacks(credentials, url),
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
