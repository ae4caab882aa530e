"""Run triggers end to end: the webhook receiver on the operator's HTTP server and the
scheduler, against the real API server."""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pygit2
import pytest

from controller.model.triggers import schedule_run_name
from controller.operator.triggers import NOT_FOUND
from controller.testing import webhooks
from controller.testing.cluster import Kubectl, OperatorProcess, poll, source_manifest
from controller.testing.gitrepo import commit_all
from controller.testing.httpsink import HttpSink

pytestmark = pytest.mark.e2e
StartOperator = Any
SECRET = "topsecret"


def signup_workflow(sink: str) -> str:
    return f"""\
apiVersion: flowpin.dev/v1alpha1
kind: Workflow
metadata: {{name: signup}}
spec:
  version: 1.0.0
  inputs: {{type: object, required: [email], properties: {{email: {{type: string}}}}}}
  triggers:
    - {{id: form, type: webhook, secretRef: {{name: signup-hook}}}}
    - {{id: other, type: webhook, secretRef: {{name: signup-hook}}}}
    - {{id: unset, type: webhook, secretRef: {{name: signup-hook, key: not-there}}}}
    - {{id: nosecret, type: webhook, secretRef: {{name: no-such-secret}}}}
    - {{id: sweep, type: schedule, schedule: "* * * * *", inputs: {{email: sweep@example.org}}}}
  steps:
    - id: welcome
      type: http
      http: {{method: POST, url: "{sink}/welcome", body: {{to: "${{ inputs.email }}"}}}}
"""


@pytest.fixture
def sink() -> Iterator[HttpSink]:
    server = HttpSink().start()
    yield server
    server.stop()


def setup(kubectl: Kubectl, namespace: str, sink: HttpSink, path: Path) -> None:
    repo = pygit2.init_repository(str(path), initial_head="main")
    (path / "workflows").mkdir(parents=True)
    (path / "environments").mkdir()
    (path / "workflows/signup.yaml").write_text(signup_workflow(sink.url))
    (path / "environments/dev.yaml").write_text(
        "apiVersion: flowpin.dev/v1alpha1\nkind: Environment\nmetadata: {name: dev}\n"
        "spec:\n  pins: {signup: latest}\n"
    )
    commit_all(repo, "signup")
    kubectl.run(
        "create", "secret", "generic", "signup-hook", f"--from-literal=secret={SECRET}",
        "-n", namespace,
    )  # fmt: skip
    kubectl.apply(source_manifest("triggers", str(path)), namespace)
    poll(
        lambda: kubectl.json("get", "wfd", "-n", namespace)["items"],
        lambda items: any(d.get("status", {}).get("phase") == "Verified" for d in items),
        what="signup.dev Verified",
    )


