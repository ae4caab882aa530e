"""A real git-over-ssh server on loopback for tests: asyncssh with public-key auth, running
`git upload-pack` / `git receive-pack` (from the git package) for exec requests, serving the
repositories under one directory. It has its own host key and authorizes one client key;
`identity` and `known_hosts()` are what a source's Secret needs to reach it."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import shlex
import shutil
import threading
from pathlib import Path

import asyncssh

# What OpenSSH's sshd announces in server-sig-algs. asyncssh's default list is longer, and the
# libssh2 1.11.1 inside pygit2's wheels corrupts its heap signing with an RSA key against it.
_SIGNATURE_ALGS = [
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "rsa-sha2-512",
    "rsa-sha2-256",
]
_COMMANDS = {"git-upload-pack": "upload-pack", "git-receive-pack": "receive-pack"}


def new_key(kind: str = "ssh-ed25519") -> asyncssh.SSHKey:
    """A fresh private key: ssh-ed25519, ecdsa-sha2-nistp256, ssh-rsa, …"""
    return asyncssh.generate_private_key(kind)


def private_key_text(key: asyncssh.SSHKey) -> str:
    """The key in OpenSSH's private key format, as a Secret's `identity` holds it."""
    return key.export_private_key("openssh").decode()


def public_key_text(key: asyncssh.SSHKey) -> str:
    """`<type> <base64>`, the key part of an authorized_keys or known_hosts line."""
    return " ".join(key.export_public_key("openssh").decode().split()[:2])


def hashed_host(name: str, salt: bytes | None = None) -> str:
    """`name` hashed the way `ssh-keyscan -H` writes it: |1|base64(salt)|base64(hmac)."""
    salt = salt or os.urandom(20)
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


class GitSshServer:
    def __init__(
        self,
        root: Path,
        host_key: str = "ssh-ed25519",
        client_key: str = "ssh-ed25519",
        username: str = "git",
    ) -> None:
        if shutil.which("git") is None:
            raise RuntimeError("the git command is needed to serve repositories over ssh")
        self.root = root
        self.host_key = new_key(host_key)
        self.client_key = new_key(client_key)
        self.username = username
        self.port = 0
        self.connections = 0
        self.commands: list[str] = []
        self._open: set[asyncssh.SSHServerConnection] = set()
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def identity(self) -> str:
        """The private key the server authorizes (a Secret's `identity`)."""
        return private_key_text(self.client_key)

    @property
    def host_pattern(self) -> str:
        return f"[127.0.0.1]:{self.port}"

    def url(self, repository: str) -> str:
        return f"ssh://{self.username}@127.0.0.1:{self.port}/{repository}"

    def known_hosts(self, hashed: bool = False) -> str:
        """The server's host key line, as `ssh-keyscan -p PORT 127.0.0.1` (`-H`) prints it."""
        name = hashed_host(self.host_pattern) if hashed else self.host_pattern
        return f"{name} {public_key_text(self.host_key)}\n"

    def __enter__(self) -> GitSshServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _start(self) -> None:
        self._acceptor = await asyncssh.create_server(
            lambda: _Auth(self),
            "127.0.0.1",
            0,
            server_host_keys=[self.host_key],
            process_factory=self._serve,
            encoding=None,
            signature_algs=_SIGNATURE_ALGS,
        )
        self.port = self._acceptor.get_port()

    async def _stop(self) -> None:
        if self._acceptor is not None:
            self._acceptor.close()
            await self._acceptor.wait_closed()
        for connection in list(self._open):
            connection.close()

    def _repository(self, argv: list[str]) -> Path | None:
        """The repository an exec request names, if it is one under root."""
        if len(argv) != 2 or argv[0] not in _COMMANDS:
            return None
        relative = argv[1].removeprefix("~/").lstrip("/")
        root = self.root.resolve()
        path = (root / relative).resolve()
        if not path.is_relative_to(root) or not path.exists():
            return None
        return path

    async def _serve(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        command = process.command or ""
        self.commands.append(command)
        try:
            argv = shlex.split(command)
        except ValueError:
            argv = []
        path = self._repository(argv)
        if path is None:
            process.stderr.write(f"fatal: {command!r} is not a repository here\n".encode())
            process.exit(128)
            return
        child = await asyncio.create_subprocess_exec(
            "git",
            _COMMANDS[argv[0]],
            str(path),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={"PATH": os.environ.get("PATH", os.defpath)},
        )
        assert child.stdin and child.stdout and child.stderr

        async def upstream() -> None:
            assert child.stdin
            while data := await process.stdin.read(65536):
                child.stdin.write(data)
                await child.stdin.drain()
            child.stdin.close()

        async def downstream(source: asyncio.StreamReader, sink: asyncssh.SSHWriter[bytes]) -> None:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()

        sending = asyncio.ensure_future(upstream())
        await asyncio.gather(
            downstream(child.stdout, process.stdout), downstream(child.stderr, process.stderr)
        )
        code = await child.wait()
        sending.cancel()
        process.exit(code)


class _Auth(asyncssh.SSHServer):
    """Public-key authentication only, for the server's one client key and username."""

    def __init__(self, server: GitSshServer) -> None:
        self._server = server
        self._connection: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._server.connections += 1
        self._server._open.add(conn)
        self._connection = conn

    def connection_lost(self, exc: Exception | None) -> None:
        if self._connection is not None:
            self._server._open.discard(self._connection)

    def begin_auth(self, username: str) -> bool:
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return username == self._server.username and hmac.compare_digest(
            key.public_data, self._server.client_key.public_data
        )
