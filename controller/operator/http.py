"""The operator's HTTP server: health and readiness probes, metrics, webhook receivers."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web


class OperatorHttpServer:
    """`/healthz` answers while the process runs; `/readyz` only while it leads and kopf is
    ready, so a Service routes webhooks to the active replica alone."""

    def __init__(
        self,
        host: str,
        port: int,
        is_ready: Callable[[], bool],
        metrics: Callable[[], str] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self._is_ready = is_ready
        self._metrics = metrics
        self.app = web.Application(client_max_size=1024 * 1024)
        self.app.router.add_get("/healthz", self._healthz)
        self.app.router.add_get("/readyz", self._readyz)
        self.app.router.add_get("/metrics", self._metrics_text)
        self._runner: web.AppRunner | None = None

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        if self._is_ready():
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "standby"}, status=503)

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
