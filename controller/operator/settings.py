"""Settings of the operator process, with their documented defaults."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal


def _default_identity() -> str:
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class OperatorSettings:
    namespaces: tuple[str, ...] = ()
    """Namespaces to watch; empty means every namespace (cluster-wide)."""
    lease_namespace: str = field(
        default_factory=lambda: os.environ.get("POD_NAMESPACE", "flowpin-system")
    )
    """Namespace of the leader-election Lease (the operator's own namespace)."""
    lease_name: str = "flowpin-operator"
    """Name of the leader-election Lease."""
    lease_duration_seconds: int = 15
    """A leader that has not renewed for this long is replaced by a standby."""
    lease_renew_seconds: float = 5.0
    """How often the leader renews (and a standby retries)."""
    identity: str = field(default_factory=_default_identity)
    """This replica's name in the Lease."""
    http_host: str = "0.0.0.0"
    """Address of the HTTP server (health, and later the webhook receivers)."""
    http_port: int = 8080
    """Port of the HTTP server; 0 picks a free one."""
    watch_server_timeout: int = 300
    """Seconds the API server keeps one watch open before the operator re-lists."""
    watch_client_timeout: int = 330
    """Client-side watch timeout, a little longer than the server's."""
    connect_timeout: int = 30
    """Seconds to connect to the API server."""
    max_workers: int | None = None
    """Concurrent per-object kopf workers; None (default) means no limit."""
    run_workers: int = 64
    """Runs advanced at once (the engine's worker pool); a waiting run holds no worker."""
    cache_dir: Path | None = None
    """Where git repositories are cached; default $FLOWPIN_CACHE/sources or
    ~/.cache/flowpin/sources. A cache only: rebuilt from the remotes after a restart."""
    log_format: Literal["text", "json"] = "text"
    """`json` writes one JSON object per log line (for log pipelines)."""
    verbose: bool = False
    """Debug logging."""
