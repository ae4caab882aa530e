"""The git push receiver: `POST /hooks/git` syncs the sources of the pushed repository and
branch at once.

Accepted signatures, checked in constant time against the `webhookSecret` key of the
source's secretRef: GitHub's `X-Hub-Signature-256: sha256=<hmac>`, GitLab's
`X-Gitlab-Token: <secret>`, and a generic `X-Flowpin-Signature: sha256=<hmac of the body>`.
The checks, in order: size (413 over 1 MiB), those headers (400 unless ASCII), the body
(400 unless JSON that `http.parse_json` accepts: bounded depth, no NaN or Infinity), the
repository (404 when no source tracks it), the signature (401, and nothing else happens),
then the branch. A source without a webhook secret never accepts pushes. Every refusal is a
JSON answer and one log line; a Kubernetes API failure reading the secret is 503 with
`Retry-After`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from controller.operator.http import (
    BadJson,
    ClientGone,
    Refused,
    non_ascii_header,
    parse_json,
    printable,
    read_body,
)
from controller.operator.kube import Kube
from controller.operator.sources import SourceEntry, SourceRegistry
from controller.operator.triggers import API_ERRORS, api_error_reason

logger = logging.getLogger("flowpin.webhooks")
WEBHOOK_SECRET_KEY = "webhookSecret"
SIGNATURE_HEADERS = ("X-Hub-Signature-256", "X-Flowpin-Signature", "X-Gitlab-Token")
RETRY_AFTER = "5"


def repository_key(url: str) -> str:
    """One spelling per repository: no scheme, credentials, port-less scp syntax, `.git` or
    trailing slash, lower-case host (https://Host/o/r.git == git@host:o/r)."""
    text = url.strip()
    text = re.sub(r"^[a-z][a-z0-9+.-]*://", "", text, flags=re.IGNORECASE)
    text = re.sub(r"^[^@/]+@", "", text)
    if re.match(r"^[^/:]+:(?!\d+/)", text):  # scp-like host:path
        text = text.replace(":", "/", 1)
    text = text.rstrip("/").removesuffix(".git").rstrip("/")
    host, _, path = text.partition("/")
    return f"{host.lower()}/{path}" if path else host.lower()


def push_details(headers: Any, payload: Any) -> tuple[list[str], str | None]:
    """Repository URLs and the ref named by a push payload (GitHub, GitLab or generic)."""
    if not isinstance(payload, dict):
        return [], None
    urls: list[str] = []
    for holder in ("repository", "project"):
        value = payload.get(holder)
        if isinstance(value, str):
            urls.append(value)
        elif isinstance(value, dict):
            for key in (
                "clone_url",
                "ssh_url",
                "html_url",
                "git_url",
                "url",
                "git_http_url",
                "git_ssh_url",
                "web_url",
                "homepage",
            ):
                if isinstance(value.get(key), str):
                    urls.append(value[key])
    ref = payload.get("ref")
    return urls, ref if isinstance(ref, str) else None


def signature_valid(headers: Any, body: bytes, secret: str) -> bool:
    """Whether the first signature header present matches `secret`, compared in constant
    time as bytes (a header that is not ASCII never matches, and never raises)."""
    key = secret.encode()
    expected = b"sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest().encode()
    for header in ("X-Hub-Signature-256", "X-Flowpin-Signature"):
        given = headers.get(header)
        if given is not None:
            return hmac.compare_digest(_as_bytes(given.strip()), expected)
    token = headers.get("X-Gitlab-Token")
    if token is not None:
        return hmac.compare_digest(_as_bytes(token), key)
    return False


def _as_bytes(value: str) -> bytes:
    """A header value as the bytes that came over the wire (aiohttp decodes them as UTF-8
    with surrogate escapes)."""
    return value.encode("utf-8", "surrogateescape")


SecretReader = Callable[[SourceEntry], Awaitable[str | None]]


def kube_secret_reader(kube: Kube) -> SecretReader:
    async def read(entry: SourceEntry) -> str | None:
        if not entry.secret:
            return None
        data = await kube.secret(entry.namespace, entry.secret)
        return (data or {}).get(WEBHOOK_SECRET_KEY)

    return read


def add_git_push_route(
    app: web.Application, registry: SourceRegistry, secrets: SecretReader
) -> None:
    async def receive(request: web.Request) -> web.Response:
        try:
            return await _receive(request, registry, secrets)
        except Refused as refused:
            if not isinstance(refused, ClientGone):  # read_body has logged that one
                logger.info("push: %d, %s", refused.status, refused.reason)
            return refused.response()
        except API_ERRORS as error:
            logger.warning(
                "push: 503, the Kubernetes API failed reading a webhook secret: %s",
                api_error_reason(error),
            )
            response = _error(503, "the Kubernetes API is not available; try again later")
            response.headers["Retry-After"] = RETRY_AFTER
            return response

    app.router.add_post("/hooks/git", receive)


async def _receive(
    request: web.Request, registry: SourceRegistry, secrets: SecretReader
) -> web.Response:
    body = await read_body(request)
    if request.headers.get("X-GitHub-Event") == "ping":
        return web.json_response({"status": "pong"})
    header = non_ascii_header(request, SIGNATURE_HEADERS)
    if header is not None:
        raise Refused(400, f"header {header} must be printable ASCII")
    try:
        payload = parse_json(body)
    except BadJson as error:
        raise Refused(400, str(error)) from None
    urls, ref = push_details(request.headers, payload)
    wanted = {repository_key(url) for url in urls}
    candidates = [e for e in registry.entries.values() if repository_key(e.url) in wanted]
    if not candidates:
        raise Refused(404, "no WorkflowSource tracks this repository")
    verified = []
    for entry in candidates:
        secret = await secrets(entry)
        if secret and signature_valid(request.headers, body, secret):
            verified.append(entry)
    if not verified:
        logger.warning(
            "push for %s with a bad or missing signature", printable(str(sorted(wanted)))
        )
        return _error(401, "signature does not match the source's webhookSecret")
    synced = []
    for entry in verified:
        if ref is None or entry.branch is None or ref == f"refs/heads/{entry.branch}":
            entry.wake.set()
            synced.append(f"{entry.namespace}/{entry.name}")
    if not synced:
        return web.json_response({"status": "ignored", "reason": f"no source tracks {ref}"})
    return web.json_response({"status": "accepted", "sources": synced}, status=202)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)
