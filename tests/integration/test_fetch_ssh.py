"""Fetching over ssh from a real ssh server on loopback (controller/testing/sshgit.py): the
server's host key must be in the Secret's known_hosts, never trusted on first use."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pygit2
import pytest

from controller.git.fetch import (
    Credentials,
    FetchError,
    SourceRef,
    SshTarget,
    fetch,
    ssh_target,
    trusted_host_keys,
)
from controller.testing.gitrepo import commit_all, repo_from_directory
from controller.testing.sshgit import (
    GitSshServer,
    hashed_host,
    new_key,
    private_key_text,
    public_key_text,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MAIN = SourceRef("branch", "main")


@pytest.fixture
def served(tmp_path: Path) -> pygit2.Repository:
    return repo_from_directory(EXAMPLES, tmp_path / "served" / "examples", "Add examples")


@pytest.fixture
def server(tmp_path: Path, served: pygit2.Repository) -> Iterator[GitSshServer]:
    with GitSshServer(tmp_path / "served") as running:
        yield running


def secret(server: GitSshServer, **overrides: str | None) -> Credentials:
    values: dict[str, str | None] = {
        "ssh_identity": server.identity,
        "ssh_known_hosts": server.known_hosts(),
        "secret": "workflows-git",
    }
    return Credentials(**{**values, **overrides})


def refused(server: GitSshServer, cache: Path, credentials: Credentials) -> FetchError:
    with pytest.raises(FetchError) as caught:
        fetch(server.url("examples"), cache, MAIN, credentials, timeout=30)
    assert server.identity not in str(caught.value)  # the key is never in a message
    return caught.value


# ------------------------------------------------------------------ the happy path


@pytest.mark.parametrize("hashed", [False, True], ids=["plain", "hashed"])
def test_a_fetch_with_the_right_key_and_known_hosts(
    server: GitSshServer, served: pygit2.Repository, tmp_path: Path, hashed: bool
) -> None:
    credentials = secret(server, ssh_known_hosts=server.known_hosts(hashed=hashed))
    repo, tip = fetch(server.url("examples"), tmp_path / "cache.git", MAIN, credentials)
    assert str(tip.id) == str(served.head.target)
    assert repo.is_bare
    assert server.commands == ["git-upload-pack '/examples'"]


@pytest.mark.parametrize(
    ("host_key", "client_key"),
    [("ecdsa-sha2-nistp256", "ssh-rsa"), ("ssh-rsa", "ecdsa-sha2-nistp256")],
)
def test_other_key_types(
    tmp_path: Path, served: pygit2.Repository, host_key: str, client_key: str
) -> None:
    with GitSshServer(tmp_path / "served", host_key=host_key, client_key=client_key) as server:
        _, tip = fetch(server.url("examples"), tmp_path / "cache.git", MAIN, secret(server))
    assert str(tip.id) == str(served.head.target)


def test_an_incremental_fetch_brings_the_new_commit(
    server: GitSshServer, served: pygit2.Repository, tmp_path: Path
) -> None:
    cache = tmp_path / "cache.git"
    _, first = fetch(server.url("examples"), cache, MAIN, secret(server))
    (Path(served.workdir) / "workflows" / "note.txt").write_text("a new file\n")
    commit = commit_all(served, "A second commit")
    _, second = fetch(server.url("examples"), cache, MAIN, secret(server))
    assert str(second.id) == commit
    assert [str(p) for p in second.parent_ids] == [str(first.id)]
    tag = SourceRef("commit", str(first.id))
    _, pinned = fetch(server.url("examples"), cache, tag, secret(server))
    assert pinned.id == first.id


# ------------------------------------------------------------------ host keys are enforced


def test_a_host_missing_from_known_hosts_is_never_contacted(
    server: GitSshServer, tmp_path: Path
) -> None:
    elsewhere = server.known_hosts().replace("[127.0.0.1]", "[git.example.com]")
    error = refused(server, tmp_path / "cache.git", secret(server, ssh_known_hosts=elsewhere))
    assert error.reason == "AuthFailed"
    message = str(error)
    assert f"[127.0.0.1]:{server.port}" in message and "workflows-git" in message
    assert f"ssh-keyscan -p {server.port} 127.0.0.1" in message
    assert server.connections == 0


def test_a_different_host_key_is_refused(server: GitSshServer, tmp_path: Path) -> None:
    impostor = f"{server.host_pattern} {public_key_text(new_key())}\n"
    cache = tmp_path / "cache.git"
    error = refused(server, cache, secret(server, ssh_known_hosts=impostor))
    assert error.reason == "AuthFailed"
    assert f"host key of [127.0.0.1]:{server.port} does not match known_hosts" in str(error)
    assert f"ssh-keyscan -p {server.port} 127.0.0.1" in str(error)
    assert server.connections == 1 and server.commands == []  # refused before any git
    assert list(pygit2.Repository(str(cache)).references) == []


def test_a_host_key_of_another_type_is_refused(tmp_path: Path, served: pygit2.Repository) -> None:
    with GitSshServer(tmp_path / "served", host_key="ecdsa-sha2-nistp256") as server:
        other = f"{server.host_pattern} {public_key_text(new_key('ssh-ed25519'))}\n"
        error = refused(server, tmp_path / "cache.git", secret(server, ssh_known_hosts=other))
        assert error.reason == "AuthFailed" and "does not match" in str(error)
        assert server.commands == []


def test_missing_known_hosts_is_refused(server: GitSshServer, tmp_path: Path) -> None:
    error = refused(server, tmp_path / "cache.git", secret(server, ssh_known_hosts=None))
    assert error.reason == "AuthFailed"
    assert "Secret workflows-git has no known_hosts" in str(error)
    assert f"ssh-keyscan -p {server.port} 127.0.0.1" in str(error)
    nothing = refused(server, tmp_path / "cache.git", Credentials())
    assert nothing.reason == "AuthFailed" and "spec.secretRef" in str(nothing)
    assert server.connections == 0


def test_a_revoked_key_is_not_trusted(server: GitSshServer, tmp_path: Path) -> None:
    revoked = server.known_hosts() + f"@revoked * {public_key_text(server.host_key)}\n"
    error = refused(server, tmp_path / "cache.git", secret(server, ssh_known_hosts=revoked))
    assert error.reason == "AuthFailed" and "no usable key" in str(error)
    assert server.connections == 0


def test_a_wrong_client_key_is_rejected(server: GitSshServer, tmp_path: Path) -> None:
    stranger = private_key_text(new_key())
    error = refused(server, tmp_path / "cache.git", secret(server, ssh_identity=stranger))
    assert error.reason == "AuthFailed" and "rejected" in str(error)
    assert stranger not in str(error)
    assert server.commands == []


def test_a_silent_server_times_out(tmp_path: Path) -> None:
    with socket.socket() as listener:  # accepts connections, never says a word
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        key = f"[127.0.0.1]:{port} {public_key_text(new_key())}\n"
        credentials = Credentials(ssh_identity=private_key_text(new_key()), ssh_known_hosts=key)
        url = f"ssh://git@127.0.0.1:{port}/examples"
        with pytest.raises(FetchError) as caught:
            fetch(url, tmp_path / "cache.git", MAIN, credentials, timeout=2)
    assert caught.value.reason == "FetchFailed" and "longer than 2s" in str(caught.value)


# ------------------------------------------------------------------ reading URLs and known_hosts


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("ssh://git@github.com/org/repo.git", SshTarget("github.com", 22)),
        ("ssh://git@git.example.com:2222/org/repo.git", SshTarget("git.example.com", 2222)),
        ("ssh://git@[::1]:2222/repo", SshTarget("::1", 2222)),
        ("git+ssh://git@host/repo", SshTarget("host", 22)),
        ("git@github.com:org/repo.git", SshTarget("github.com", 22)),
        ("https://github.com/org/repo.git", None),
        ("/srv/git/repo", None),
        ("file:///srv/git/repo", None),
    ],
)
def test_ssh_targets(url: str, target: SshTarget | None) -> None:
    assert ssh_target(url) == target


def test_which_known_hosts_lines_count() -> None:
    key, other = public_key_text(new_key()), public_key_text(new_key("ecdsa-sha2-nistp256"))
    target = SshTarget("git.example.com", 2222)
    text = "\n".join(
        [
            "# a comment",
            f"git.example.com {key}",  # port 22 only, as OpenSSH reads it
            f"[git.example.com]:2222,[other]:2222 {other} a comment",
            f"{hashed_host('[git.example.com]:2222')} {key}",
            f"{hashed_host('[elsewhere]:2222')} {key}",
            f"[git.example.com]:2222,![git.example.com]:2222 {key}",  # negated
            f"@cert-authority [git.example.com]:2222 {key}",
            f"[git.example.com]:2222 ssh-ed25519 {other.split()[1]}",  # type and blob differ
            "[git.example.com]:2222 ssh-ed25519 not-base64!",
            "[git.example.com]:2222",
        ]
    )
    assert [(k.key_type, k.patterns[0][:3]) for k in trusted_host_keys(text, target)] == [
        ("ecdsa-sha2-nistp256", "[gi"),
        ("ssh-ed25519", "|1|"),
    ]
    assert trusted_host_keys(text, SshTarget("git.example.com", 22))[0].key == key.split()[1]
