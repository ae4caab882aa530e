"""Fuzzing the operator's two webhook receivers over real HTTP: the git push receiver
(`POST /hooks/git`, controller/operator/webhooks.py) and the run trigger
(`POST /hooks/{namespace}/{workflow}/{environment}/{trigger}`, controller/operator/
triggers.py), against a real `flowpin operator` on the real local control plane (e2e).

One operator per module watches a namespace holding a WorkflowSource (a local git
repository with a workflow whose webhook trigger starts runs, and its Secret with `secret`
and `webhookSecret`), so that fuzzed deliveries reach every check: correctly signed ones
(GitHub, GitLab and generic signatures for pushes; delivery, timestamp and signature
headers for runs) with random bodies — push payloads and run inputs with random values at
random paths, NaN and Infinity, huge numbers, lone surrogates, deep nesting, byte-level
mutations, random bytes, 1 MiB and more — and random or wrong headers, non-ASCII and
non-UTF-8 header bytes, odd paths and methods, chunked and gzip bodies, broken framing.
Requests are written byte for byte on a socket, so nothing is cleaned up on the way.

Every answer must be a 2xx or 4xx with a JSON object as its body (a 400 that aiohttp itself
gives to a request that is not HTTP — a control character in a header or the request line,
a broken chunked framing — may be plain text, or missing), or a 503 with Retry-After
while the API server is really away (it never is here, so a 503 fails); a request whose
body never fully arrives may get no answer. After each request the operator is still
running and its log has no "Traceback".

A longer campaign: `make fuzz`, or for this file only
`FUZZ_EXAMPLES=2000 FUZZ_SEED=random FUZZ_SHRINK=1 .venv/bin/python -m pytest \
    tests/fuzz/test_webhooks_fuzz.py`.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import http.client
import json
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pygit2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.testing.cluster import Kubectl, OperatorProcess, poll, source_manifest
from controller.testing.gitrepo import commit_all
from tests.fuzz.conftest import fuzz
from tests.fuzz.harness import note_event
from tests.fuzz.strategies import JSON_TOKENS, edited, json_values, mutated

pytestmark = pytest.mark.e2e

SECRET = "fuzz-secret"
WORKFLOW = """\
apiVersion: flowpin.dev/v1alpha1
kind: Workflow
metadata: {name: fuzz}
spec:
  version: 1.0.0
  inputs:
    type: object
    required: [email]
    properties:
      email: {type: string}
      n: {type: number}
      tags: {type: array, items: {type: string}}
  triggers:
    - {id: hook, type: webhook, secretRef: {name: fuzz-hook}}
    - {id: nokey, type: webhook, secretRef: {name: fuzz-hook, key: missing}}
  steps:
    - {id: remember, type: set, set: {seen: "inputs.email"}, next: done}
    - {id: done, type: noop}
"""
ENVIRONMENT = """\
apiVersion: flowpin.dev/v1alpha1
kind: Environment
metadata: {name: dev}
spec:
  pins: {fuzz: latest}
