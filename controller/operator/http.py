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

Whatever a sender sends, a webhook receiver answers a 4xx with a JSON reason and logs one
line without a traceback; only a fault of the operator or of the Kubernetes API is a 5xx.
The helpers here are what every receiver shares for that: `read_body` (413 over 1 MiB, a
body the client hung up on, a body that cannot be decoded), `non_ascii_header` (header
values are bytes on the wire; aiohttp hands over what is not UTF-8 as surrogate escapes, so
signature and delivery headers must be ASCII, or 400), and `parse_json` (UTF-8 JSON nested
at most `MAX_JSON_DEPTH` levels, checked without recursion before it is parsed, with
numbers the API server accepts: no NaN, no Infinity, nothing that overflows a double, no
lone surrogate).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import CIMultiDict

from controller.model import jsonsafe

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


MAX_JSON_DEPTH = 64  # arrays and objects inside one another; GitHub's pushes need 5
_SURROGATE = re.compile("[\ud800-\udfff]")  # aiohttp's surrogateescape of bytes not UTF-8


class Refused(Exception):
    """A delivery refused for what its sender sent: `status` with `{"error": reason}`."""

    def __init__(self, status: int, reason: str, *, close: bool = False) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.close = close  # the connection cannot serve another request

    def response(self) -> web.Response:
        answer = web.json_response({"error": self.reason}, status=self.status)
        if self.close:
            answer.force_close()
        return answer


class ClientGone(Refused):
    """The sender hung up before its whole body arrived: nobody reads the answer (400), and
    `read_body` has logged the one line that says so."""

    def __init__(self) -> None:
        super().__init__(400, "the connection closed before the whole body arrived")


def printable(text: str) -> str:
    """`text` safe for a log line: one line, ASCII; control characters, non-ASCII and
    undecodable bytes as backslash escapes (a path or a reason may hold any of them)."""
    return text.encode("unicode_escape").decode("ascii")


class _OneLineForBadRequests(logging.Filter):
    """aiohttp logs a request it cannot even parse (a byte that is no HTTP in the request
    line, a malformed header) at ERROR with a traceback, and answers 400: the sender's
    fault, so one INFO line without the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError) and 400 <= (error.code or 400) < 500:
            first = str(error.message or "").strip().splitlines()[:1]
            record.msg = f"{record.getMessage()}: 400, {type(error).__name__}"
            record.msg += f": {printable(first[0])}" if first else ""
            record.args = ()
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


SERVER_LOGGER = logging.getLogger("flowpin.http.server")  # aiohttp's, for this server
SERVER_LOGGER.addFilter(_OneLineForBadRequests())


async def read_body(request: web.Request) -> bytes:
    """A webhook's whole body. Refused: 413 over MAX_BODY, 400 when it cannot be decoded
    (a broken chunked or gzip encoding), ClientGone when the client hung up mid-body."""
    if (request.content_length or 0) > MAX_BODY:
        raise Refused(413, "body larger than 1 MiB")
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise Refused(413, "body larger than 1 MiB") from None
    except (HttpProcessingError, web.RequestPayloadError) as error:
        # A broken chunked or gzip encoding. Nothing more is read from this connection (the
        # answer closes it): aiohttp would otherwise read on after the answer, meet the
        # same error and log it with a traceback.
        request.content.feed_eof()
        cause = error.__cause__ if isinstance(error, web.RequestPayloadError) else error
        message = getattr(cause, "message", "") or type(cause).__name__
        raise Refused(
            400, f"the body could not be read: {printable(message)}", close=True
        ) from None
    except (aiohttp.ClientPayloadError, ConnectionError, asyncio.CancelledError) as error:
        logger.info(
            "%s %s: the client went away before sending the whole body (%s)",
            request.method, printable(request.path), type(error).__name__,
        )  # fmt: skip
        if isinstance(error, asyncio.CancelledError):
            raise
        raise ClientGone() from None


def non_ascii_header(request: web.Request, names: Iterable[str]) -> str | None:
    """The first of `names` whose value is not printable ASCII (a signature, a token, a
    delivery id, a timestamp never is), or None."""
    for name in names:
        for value in request.headers.getall(name, ()):
            if not (value.isascii() and value.isprintable()):
                return name
    return None


class BadJson(ValueError):
    """Why a body is not JSON that flowpin accepts."""


def parse_json(body: bytes) -> Any:
    """The JSON value of a webhook's body, or BadJson saying why not: not UTF-8, or not JSON
    `jsonsafe` accepts (nested deeper than MAX_JSON_DEPTH, NaN or Infinity, a number beyond
    a double's range, a lone surrogate): nothing the API server would refuse, and nothing
    that makes the parser recurse."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise BadJson(f"the body is not UTF-8 (byte {error.start})") from None
    try:
        return jsonsafe.loads(text, MAX_JSON_DEPTH)
    except jsonsafe.JSONInputError as error:
        what = "not JSON" if error.syntax else "not JSON flowpin accepts"
        raise BadJson(f"the body is {what}: {error}") from None


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
        if not request.path.startswith(WEBHOOK_PREFIX):
            return await handler(request)
        try:
            if self._is_leader():
                return await handler(request)
            target = self._leader_address()
            if target and FORWARDED_BY not in request.headers:
                return await self._forward(request, target)
            return self._standby_answer()
        except Refused as refused:  # what a receiver did not answer itself
            if not isinstance(refused, ClientGone):
                logger.info(
                    "%s %s: %d, %s",
                    request.method, printable(request.path), refused.status, refused.reason,
                )  # fmt: skip
            return refused.response()
        except web.HTTPException as error:  # no such receiver (404), not POST (405): JSON
            if error.status < 400:
                raise
            logger.info(
                "%s %s: %d, %s",
                request.method, printable(request.path), error.status, error.reason,
            )  # fmt: skip
            answer = web.json_response({"error": error.reason}, status=error.status)
            if "Allow" in error.headers:
                answer.headers["Allow"] = error.headers["Allow"]
            return answer
        except Exception:  # a fault of ours: the one case with a traceback
            logger.exception(
                "%s %s: 500, unexpected error", request.method, printable(request.path)
            )
            return web.json_response({"error": "internal error"}, status=500)

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
        headers = CIMultiDict(
            (name, value)
            for name, value in request.headers.items()
            if name.lower() not in NOT_FORWARDED
        )
        for name, value in headers.items():
            if _SURROGATE.search(value):  # bytes that are not UTF-8 cannot be sent on as sent
                raise Refused(400, f"header {name} is not UTF-8")
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
        # lingering_time=0: a body no handler read (a GET with a body, a 404) is not drained
        # after the answer (draining decodes it: a broken gzip body was a traceback in the
        # log); the connection is closed instead.
        self._runner = web.AppRunner(
            self.app, access_log=None, logger=SERVER_LOGGER, lingering_time=0
        )
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
