"""The operator's HTTP server: readiness is not leadership, and a standby forwards webhook
deliveries to the leader (or answers 503 in JSON when there is none)."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from aiohttp import web

from controller.operator.http import FORWARDED_BY, OperatorHttpServer


async def started(server: OperatorHttpServer) -> str:
    port = await server.start()
    return f"http://127.0.0.1:{port}"


def leader_server(seen: list[dict[str, Any]]) -> OperatorHttpServer:
    server = OperatorHttpServer(
        "127.0.0.1", 0, is_ready=lambda: True, is_leader=lambda: True, identity="a"
    )

    async def hook(request: web.Request) -> web.Response:
        seen.append(
            {
                "path": request.path_qs,
                "headers": dict(request.headers),
                "body": await request.read(),
            }
        )
        return web.json_response({"run": "r-1"}, status=202, headers={"Retry-After": "7"})

    server.app.router.add_post("/hooks/{rest:.*}", hook)
    return server


def standby_server(leader_address: Callable[[], str | None]) -> OperatorHttpServer:
    """Replica "b", ready and standing by, forwarding to `leader_address()`."""
    return OperatorHttpServer(
        "127.0.0.1",
        0,
        is_ready=lambda: True,
        is_leader=lambda: False,
        identity="b",
        leader_address=leader_address,
    )


@asynccontextmanager
async def leader_and_standby(seen: list[dict[str, Any]]) -> AsyncIterator[str]:
    """A leader recording deliveries into `seen`, and the address of its standby."""
    leader = leader_server(seen)
    leader_base = await started(leader)
    standby = standby_server(lambda: leader_base)
    try:
        yield await started(standby)
    finally:
        await standby.stop()
        await leader.stop()


async def post(url: str, body: bytes, **headers: str) -> tuple[int, dict[str, str], Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers) as answer,
    ):
        return answer.status, dict(answer.headers), json.loads(await answer.read())


async def get_status(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(url) as answer:
        return answer.status, json.loads(await answer.read())


def test_a_standby_is_ready_but_not_leading() -> None:
    async def scenario() -> None:
        standby = standby_server(lambda: None)
        base = await started(standby)
        try:
            assert (await get_status(f"{base}/readyz")) == (
                200,
                {"status": "ready", "leader": False},
            )
            status, body = await get_status(f"{base}/leaderz")
            assert status == 503 and body["status"] == "standby"
            assert (await get_status(f"{base}/healthz"))[0] == 200
        finally:
            await standby.stop()

    asyncio.run(scenario())


def test_a_standby_forwards_a_delivery_to_the_leader_unchanged() -> None:
    async def scenario() -> None:
        seen: list[dict[str, Any]] = []
        async with leader_and_standby(seen) as base:
            status, headers, body = await post(
                f"{base}/hooks/ns/wf/prod/signup?x=1",
                b'{"email": "a@b"}',
                **{"X-Flowpin-Signature": "sha256=abc", "Content-Type": "application/json"},
            )
            assert status == 202 and body == {"run": "r-1"}
            assert headers["Retry-After"] == "7"
            [delivery] = seen
            assert delivery["path"] == "/hooks/ns/wf/prod/signup?x=1"
            assert delivery["body"] == b'{"email": "a@b"}'
            assert delivery["headers"]["X-Flowpin-Signature"] == "sha256=abc"
            assert delivery["headers"][FORWARDED_BY] == "b"

    asyncio.run(scenario())


def test_a_standby_without_a_leader_answers_503_in_json() -> None:
    async def scenario() -> None:
        addresses: list[str | None] = [None]
        standby = standby_server(lambda: addresses[0])
        base = await started(standby)
        try:
            status, headers, body = await post(f"{base}/hooks/git", b"{}")
            assert status == 503 and headers["Retry-After"] == "5"
            assert body["leader"] is False and "standing by" in body["error"]
            # A leader that does not answer: the same answer, not a hang or a 500.
            addresses[0] = "http://127.0.0.1:9"
            status, _, body = await post(f"{base}/hooks/git", b"{}")
            assert status == 503 and "standing by" in body["error"]
            # Never forwarded twice (two standbys pointing at each other).
            addresses[0] = base
            status, _, body = await post(f"{base}/hooks/git", b"{}", **{FORWARDED_BY: "c"})
            assert status == 503
        finally:
            await standby.stop()

    asyncio.run(scenario())


def test_a_gzip_delivery_reaches_the_leader_as_the_sender_meant_it() -> None:
    """aiohttp decompresses what it receives: the forwarded body is plain, so its
    Content-Encoding must not travel with it."""

    async def scenario() -> None:
        seen: list[dict[str, Any]] = []
        async with leader_and_standby(seen) as base:
            status, _, body = await post(
                f"{base}/hooks/git",
                gzip.compress(b'{"ref": "refs/heads/main"}'),
                **{"Content-Encoding": "gzip", "Content-Type": "application/json"},
            )
            assert status == 202 and body == {"run": "r-1"}
            [delivery] = seen
            assert delivery["body"] == b'{"ref": "refs/heads/main"}'

    asyncio.run(scenario())