def parse_time(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def deliver(
    port: int,
    body: bytes,
    *,
    namespace: str,
    delivery: str | None = None,
    secret: str = SECRET,
    sent_at: float | None = None,
    path: str = "signup/dev/form",
    signed_path: str | None = None,
) -> tuple[int, dict[str, Any]]:
    return webhooks.deliver(
        port,
        f"/hooks/{namespace}/{path}",
        body,
        secret,
        delivery=delivery,
        sent_at=sent_at,
        signed_path=signed_path,
    )


def runs_of(kubectl: Kubectl, namespace: str, trigger: str) -> list[dict[str, Any]]:
    return [
        run
        for run in kubectl.json("get", "wfr", "-n", namespace)["items"]
        if run["spec"].get("trigger", {}).get("type") == trigger
    ]


def test_a_signed_webhook_starts_a_run_once(
    kubectl: Kubectl, namespace: str, operator: OperatorProcess, sink: HttpSink, tmp_path: Path
) -> None:
    setup(kubectl, namespace, sink, tmp_path / "repo")
    body = json.dumps({"email": "ada@example.org"}).encode()
    status, answer = deliver(operator.port, body, namespace=namespace, delivery="d-1")
    assert status == 202, answer
    assert answer["version"] == "1.0.0"
    run = poll(
        lambda: kubectl.json("get", "wfr", answer["run"], "-n", namespace),
        lambda r: r.get("status", {}).get("phase") == "Succeeded",
        what="the webhook's run to succeed",
    )
    assert run["spec"]["inputs"] == {"email": "ada@example.org"}
    assert run["spec"]["trigger"]["deliveryId"] == "d-1"
    sent = [c.json() for c in sink.calls("/welcome")]  # the schedule sends sweep@ ones too
    assert sent.count({"to": "ada@example.org"}) == 1

    status, replay = deliver(operator.port, body, namespace=namespace, delivery="d-1")
    assert status == 409 and "already received" in replay["error"]
    assert len(runs_of(kubectl, namespace, "webhook")) == 1


def test_bad_webhook_deliveries_are_refused_and_start_nothing(
    kubectl: Kubectl, namespace: str, operator: OperatorProcess, sink: HttpSink, tmp_path: Path
) -> None:
    setup(kubectl, namespace, sink, tmp_path / "repo")
    good = json.dumps({"email": "ada@example.org"}).encode()
    port = operator.port
    mismatch = {"error": "signature does not match the trigger's secret"}
    cases = {
        "bad signature": (deliver(port, good, namespace=namespace, secret="nope"), 401),
        "stale timestamp": (
            deliver(port, good, namespace=namespace, sent_at=time.time() - 600),
            401,
        ),
        "signed for another trigger": (
            deliver(
                port, good, namespace=namespace, signed_path=f"/hooks/{namespace}/signup/dev/other"
            ),
            401,
        ),
        "too large": (
            deliver(port, b'{"email": "' + b"x" * (1 << 20) + b'"}', namespace=namespace),
            413,
        ),
        "not an object": (deliver(port, b"[1, 2]", namespace=namespace), 422),
        "not JSON": (deliver(port, b"{oops", namespace=namespace), 422),
    }
    for what, ((status, answer), expected) in cases.items():
        assert status == expected, (what, answer)
        assert answer.get("error"), what
    assert cases["signed for another trigger"][0][1] == mismatch
    # What does not exist is one neutral answer, whoever asks and however they sign.
    for path in ("signup/dev/nope", "nope/dev/form", "signup/qa/form", "signup/dev/sweep"):
        for secret in (SECRET, "nope"):
            got = deliver(port, good, namespace=namespace, path=path, secret=secret)
            assert got == (404, {"error": NOT_FOUND}), path
    assert deliver(port, good, namespace="no-such-namespace") == (404, {"error": NOT_FOUND})
    # A Secret or key that is missing answers as a bad signature does.
    for path in ("signup/dev/unset", "signup/dev/nosecret"):
        assert deliver(port, good, namespace=namespace, path=path) == (401, mismatch), path
    status, answer = deliver(port, json.dumps({"email": 7}).encode(), namespace=namespace)
    assert status == 422 and answer["errors"] == ["inputs.email: 7 is not of type 'string'"]
    assert runs_of(kubectl, namespace, "webhook") == []
    metrics = operator.metrics()
    assert metrics.get('flowpin_webhook_requests_total{code="401",endpoint="run"}') == 5
    assert metrics.get('flowpin_webhook_requests_total{code="404",endpoint="run"}') == 9
    logs = operator.logs()
    assert "Secret" in logs and "no-such-secret does not exist" in logs
    assert "has no key 'not-there'" in logs and SECRET not in logs


def test_a_schedule_fires_once_per_time_across_a_restart(
    kubectl: Kubectl, namespace: str, start_operator: StartOperator, sink: HttpSink, tmp_path: Path
) -> None:
    first = start_operator((namespace,), identity="first")
    first.wait_ready()
    setup(kubectl, namespace, sink, tmp_path / "repo")
    [deployment] = kubectl.json("get", "wfd", "-n", namespace)["items"]
    activated = parse_time(deployment["status"]["verifiedAt"])

    def fires() -> list[dict[str, Any]]:
        return runs_of(kubectl, namespace, "schedule")

    # Nothing fires for a time before the version was active: the first run is for the
    # first minute boundary after it.
    [run] = poll(fires, lambda runs: len(runs) >= 1, timeout=90, what="the schedule's first fire")
    assert run["spec"]["trigger"]["id"] == "sweep"
    assert run["spec"]["inputs"] == {"email": "sweep@example.org"}
    first_fire = parse_time(run["spec"]["trigger"]["at"])
    assert activated < first_fire <= activated + datetime.timedelta(minutes=1)
    assert first_fire.second == 0

    first.kill()
    second = start_operator((namespace,), identity="second")
    second.wait_ready()
    restarted = datetime.datetime.now(datetime.UTC)
    poll(
        lambda: second.metric_sum("flowpin_schedule_fires_total"),
        lambda count: count >= 1,
        what="the restarted scheduler to look at the schedule",
    )
    # ... and it goes on firing: a fire time after the restart
    poll(
        fires,
        lambda runs: any(parse_time(r["spec"]["trigger"]["at"]) > restarted for r in runs),
        timeout=90,
        what="a fire after the restart",
    )
    checked = datetime.datetime.now(datetime.UTC)
    found = fires()
    times = [parse_time(r["spec"]["trigger"]["at"]) for r in found]
    assert len(times) == len(set(times)), times  # never two runs for one fire time
    for run, at in zip(found, times, strict=True):
        assert run["metadata"]["name"] == schedule_run_name("signup", "dev", "sweep", at)
        assert at > activated and at.second == 0
    # one run per minute boundary from the first fire to now (a boundary that passed while
    # no operator ran starts its run late; one at the very moment of the check may not
    # be listed yet)
    boundaries = int((checked - first_fire).total_seconds() // 60) + 1
    assert abs(len(times) - boundaries) <= 1, (times, first_fire, checked)