"""


class Hooks:
    """The fuzzed operator (a plain class: hypothesis prints a dataclass field by field)."""

    def __init__(
        self, kubectl: Kubectl, namespace: str, operator: OperatorProcess, repo_url: str
    ) -> None:
        self.kubectl = kubectl
        self.namespace = namespace
        self.operator = operator
        self.repo_url = repo_url

    @property
    def port(self) -> int:
        return self.operator.port

    def __repr__(self) -> str:
        return f"Hooks(namespace={self.namespace!r}, port={self.port})"

    def run_path(self, trigger: str = "hook") -> str:
        return f"/hooks/{self.namespace}/fuzz/dev/{trigger}"


@pytest.fixture(scope="module")
def hooks(
    kubectl: Kubectl, operator_kubeconfig_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Hooks]:
    """A namespace, a git repository with the fuzz workflow, its Secret and source, and an
    operator watching them, until the deployment is Verified (webhooks start runs)."""
    base = tmp_path_factory.mktemp("fuzz-hooks")
    namespace = f"fuzz-{uuid.uuid4().hex[:8]}"
    kubectl.run("create", "namespace", namespace)
    repo_path = base / "repo"
    (repo_path / "workflows").mkdir(parents=True)
    (repo_path / "environments").mkdir()
    (repo_path / "workflows/fuzz.yaml").write_text(WORKFLOW)
    (repo_path / "environments/dev.yaml").write_text(ENVIRONMENT)
    commit_all(pygit2.init_repository(str(repo_path), initial_head="main"), "fuzz")
    kubectl.run(
        "create", "secret", "generic", "fuzz-hook", "-n", namespace,
        f"--from-literal=secret={SECRET}", f"--from-literal=webhookSecret={SECRET}",
    )  # fmt: skip
    kubectl.apply(
        source_manifest("fuzz", str(repo_path), secretRef={"name": "fuzz-hook"}), namespace
    )
    operator = OperatorProcess(
        kubeconfig=operator_kubeconfig_path,
        log_path=base / "operator.log",
        identity="fuzz-0",
        namespaces=(namespace,),
        lease_name=f"fuzz-{uuid.uuid4().hex[:8]}",
    ).start()
    try:
        operator.wait_ready()
        poll(
            lambda: kubectl.json("get", "wfd", "-n", namespace)["items"],
            lambda items: any(d.get("status", {}).get("phase") == "Verified" for d in items),
            what="fuzz.dev Verified",
            timeout=90,
        )
        yield Hooks(kubectl, namespace, operator, str(repo_path))
        assert "Traceback" not in operator.logs(), operator.logs()[-6000:]
    finally:
        operator.stop()
        kubectl.run("delete", "namespace", namespace, "--wait=false", check=False)


# ----------------------------------------------------------------------------- raw HTTP


@dataclass
class Answer:
    status: int | None  # None: the connection closed without an answer
    headers: dict[str, str]
    body: bytes


def hmac_hex(key: bytes, data: bytes) -> str:
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def frame(body: bytes, framing: str) -> tuple[list[tuple[bytes, bytes]], bytes, bool]:
    """(extra headers, bytes on the wire, complete?) for a body sent with `framing`."""
    if framing == "chunked":
        chunks = b"".join(
            b"%x\r\n%s\r\n" % (len(body[i : i + 700]), body[i : i + 700])
            for i in range(0, len(body), 700)
        )
        return [(b"Transfer-Encoding", b"chunked")], chunks + b"0\r\n\r\n", True
    if framing == "chunked-broken":
        return [(b"Transfer-Encoding", b"chunked")], b"zz\r\n" + body + b"\r\n0\r\n\r\n", True
    if framing == "gzip":
        packed = gzip.compress(body)
        return (
            [(b"Content-Encoding", b"gzip"), (b"Content-Length", b"%d" % len(packed))],
            packed,
            True,
        )
    if framing == "gzip-broken":
        return [(b"Content-Encoding", b"gzip"), (b"Content-Length", b"%d" % len(body))], body, True
    if framing == "short":  # claims more than it sends, then the client stops writing
        return [(b"Content-Length", b"%d" % (len(body) + 10))], body, False
    if framing == "none":
        return [], b"", True
    return [(b"Content-Length", b"%d" % len(body))], body, True


def send(
    port: int,
    method: bytes,
    path: bytes,
    headers: list[tuple[bytes, bytes]],
    wire: bytes,
    complete: bool,
) -> Answer:
    request = method + b" " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    request += b"".join(name + b": " + value + b"\r\n" for name, value in headers) + b"\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        try:
            sock.sendall(request + wire)
            if not complete:  # the body will never be whole: the sender is gone
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may answer (413) and close before it has read everything
        response = http.client.HTTPResponse(sock)
        try:
            response.begin()
            body = response.read()
        except (http.client.RemoteDisconnected, ConnectionError, http.client.IncompleteRead):
            return Answer(None, {}, b"")
        return Answer(response.status, {k: v for k, v in response.getheaders()}, body)


def not_http(method: bytes, path: bytes, headers: list[tuple[bytes, bytes]]) -> bool:
    """A request aiohttp may refuse before any receiver sees it: control characters (or
    spaces) in the request line, control characters in a header value, a request or
    header line over 8 KiB."""
    line = method + path
    if any(b < 0x21 or b == 0x7F for b in line) or any(b > 0x7E for b in line):
        return True
    if len(path) > 8000 or any(len(n) + len(v) > 8000 for n, v in headers):  # aiohttp's limit
        return True
    return any(any((b < 0x20 and b != 0x09) or b == 0x7F for b in v) for _, v in headers)


def shown(headers: list[tuple[bytes, bytes]]) -> str:
    return repr(
        [(n, v if len(v) < 200 else v[:200] + b"...(%d bytes)" % len(v)) for n, v in headers]
    )


def api_server_up(hooks: Hooks) -> bool:
    return hooks.kubectl.run("get", "--raw", "/readyz", check=False, timeout=10).returncode == 0


def check_answer(
    hooks: Hooks, answer: Answer, complete: bool, raw_request: bool, what: str, offset: int
) -> None:
    note_event(f"status {answer.status}")
    if answer.status is None:
        assert not complete, f"no answer to a complete request: {what}"
    else:
        status = answer.status
        retry = {k.lower(): v for k, v in answer.headers.items()}.get("retry-after")
        assert 200 <= status < 500 or (status == 503 and retry and not api_server_up(hooks)), (
            f"answered {status} (Retry-After {retry!r}; the API server is up): "
            f"{answer.body[:500]!r}\nrequest: {what}"
        )
        if not (raw_request and status == 400):
            content_type = {k.lower(): v for k, v in answer.headers.items()}.get("content-type", "")
            assert content_type.startswith("application/json"), (
                f"answered {status} with {content_type!r}: {answer.body[:300]!r}\nrequest: {what}"
            )

            def refuse(token: str) -> Any:
                raise ValueError(token)

            try:
                parsed = json.loads(answer.body, parse_constant=refuse)
            except ValueError as error:
                raise AssertionError(
                    f"answered {status} with a body that is not JSON ({error}): "
                    f"{answer.body[:300]!r}\nrequest: {what}"
                ) from None
            assert isinstance(parsed, dict), (status, parsed, what)
    process = hooks.operator.process
    assert process is not None and process.poll() is None, (
        f"the operator exited {process and process.returncode}: {what}\n"
        f"{hooks.operator.logs()[-4000:]}"
    )
    new_log = hooks.operator.logs()[offset:]
    assert "Traceback" not in new_log, (
        f"the operator logged a traceback for {what}:\n{new_log[-6000:]}"
    )


def log_size(hooks: Hooks) -> int:
    return len(hooks.operator.logs())


# ----------------------------------------------------------------------------- strategies

header_text = st.one_of(
    st.binary(max_size=40),
    st.text(max_size=30).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.sampled_from(
        [
            b"",
            b" ",
            b"\xff\xfe",
            b"\xe9t\xe9",
            "\u00e9t\u00e9".encode(),
            b"\xed\xa0\x80",
            b"sha256=",
            b"sha256=zz",
            b"sha1=abc",
            b"x" * 9000,
            b"\x00",
            b"\t",
            b"\x7f",
            "\U0001f600".encode(),
            b"=?utf-8?b?w6k=?=",
        ]
    ),
).map(lambda value: value.replace(b"\r", b"").replace(b"\n", b""))
content_types = st.sampled_from(
    [
        None,
        b"application/json",
        b"text/plain",
        b"application/json; charset=latin-1",
        b"multipart/form-data; boundary=x",
        b"application/x-www-form-urlencoded",
        b"\xff",
    ]
)
framings = st.sampled_from(
    ["length"] * 6 + ["chunked", "chunked-broken", "gzip", "gzip-broken", "short", "none"]
)


def deep(depth: int, opener: bytes, closer: bytes) -> bytes:
    return opener * depth + b"1" + closer * depth


special_bodies = st.sampled_from(
    [
        b"",
        b"{}",
        b"[]",
        b"null",
        b"NaN",
        b'{"email": NaN}',
        b'{"email": "a", "n": Infinity}',
        b'{"email": "a", "n": -Infinity}',
        b'{"email": "a", "n": 1e999}',
        b'{"email": "a", "n": ' + b"9" * 5000 + b"}",
        b'{"email": "a", "n": ' + b"9" * 30 + b"}",
        b'{"email": "\\ud800"}',
        b'{"email": "a", "tags": ["\\udfff"]}',
        b'{"email": "\xff"}',
        b'{"\\ud800": 1, "email": "a"}',
        b"\xef\xbb\xbf{}",
        b'{"email": "a"} trailing',
        b'{"email": "a", "email": "b"}',
        deep(64, b"[", b"]"),
        deep(65, b"[", b"]"),
        deep(5000, b"[", b"]"),
        deep(200_000, b"[", b"]"),
        deep(3000, b'{"a":', b"}"),
        b'{"email": "a", "x": ' + deep(100_000, b"[", b"]") + b"}",
        b'"' + b"\\\\" * 50_000 + b'"',
        b'["' + b"[" * 100_000 + b'"]',
        b"{" + b" " * (1024 * 1024 + 10) + b"}",
        b'{"email": "' + b"x" * (1024 * 1024 - 20) + b'"}',
    ]
)


@st.composite
def run_inputs(draw: st.DrawFn) -> bytes:
    """Run inputs: valid ones with random values at random paths, written with NaN and
    Infinity allowed."""
    inputs: Any = {"email": "ada@example.org", "n": 1, "tags": ["a"]}
    if draw(st.booleans()):
        inputs = draw(edited(inputs, json_values))
    try:
        text = json.dumps(inputs, ensure_ascii=draw(st.booleans()), allow_nan=True)
    except (ValueError, RecursionError):
        text = "{}"
    return text.encode("utf-8", "surrogatepass")


def bodies(valid: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return st.one_of(
        valid,
        valid,
        special_bodies,
        valid.flatmap(lambda seed: mutated({"seed": seed}, JSON_TOKENS)),
        st.binary(max_size=300),
    )


@st.composite
def push_payload(draw: st.DrawFn, url: str) -> bytes:
    """A GitHub or GitLab push for the source's repository (or another), edited at random
    paths."""
    spelling = draw(
        st.sampled_from(
            [
                url,
                "file://" + url,
                url + "/",
                url + ".git",
                url.upper(),
                "https://x.invalid/o/r.git",
            ]
        )
    )
    payload: Any = draw(
        st.sampled_from(
            [
                {
                    "ref": "refs/heads/main",
                    "repository": {"clone_url": spelling, "html_url": spelling},
                },
                {"ref": "refs/heads/other", "repository": {"ssh_url": spelling}},
                {"ref": "refs/heads/main", "project": {"git_http_url": spelling}},
                {"ref": "refs/heads/main", "repository": spelling},
                {"repository": {"url": spelling}},
            ]
        )
    )
    if draw(st.booleans()):
        payload = draw(edited(payload, json_values))
    try:
        return json.dumps(payload, allow_nan=True, ensure_ascii=draw(st.booleans())).encode(
            "utf-8", "surrogatepass"
        )
    except (ValueError, RecursionError):
        return b"{}"


# ----------------------------------------------------------------------------- tests

DELIVERIES = [b"d-1", b"d-2", b"d-3"]  # few, so that replays (409) happen


def sometimes(
    data: st.DataObject, valid: Any, wild: st.SearchStrategy[Any], label: str, odds: int = 4
) -> Any:
    """`valid`, or one in `odds` times a value of `wild`: most requests get far enough
    (a right signature, a fresh timestamp) for what is fuzzed to reach the deep checks."""
    if data.draw(st.integers(0, odds - 1), label=f"{label} fuzzed?") == 0:
        return data.draw(wild, label=label)
    return valid


@fuzz(weight=2.0)
@given(data=st.data())
def test_run_webhook_answers_json_without_traceback(hooks: Hooks, data: st.DataObject) -> None:
    valid_path = hooks.run_path().encode()
    path = sometimes(
        data,
        valid_path,
        st.sampled_from(
            [
                hooks.run_path("nokey").encode(),
                valid_path + b"/",
                valid_path + b"?x=1&y=%ff",
                f"/hooks/{hooks.namespace}/fuzz/prod/hook".encode(),
                f"/hooks/{hooks.namespace}/fuzz/dev/%68ook".encode(),
                f"/hooks/{hooks.namespace}/fuzz/dev/h%00ok".encode(),
                f"/hooks/{hooks.namespace}/fuzz/dev/%ff%fe".encode(),
                f"/hooks/{hooks.namespace}/../fuzz/dev/hook".encode(),
                "/hooks/ns/\u00e9/dev/hook".encode(),
                b"/hooks/\xff/fuzz/dev/hook",
                b"/hooks/a/b/c/" + b"d" * 10_000,
                b"/hooks/a/b/c",
                b"/hooks/",
                b"/hooks/a b/c/d/e",
            ]
        ),
        "path",
    )
    method = sometimes(
        data, b"POST", st.sampled_from([b"GET", b"PUT", b"OPTIONS", b"P\xffST"]), "method", 8
    )
    body = sometimes(data, b'{"email": "ada@example.org"}', bodies(run_inputs()), "body", 1)
    delivery = sometimes(
        data,
        uuid.uuid4().hex.encode(),
        st.one_of(st.sampled_from(DELIVERIES), header_text),
        "delivery",
        6,
    )
    now = int(time.time())
    timestamp = sometimes(
        data,
        b"%d" % now,
        st.one_of(
            st.sampled_from(
                [
                    b"%d" % (now - 3600),
                    b"%d" % (now + 10**6),
                    b"0%d" % now,
                    b" %d " % now,
                    b"+%d" % now,
                    b"%d.5" % now,
                    b"1e9",
                    b"nan",
                    b"-1",
                    b"9" * 5000,
                    b"",
                    "\u0661\u0662\u0663".encode(),
                    b"%d" % 10**30,
                ]
            ),
            header_text,
        ),
        "timestamp",
        6,
    )
    framing = sometimes(data, "length", framings, "framing")
    signing = sometimes(
        data, "right", st.sampled_from(["wrong", "none", "random", "other-path"]), "signing", 6
    )
    signed_path = (
        hooks.run_path("other").encode() if signing == "other-path" else path.split(b"?")[0]
    )
    signature = (
        b"sha256="
        + hmac_hex(
            SECRET.encode(), delivery + b"." + timestamp + b"." + signed_path + b"." + body
        ).encode()
    )
    headers: list[tuple[bytes, bytes]] = [
        (b"X-Flowpin-Delivery", delivery),
        (b"X-Flowpin-Timestamp", timestamp),
    ]
    if signing in ("right", "other-path"):
        headers.append((b"X-Flowpin-Signature", signature))
    elif signing == "wrong":
        headers.append((b"X-Flowpin-Signature", b"sha256=" + b"0" * 64))
    elif signing == "random":
        headers.append((b"X-Flowpin-Signature", data.draw(header_text, label="signature")))
    content_type = sometimes(data, b"application/json", content_types, "content type")
    if content_type is not None:
        headers.append((b"Content-Type", content_type))
    extra, wire, complete = frame(body, framing)
    headers += extra
    offset = log_size(hooks)
    answer = send(hooks.port, method, path, headers, wire, complete)
    what = f"{method!r} {path[:200]!r} headers={shown(headers)} body={body[:300]!r}"
    what += f" ({len(body)} bytes, {framing})"
    # A broken chunked framing is not HTTP either: aiohttp's parser may answer it (400,
    # plain text) or drop the connection before any receiver sees the request.
    raw = not_http(method, path, headers) or framing == "chunked-broken"
    check_answer(hooks, answer, complete and framing != "chunked-broken", raw, what, offset)


@fuzz(weight=2.0)
@given(data=st.data())
def test_git_push_webhook_answers_json_without_traceback(hooks: Hooks, data: st.DataObject) -> None:
    draw = data.draw
    body = draw(bodies(push_payload(hooks.repo_url)), label="body")
    path = draw(
        st.sampled_from(
            [b"/hooks/git"] * 6
            + [b"/hooks/git/", b"/hooks/git?x=%ff", b"/hooks/GIT", b"/hooks/g%69t"]
        ),
        label="path",
    )
    method = draw(st.sampled_from([b"POST"] * 8 + [b"GET", b"DELETE"]), label="method")
    right = b"sha256=" + hmac_hex(SECRET.encode(), body).encode()
    headers: list[tuple[bytes, bytes]] = []
    for name in (
        b"X-Hub-Signature-256",
        b"X-Flowpin-Signature",
        b"X-Gitlab-Token",
        b"X-GitHub-Event",
    ):
        choice = draw(
            st.sampled_from(
                ["right", "absent", "absent", "absent", "wrong", "random"]
                if name == b"X-Hub-Signature-256"
                else ["absent", "absent", "absent", "right", "wrong", "random"]
            ),
            label=name.decode(),
        )
        if choice == "absent":
            continue
        if name == b"X-GitHub-Event":
            value = (
                draw(st.sampled_from([b"push", b"ping", b"Ping", b"\xffping"]))
                if choice != "random"
                else draw(header_text)
            )
        elif choice == "right":
            value = SECRET.encode() if name == b"X-Gitlab-Token" else right
        elif choice == "wrong":
            value = b"nope" if name == b"X-Gitlab-Token" else b"sha256=" + b"0" * 64
        else:
            value = draw(header_text, label="value")
        headers.append((name, value))
    content_type = sometimes(data, b"application/json", content_types, "content type")
    if content_type is not None:
        headers.append((b"Content-Type", content_type))
    framing = sometimes(data, "length", framings, "framing")
    extra, wire, complete = frame(body, framing)
    headers += extra
    offset = log_size(hooks)
    answer = send(hooks.port, method, path, headers, wire, complete)
    what = f"{method!r} {path!r} headers={shown(headers)} body={body[:300]!r}"
    what += f" ({len(body)} bytes, {framing})"
    # A broken chunked framing is not HTTP either: aiohttp's parser may answer it (400,
    # plain text) or drop the connection before any receiver sees the request.
    raw = not_http(method, path, headers) or framing == "chunked-broken"
    check_answer(hooks, answer, complete and framing != "chunked-broken", raw, what, offset)


# ----------------------------------------------------------------------------- regressions
# Failures the fuzzers found, minimised: each runs on every `make test`, whatever the seed.

BROKEN_GZIP = [(b"Content-Encoding", b"gzip"), (b"Content-Length", b"3")]


@pytest.mark.parametrize(
    ("method", "path"),
    [(b"GET", b"/hooks/git"), (b"POST", b"/hooks/nope"), (b"GET", b"/hooks/ns/w/e/t")],
    ids=["405-git", "404-no-route", "405-run"],
)
def test_an_unread_body_that_is_not_gzip_logs_no_traceback(
    hooks: Hooks, method: bytes, path: bytes
) -> None:
    """Found by the fuzzer: a request answered before its body is read (405, 404) whose
    body claims `Content-Encoding: gzip` and is not: the answer is JSON, but aiohttp, draining
    the body afterwards, logged "Unhandled exception" with a traceback."""
    offset = log_size(hooks)
    answer = send(hooks.port, method, path, BROKEN_GZIP, b"\x00\x00\x00", True)
    time.sleep(1)  # aiohttp drains the body after the answer is sent
    what = f"{method!r} {path!r} with a body that is not gzip"
    check_answer(hooks, answer, True, False, what, offset)


def test_a_run_with_large_inputs_is_saved(hooks: Hooks) -> None:
    """Found by the fuzzer: the receiver accepts inputs up to 1 MiB (202), but a run whose
    status holds a copy of them (here `set: {seen: inputs.email}`) could never be saved
    ("etcdserver: request is too large" from 600 kB, a gRPC ResourceExhausted at 1 MiB):
    the run stayed without a phase and the operator logged a traceback on every retry.
    Whatever the answer, an accepted run must reach a phase (or be refused up front with a
    4xx), and nothing may be logged with a traceback."""
    body = json.dumps({"email": "x" * 600_000}).encode()
    delivery, timestamp = uuid.uuid4().hex.encode(), b"%d" % int(time.time())
    path = hooks.run_path().encode()
    signature = hmac_hex(SECRET.encode(), b".".join([delivery, timestamp, path, body]))
    headers = [
        (b"X-Flowpin-Delivery", delivery),
        (b"X-Flowpin-Timestamp", timestamp),
        (b"X-Flowpin-Signature", b"sha256=" + signature.encode()),
        (b"Content-Type", b"application/json"),
        (b"Content-Length", b"%d" % len(body)),
    ]
    offset = log_size(hooks)
    answer = send(hooks.port, b"POST", path, headers, body, True)
    check_answer(hooks, answer, True, False, "a signed delivery of 600 kB inputs", offset)
    if answer.status == 202:
        run = json.loads(answer.body)["run"]

        def phase() -> Any:
            found = hooks.kubectl.json("get", "wfr", run, "-n", hooks.namespace)
            return (found.get("status") or {}).get("phase")

        try:
            poll(phase, lambda p: p in ("Succeeded", "Failed"), timeout=20, what=f"{run} done")
        finally:
            new_log = hooks.operator.logs()[offset:]
            assert "Traceback" not in new_log, new_log[-6000:]
