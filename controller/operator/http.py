"""The operator's HTTP server: health, readiness and leadership probes, metrics, webhook
receivers.

- `/healthz`: 200 while the process runs (liveness).
- `/readyz`: 200 when this replica can serve: it reaches the API server and, if it leads,
  kopf is ready. A standby is ready too, so that a two-replica Deployment becomes Available
  and rolls out (readiness is not leadership).
- `/leaderz`: 200 only on the leader once kopf is ready; 503 on a standby.
- `/hooks/...`: the webhook receivers. They find sources and deployments in the leader's
  in-memory caches, so a standby forwards each delivery, unchanged, to the leader's address
  (written on the Lease) and returns the leader's answer; with no leader to forward to, it
  answers 503 with a JSON error and `Retry-After`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

logger = logging.getLogger("flowpin.http")

WEBHOOK_PREFIX = "/hooks/"
STANDBY_RETRY_AFTER = "5"
STANDBY_MESSAGE = (
    "this flowpin replica is standing by; webhooks are served by the leading replica, try again"
)
FORWARDED_BY = "X-Flowpin-Forwarded-By"  # set on a forwarded delivery: never forwarded twice
FORWARD_TIMEOUT = 30.0
MAX_BODY = 1024 * 1024
# Not forwarded: hop-by-hop headers, and those the client sets for the new request.
NOT_FORWARDED = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "content-encoding",  # aiohttp has already decompressed the body it forwards
    }
)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def read_body(request: web.Request) -> bytes | None:
    """A webhook's body, or None when it is larger than MAX_BODY (every receiver answers
    that with 413)."""
    if (request.content_length or 0) > MAX_BODY:
        return None
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        return None


class OperatorHttpServer:
    def __init__(
        self,
        host: str,
        port: int,
        is_ready: Callable[[], bool],
        metrics: Callable[[], str] | None = None,
        is_leader: Callable[[], bool] | None = None,
        identity: str = "",
        leader_address: Callable[[], str | None] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self._is_ready = is_ready
        self._is_leader = is_leader or is_ready
        self._identity = identity
        self._leader_address = leader_address or (lambda: None)
        self._session: aiohttp.ClientSession | None = None
        self._metrics = metrics
        self.app = web.Application(
            client_max_size=MAX_BODY, middlewares=[self._webhooks_on_the_leader]
        )
        self.app.router.add_get("/healthz", self._healthz)
        self.app.router.add_get("/readyz", self._readyz)
        self.app.router.add_get("/leaderz", self._leaderz)
        self.app.router.add_get("/metrics", self._metrics_text)
        self._runner: web.AppRunner | None = None

    @web.middleware
    async def _webhooks_on_the_leader(
        self, request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        if not request.path.startswith(WEBHOOK_PREFIX) or self._is_leader():
            return await handler(request)
        target = self._leader_address()
        if target and FORWARDED_BY not in request.headers:
            return await self._forward(request, target)
        return self._standby_answer()

    def _standby_answer(self) -> web.Response:
        return web.json_response(
            {"error": STANDBY_MESSAGE, "leader": False, "replica": self._identity},
            status=503,
            headers={"Retry-After": STANDBY_RETRY_AFTER},
        )

    async def _forward(self, request: web.Request, target: str) -> web.Response:
        """The delivery, unchanged (method, path, query, headers, body), sent to the leader;
        its answer, returned as it is."""
        body = await read_body(request)
        if body is None:
            return web.json_response({"error": "body larger than 1 MiB"}, status=413)
        headers = CIMultiDict(
            (name, value)
            for name, value in request.headers.items()
            if name.lower() not in NOT_FORWARDED
        )
        headers[FORWARDED_BY] = self._identity or "standby"
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=FORWARD_TIMEOUT)
            )
        try:
            async with self._session.request(
                request.method,
                target.rstrip("/") + request.path_qs,
                data=body,
                headers=headers,
                allow_redirects=False,
            ) as answer:
                content = await answer.read()
                response = web.Response(status=answer.status, body=content)
                for name in ("Content-Type", "Retry-After"):
                    if name in answer.headers:
                        response.headers[name] = answer.headers[name]
                return response
        except (TimeoutError, aiohttp.ClientError) as error:
            logger.warning("forwarding %s to the leader failed: %s", request.path, error)
            return self._standby_answer()

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        leader = self._is_leader()
        if self._is_ready():
            return web.json_response({"status": "ready", "leader": leader})
        return web.json_response({"status": "not ready", "leader": leader}, status=503)

    async def _leaderz(self, request: web.Request) -> web.Response:
        if self._is_leader():
            return web.json_response({"status": "leading", "replica": self._identity})
        return web.json_response({"status": "standby", "replica": self._identity}, status=503)

    async def _metrics_text(self, request: web.Request) -> web.Response:
        text = self._metrics() if self._metrics is not None else ""
        return web.Response(text=text, content_type="text/plain", charset="utf-8")

    async def start(self) -> int:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()
