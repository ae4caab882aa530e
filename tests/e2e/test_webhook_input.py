"""Whatever a sender posts to the operator's webhook receivers (`/hooks/git`, and
`/hooks/{namespace}/{workflow}/{environment}/{trigger}`), the answer is a 4xx with a JSON
reason and the operator logs no traceback; a delivery replayed after its run was deleted
starts no second run (issue 13)."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pygit2
import pytest

from controller.model.triggers import sign
from controller.testing import webhooks
from controller.testing.cluster import Kubectl, OperatorProcess, poll, source_manifest
from controller.testing.gitrepo import commit_all

pytestmark = pytest.mark.e2e
SECRET = "topsecret"
DEEP = b"[" * 100_000 + b"]" * 100_000
WORKFLOW = """\
apiVersion: flowpin.dev/v1alpha1
kind: Workflow
metadata: {name: signup}
spec:
  version: 1.0.0
  inputs: {type: object, properties: {email: {type: string}}}
  triggers:
    - {id: form, type: webhook, secretRef: {name: hook}}
  steps:
    - {id: hold, type: wait, wait: {duration: 1h}}
"""


def setup(kubectl: Kubectl, namespace: str, path: Path) -> str:
    """A source (pushes signed with `SECRET`) whose workflow `signup` has the webhook trigger
    `form` (signed with `SECRET` too), active in dev; the source's URL."""
    repo = pygit2.init_repository(str(path), initial_head="main")
    (path / "workflows").mkdir(parents=True)
    (path / "environments").mkdir()
    (path / "workflows/signup.yaml").write_text(WORKFLOW)
    (path / "environments/dev.yaml").write_text(
        "apiVersion: flowpin.dev/v1alpha1\nkind: Environment\nmetadata: {name: dev}\n"
        "spec:\n  pins: {signup: latest}\n"
    )
    commit_all(repo, "signup")
    kubectl.run(
        "create", "secret", "generic", "hook", "-n", namespace,
        f"--from-literal=secret={SECRET}", f"--from-literal=webhookSecret={SECRET}",
    )  # fmt: skip
    kubectl.apply(source_manifest("hooks", str(path), secretRef={"name": "hook"}), namespace)
    poll(
        lambda: kubectl.json("get", "wfd", "-n", namespace)["items"],
        lambda items: any(d.get("status", {}).get("phase") == "Verified" for d in items),
        what="signup.dev Verified",
    )
    return str(path)


