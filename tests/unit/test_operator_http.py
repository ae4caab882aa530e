"""The operator's HTTP server: readiness is not leadership, a standby forwards webhook
deliveries to the leader (or answers 503 in JSON when there is none), whatever a sender sends
the git push receiver answers a 4xx in JSON and logs one line (no traceback), and
`--http-address` is where it listens."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import hmac
import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
import urllib3
from aiohttp import web
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from kubernetes.client.exceptions import ApiException

from controller.cli.main import cli
from controller.operator import main as operator_main
from controller.operator.http import (
    FORWARDED_BY,
    BadJson,
    OperatorHttpServer,
    parse_json,
)
from controller.operator.settings import OperatorSettings
from controller.operator.sources import SourceEntry, SourceRegistry
from controller.operator.webhooks import add_git_push_route


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


# ------------------------------------------- whatever the input: a 4xx in JSON, one line

SOURCE_URL = "https://git.example.org/team/flows.git"
PUSH_SECRET = "topsecret"
GOOD_PUSH = json.dumps({"ref": "refs/heads/main", "repository": SOURCE_URL}).encode()
DEEP = b"[" * 100_000 + b"]" * 100_000


def hub_signature(body: bytes, secret: str = PUSH_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class PushReceiver:
    """A leading server with the git push receiver over one source (`SOURCE_URL`, branch
    main, its webhook secret `PUSH_SECRET`), and what its secret reader saw."""

    def __init__(self) -> None:
        self.registry = SourceRegistry()
        self.entry = self.registry.update(
            "ns", "flows", {"url": SOURCE_URL, "secretRef": {"name": "hook"}}
        )
        self.secret_error: Exception | None = None
        self.server = OperatorHttpServer(
            "127.0.0.1", 0, is_ready=lambda: True, is_leader=lambda: True, identity="a"
        )
        add_git_push_route(self.server.app, self.registry, self.read_secret)

    async def read_secret(self, entry: SourceEntry) -> str | None:
        if self.secret_error is not None:
            raise self.secret_error
        return PUSH_SECRET


@asynccontextmanager
async def push_receiver() -> AsyncIterator[tuple[PushReceiver, int]]:
    receiver = PushReceiver()
    port = await receiver.server.start()
    try:
        yield receiver, port
    finally:
        await receiver.server.stop()


async def raw_post(
    port: int, path: str, body: bytes, headers: list[tuple[bytes, bytes]]
) -> tuple[int, dict[str, str], Any]:
    """POST with header values sent as the given bytes (clients encode str values, so they
    cannot send what is not UTF-8); (status, headers, JSON answer)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = [b"POST " + path.encode() + b" HTTP/1.1", b"Host: 127.0.0.1"]
    head += [name + b": " + value for name, value in headers]
    head += [b"Content-Length: " + str(len(body)).encode(), b"Connection: close"]
    writer.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    header_block, _, content = rest.partition(b"\r\n\r\n")
    found = {}
    for line in header_block.split(b"\r\n"):
        name, _, value = line.decode("latin-1").partition(":")
        found[name.strip().lower()] = value.strip()
    assert found["content-type"].startswith("application/json"), answer
    return int(status_line.split()[1]), found, json.loads(content)


async def hang_up_mid_body(port: int, path: str) -> None:
    """Announce 100 bytes, send 5, and close."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        b'{"a":'
    )
    await writer.drain()
    writer.close()
    await writer.wait_closed()


def no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing logged with an exception attached (no traceback), nor an aiohttp error."""
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.name == "aiohttp.server"]


def test_a_deeply_nested_push_is_a_400_and_one_line_each_even_200_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        async with push_receiver() as (receiver, port):
            bodies = [b"[" * 5_000 + b"]" * 5_000, b"[" * 10_000, b'{"a":' * 2_000]
            answers = await asyncio.gather(
                *(post(f"http://127.0.0.1:{port}/hooks/git", bodies[i % 3]) for i in range(200))
            )
            assert {status for status, _, _ in answers} == {400}
            assert all("nested deeper than 64 levels" in body["error"] for *_, body in answers)
            assert not receiver.entry.wake.is_set()

    with caplog.at_level(logging.INFO):
        asyncio.run(scenario())
    no_traceback(caplog)
    assert len([r for r in caplog.records if r.name == "flowpin.webhooks"]) == 200