def post(
    port: int, path: str, body: bytes, headers: dict[str, str | bytes] | None = None
) -> tuple[int, dict[str, Any]]:
    """POST with header values sent as given (bytes as they are: clients would encode a
    str); (status, JSON answer). An answer that is not JSON fails the test."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.putrequest("POST", path, skip_accept_encoding=True)
        for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
            connection.putheader(name, value)
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        answer = connection.getresponse()
        content = answer.read()
        assert answer.getheader("Content-Type", "").startswith("application/json"), content
        return answer.status, json.loads(content)
    finally:
        connection.close()


def hub_signature(body: bytes) -> str:
    return "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


def run_headers(path: str, body: bytes, delivery: str = "d-1") -> dict[str, str | bytes]:
    stamp = str(int(time.time()))
    return {
        "X-Flowpin-Delivery": delivery,
        "X-Flowpin-Timestamp": stamp,
        "X-Flowpin-Signature": sign(SECRET, delivery, stamp, body, path),
    }


def hang_up_mid_body(port: int, path: str) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n".encode()
            + b'{"email":'
        )


def webhook_runs(kubectl: Kubectl, namespace: str) -> list[str]:
    return [
        run["metadata"]["name"]
        for run in kubectl.json("get", "wfr", "-n", namespace)["items"]
        if run["spec"].get("trigger", {}).get("type") == "webhook"
    ]


def test_bad_input_is_a_4xx_in_json_and_never_a_traceback(
    kubectl: Kubectl, namespace: str, operator: OperatorProcess, tmp_path: Path
) -> None:
    url = setup(kubectl, namespace, tmp_path / "repo")
    port = operator.port
    push = json.dumps({"ref": "refs/heads/main", "repository": url}).encode()
    hook = f"/hooks/{namespace}/signup/dev/form"
    nan_push = push[:-1] + b', "n": NaN}'
    huge_push = push[:-1] + b', "n": 1e999}'
    nan_inputs = b'{"email": NaN}'
    huge_inputs = b'{"email": "a@b", "n": 1e999}'
    deep_inputs = b'{"email": ' + DEEP + b"}"
    cases: dict[str, tuple[tuple[int, dict[str, Any]], int, str]] = {
        "push, deep": (post(port, "/hooks/git", DEEP), 400, "nested deeper than 64"),
        "push, not ASCII": (
            post(port, "/hooks/git", push, {"X-Hub-Signature-256": b"sha256=\xff\xfe"}),
            400,
            "X-Hub-Signature-256 must be printable ASCII",
        ),
        "push, GitLab token not ASCII": (
            post(port, "/hooks/git", push, {"X-Gitlab-Token": "sécret".encode()}),
            400,
            "X-Gitlab-Token must be printable ASCII",
        ),
        "push, signed NaN": (
            post(port, "/hooks/git", nan_push, {"X-Flowpin-Signature": hub_signature(nan_push)}),
            400,
            "NaN is not a JSON number",
        ),
        "push, signed 1e999": (
            post(port, "/hooks/git", huge_push, {"X-Hub-Signature-256": hub_signature(huge_push)}),
            400,
            "1e999 is out of range",
        ),
        "run, deep": (
            post(port, hook, deep_inputs, run_headers(hook, deep_inputs)),
            422,
            "nested deeper than 64",
        ),
        "run, delivery not ASCII": (
            post(port, hook, b"{}", {**run_headers(hook, b"{}"), "X-Flowpin-Delivery": b"\xff"}),
            400,
            "X-Flowpin-Delivery must be printable ASCII",
        ),
        "run, timestamp not ASCII": (
            post(port, hook, b"{}", {**run_headers(hook, b"{}"), "X-Flowpin-Timestamp": b"1\x80"}),
            400,
            "X-Flowpin-Timestamp must be printable ASCII",
        ),
        "run, signed NaN": (
            post(port, hook, nan_inputs, run_headers(hook, nan_inputs, "d-nan")),
            422,
            "NaN is not a JSON number",
        ),
        "run, signed 1e999": (
            post(port, hook, huge_inputs, run_headers(hook, huge_inputs, "d-huge")),
            422,
            "1e999 is out of range",
        ),
    }
    for what, ((status, answer), expected, reason) in cases.items():
        assert status == expected, (what, answer)
        assert reason in answer["error"], (what, answer)
    # Many at once: as many 400s, still no traceback.
    with ThreadPoolExecutor(8) as pool:
        statuses = set(pool.map(lambda _: post(port, "/hooks/git", DEEP)[0], range(40)))
    assert statuses == {400}
    hang_up_mid_body(port, "/hooks/git")
    hang_up_mid_body(port, hook)
    poll(
        lambda: operator.logs().count("went away before sending the whole body"),
        lambda count: count >= 2,
        timeout=20,
        what="one line per client that hung up",
    )
    # The receivers still work, and nothing above started a run.
    status, answer = post(port, hook, b'{"email": "a@b"}', run_headers(hook, b'{"email": "a@b"}'))
    assert status == 202, answer
    assert webhook_runs(kubectl, namespace) == [answer["run"]]
    logs = operator.logs()
    assert "Traceback" not in logs and "Error handling request" not in logs
    assert SECRET not in logs


def test_a_delivery_replayed_after_its_run_was_deleted_starts_no_run(
    kubectl: Kubectl, namespace: str, operator: OperatorProcess, tmp_path: Path
) -> None:
    setup(kubectl, namespace, tmp_path / "repo")
    path = f"/hooks/{namespace}/signup/dev/form"
    body = b'{"email": "ada@example.org"}'
    sent_at = time.time()

    def deliver() -> tuple[int, dict[str, Any]]:  # the same delivery, byte for byte
        return webhooks.deliver(operator.port, path, body, SECRET, delivery="d-1", sent_at=sent_at)

    status, answer = deliver()
    assert status == 202, answer
    run = answer["run"]
    assert webhook_runs(kubectl, namespace) == [run]
    kubectl.run("delete", "wfr", run, "-n", namespace, "--wait=true")
    poll(
        lambda: webhook_runs(kubectl, namespace),
        lambda runs: runs == [],
        what="the run to be gone",
    )
    status, again = deliver()
    assert status == 409 and again["run"] == run and "already received" in again["error"]
    assert webhook_runs(kubectl, namespace) == []
    assert "Traceback" not in operator.logs()