@pytest.mark.parametrize("header", ["X-Hub-Signature-256", "X-Flowpin-Signature", "X-Gitlab-Token"])
@pytest.mark.parametrize("value", [b"sha256=\xff\xfe", "sha256=é".encode(), b"sha256=\x80abc"])
def test_a_signature_header_that_is_not_ascii_is_a_400(
    header: str, value: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with push_receiver() as (receiver, port):
            status, _, body = await raw_post(
                port, "/hooks/git", GOOD_PUSH, [(header.encode(), value)]
            )
            assert (status, body) == (400, {"error": f"header {header} must be printable ASCII"})
            assert not receiver.entry.wake.is_set()
            # The same push, signed in ASCII, is accepted.
            status, _, body = await raw_post(
                port, "/hooks/git", GOOD_PUSH, [(header.encode(), valid_signature(header))]
            )
            assert status == 202 and receiver.entry.wake.is_set()

    with caplog.at_level(logging.INFO):
        asyncio.run(scenario())
    no_traceback(caplog)


def valid_signature(header: str) -> bytes:
    if header == "X-Gitlab-Token":
        return PUSH_SECRET.encode()
    return hub_signature(GOOD_PUSH).encode()


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ('{"ref": "refs/heads/main", "repository": "%s", "n": NaN}', "NaN is not a JSON number"),
        ('{"ref": "refs/heads/main", "repository": "%s", "n": 1e999}', "1e999 is out of range"),
        ('{"ref": "refs/heads/main", "repository": "%s", "n": -Infinity}', "-Infinity is not"),
        ('{"ref": "refs/heads/main", "repository": "%s", "n": "\\ud800"}', "lone UTF-16"),
    ],
)
def test_a_signed_push_with_numbers_or_strings_json_does_not_allow_is_a_400(
    content: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        body = (content % SOURCE_URL).encode()
        async with push_receiver() as (receiver, port):
            status, _, answer = await post(
                f"http://127.0.0.1:{port}/hooks/git",
                body,
                **{"X-Hub-Signature-256": hub_signature(body)},
            )
            assert status == 400 and reason in answer["error"], answer
            assert not receiver.entry.wake.is_set()

    with caplog.at_level(logging.INFO):
        asyncio.run(scenario())
    no_traceback(caplog)


@pytest.mark.parametrize(
    ("encoding", "body"),
    [("gzip", b"this is not gzip"), ("deflate", b"\x00\x01\x02 nor deflate")],
)
def test_a_body_that_cannot_be_decoded_is_a_400(
    encoding: str, body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with push_receiver() as (_, port):
            status, _, answer = await raw_post(
                port, "/hooks/git", body, [(b"Content-Encoding", encoding.encode())]
            )
            assert status == 400 and answer["error"].startswith("the body could not be read")

    with caplog.at_level(logging.INFO):
        asyncio.run(scenario())
    no_traceback(caplog)


def test_a_client_that_hangs_up_mid_body_is_one_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        async with push_receiver() as (_, port):
            await hang_up_mid_body(port, "/hooks/git")
            deadline = asyncio.get_running_loop().time() + 10
            while "went away" not in caplog.text:
                assert asyncio.get_running_loop().time() < deadline, caplog.text
                await asyncio.sleep(0.01)
            # and the server goes on serving
            status, _, _ = await post(f"http://127.0.0.1:{port}/hooks/git", b"[]")
            assert status == 404

    with caplog.at_level(logging.INFO):
        asyncio.run(scenario())
    no_traceback(caplog)
    gone = [r for r in caplog.records if "went away" in r.getMessage()]
    assert len(gone) == 1 and "POST /hooks/git" in gone[0].getMessage()


@pytest.mark.parametrize(
    "error",
    [
        ApiException(status=500, reason="Internal Server Error"),
        ApiException(status=403, reason="Forbidden"),
        urllib3.exceptions.MaxRetryError(None, "/api", "refused"),  # type: ignore[arg-type]
        ConnectionRefusedError("refused"),
    ],
)
def test_an_api_failure_reading_the_webhook_secret_is_a_503_with_retry_after(
    error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with push_receiver() as (receiver, port):
            receiver.secret_error = error
            status, headers, answer = await post(
                f"http://127.0.0.1:{port}/hooks/git",
                GOOD_PUSH,
                **{"X-Hub-Signature-256": hub_signature(GOOD_PUSH)},
            )
            assert status == 503 and headers["Retry-After"] == "5" and "try again" in str(answer)

    with caplog.at_level(logging.INFO):
        asyncio.run(scenario())
    no_traceback(caplog)
    assert PUSH_SECRET not in caplog.text


def test_a_standby_refuses_a_header_it_cannot_forward_unchanged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        seen: list[dict[str, Any]] = []
        leader = leader_server(seen)
        leader_base = await started(leader)
        standby = standby_server(lambda: leader_base)
        port = await standby.start()
        try:
            status, _, answer = await raw_post(
                port, "/hooks/git", GOOD_PUSH, [(b"X-Hub-Signature-256", b"sha256=\xff")]
            )
            assert (status, answer) == (400, {"error": "header X-Hub-Signature-256 is not UTF-8"})
            await hang_up_mid_body(port, "/hooks/git")
            deadline = asyncio.get_running_loop().time() + 10
            while "went away" not in caplog.text:
                assert asyncio.get_running_loop().time() < deadline, caplog.text
                await asyncio.sleep(0.01)
            assert seen == []
        finally:
            await standby.stop()
            await leader.stop()

    with caplog.at_level(logging.INFO):
        asyncio.run(scenario())
    no_traceback(caplog)


def test_what_no_receiver_serves_is_answered_in_json() -> None:
    async def scenario() -> None:
        async with push_receiver() as (_, port), aiohttp.ClientSession() as session:
            async with session.post(f"http://127.0.0.1:{port}/hooks/nope") as answer:
                assert answer.status == 404 and (await answer.json())["error"]
            async with session.get(f"http://127.0.0.1:{port}/hooks/git") as answer:
                assert answer.status == 405 and answer.headers["Allow"] == "POST"
                assert (await answer.json())["error"]

    asyncio.run(scenario())


def test_a_request_aiohttp_cannot_parse_is_a_400_and_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A byte that is no HTTP in the request line never reaches a receiver: aiohttp answers
    400 itself, and logs it as one line rather than with a traceback."""

    async def scenario() -> None:
        async with push_receiver() as (_, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /hooks/g\xfft HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
            await writer.drain()
            answer = await reader.read()
            writer.close()
            assert answer.startswith(b"HTTP/1.0 400") or answer.startswith(b"HTTP/1.1 400")

    with caplog.at_level(logging.INFO):
        asyncio.run(scenario())
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []
    [line] = [r for r in caplog.records if r.name == "flowpin.http.server"]
    assert line.levelno == logging.INFO and "400, InvalidURLError" in line.getMessage()


def test_what_a_sender_puts_in_a_path_cannot_forge_log_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        async with push_receiver() as (_, port):
            status, _, _ = await raw_post(port, "/hooks/git%0Aforged%00line", b"{}", [])
            assert status == 404

    with caplog.at_level(logging.INFO):
        asyncio.run(scenario())
    assert "\n" not in caplog.text.strip() and "\x00" not in caplog.text
    assert "/hooks/git\\nforged\\x00line" in caplog.text


# ------------------------------------------------------------------ parse_json


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (DEEP, "nested deeper than 64 levels"),
        (b"[" * 65 + b"]" * 65, "nested deeper than 64 levels"),
        (b'{"a":' * 65 + b"1" + b"}" * 65, "nested deeper than 64 levels"),
        (b"[" * 1_000_000, "nested deeper than 64 levels"),  # never closed
        (b"[" * 100_000 + b"}" * 100_000, "nested deeper than 64 levels"),
        (b"NaN", "NaN is not a JSON number"),
        (b"[Infinity]", "Infinity is not a JSON number"),
        (b'{"x": -Infinity}', "-Infinity is not a JSON number"),
        (b"[1e999]", "the number 1e999 is out of range"),
        (b"[-1.5e400]", "the number -1.5e400 is out of range"),
        (b"1" + b"0" * 400, "is out of range"),
        (b"1" + b"0" * 5000, "is out of range"),  # past int()'s digit limit
        (b'["\\ud800"]', "lone UTF-16 surrogate"),
        (b'{"\\udfff": 1}', "lone UTF-16 surrogate"),
        (b'["\\ude00\\ud83d"]', "lone UTF-16 surrogate"),  # a pair in the wrong order
        (b'"\xed\xa0\x80"', "not UTF-8"),  # a surrogate encoded in UTF-8
        (b"\xff", "not UTF-8"),
        (b'{"a": 1', "not JSON"),
        (b'"' * 100_000, "not JSON"),
        (b'"\\"' * 100_000, "not JSON"),  # never-ending strings: still linear
        (b"", "not JSON"),
    ],
)
def test_parse_json_refuses(body: bytes, reason: str) -> None:
    with pytest.raises(BadJson, match=re.escape(reason)):
        parse_json(body)


@pytest.mark.parametrize(
    ("body", "value"),
    [
        (b"[" * 64 + b"]" * 64, None),  # None: what json.loads reads
        (b'{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}', None),
        (b'["\\"[[[[", "\\\\"]', ['"[[[[', "\\"]),
        (b'["\\ud83d\\ude00", "\\u00e9"]', ["\U0001f600", "é"]),
        ("\ufeff{}".encode(), {}),
        (
            b"[1.5, -0.0, 1e308, 12345678901234567890, -7]",
            [1.5, -0.0, 1e308, 12345678901234567890, -7],
        ),
    ],
)
def test_parse_json_accepts(body: bytes, value: Any) -> None:
    expected = value if value is not None else json.loads(body)
    assert parse_json(body) == expected


tricky_text = st.text() | st.text(alphabet='[]{}"\\/ u\u00e9')  # brackets inside strings
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | tricky_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(tricky_text, inner, max_size=4),
    max_leaves=30,
)


@given(json_values)
def test_parse_json_reads_what_json_writes(value: Any) -> None:
    for text in (json.dumps(value), json.dumps(value, ensure_ascii=False, indent=1)):
        assert parse_json(text.encode()) == json.loads(text)


@given(st.text(alphabet='[]{}"\\,: 1.e-aNIfinty\u00e9') | st.binary())
def test_parse_json_answers_anything_with_a_value_or_bad_json(text: str | bytes) -> None:
    body = text.encode() if isinstance(text, str) else text
    try:
        value = parse_json(body)
    except BadJson:
        return
    assert value == json.loads(body)


# ------------------------------------------------------------------ --http-address


@pytest.mark.parametrize(
    ("args", "host"),
    [
        ([], "0.0.0.0"),
        (["--http-address", "127.0.0.1"], "127.0.0.1"),
        (["--http-address=[::1]"], "::1"),
        (["--http-address", " localhost "], "localhost"),
    ],
)
def test_http_address_is_where_the_server_listens(
    args: list[str], host: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen: list[OperatorSettings] = []
    monkeypatch.setattr(operator_main, "main", chosen.append)
    result = CliRunner().invoke(cli, ["operator", "--port", "0", *args])
    assert result.exit_code == 0, result.output
    [settings] = chosen
    assert (settings.http_host, settings.http_port) == (host, 0)

    if host == "localhost":  # a name: which address it binds first is the resolver's
        return

    async def scenario() -> None:
        server = OperatorHttpServer(settings.http_host, 0, is_ready=lambda: True)
        port = await server.start()
        try:
            address = f"[{host}]" if ":" in host else host
            assert (await get_status(f"http://{address}:{port}/healthz"))[0] == 200
        finally:
            await server.stop()

    asyncio.run(scenario())


def test_an_http_address_that_is_none_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(operator_main, "main", lambda settings: None)
    result = CliRunner().invoke(cli, ["operator", "--http-address", "not an address!"])
    assert result.exit_code == 2 and "is not an address to listen on" in result.output
