"""The foundation against the real control plane: CRDs, kubectl views, immutability, the
operator under its least-privilege identity, leader election, namespace deletion."""

from __future__ import annotations

import textwrap
import uuid

import pytest

from controller.api import kinds
from controller.testing.cluster import Kubectl, OperatorProcess, poll

from .conftest import StartOperator

MINIMAL_OBJECTS = {
    "WorkflowSource": "spec: {url: /tmp/does-not-matter}",
    "WorkflowVersion": textwrap.dedent(
        """\
        spec:
          workflow: lead-nurture
          version: 1.0.0
          definition:
            version: 1.0.0
            steps: [{id: welcome, type: http, http: {method: POST, url: "https://mail.example/"}}]
        """
    ),
    "Environment": "spec: {pins: {lead-nurture: 1.0.0}}",
    "WorkflowDeployment": "spec: {workflow: lead-nurture, environment: prod, version: 1.0.0}",
    "WorkflowRun": "spec: {workflow: lead-nurture, environment: prod}",
    "WorkflowMigration": "spec: {workflow: lead-nurture, environment: prod, toVersion: 2.0.0}",
}


def manifest(kind: str, name: str) -> str:
    return (
        f"apiVersion: {kinds.API_VERSION}\nkind: {kind}\nmetadata: {{name: {name}}}\n"
        + (MINIMAL_OBJECTS[kind])
    )


def test_every_crd_is_established(kubectl: Kubectl) -> None:
    crds = kubectl.json("get", "crd", "-l", "app.kubernetes.io/part-of=flowpin")["items"]
    names = sorted(crd["metadata"]["name"] for crd in crds)
    assert names == sorted(kind.crd_name for kind in kinds.ALL_KINDS)
    for crd in crds:
        established = [c for c in crd["status"]["conditions"] if c["type"] == "Established"]
        assert established and established[0]["status"] == "True", crd["metadata"]["name"]


@pytest.mark.parametrize("kind", kinds.ALL_KINDS, ids=lambda kind: kind.kind)
def test_kubectl_get_prints_printer_columns(
    kubectl: Kubectl, namespace: str, kind: kinds.Kind
) -> None:
    kubectl.apply(manifest(kind.kind, "sample-1"), namespace)
    output = kubectl.run("get", kind.short_names[0], "-n", namespace).stdout
    header, row = output.splitlines()[:2]
    expected = ["NAME"] + [c.name.upper() for c in kind.columns if c.priority == 0]
    assert header.split() == expected
    assert row.split()[0] == "sample-1"


def test_get_flowpin_category_lists_every_kind(kubectl: Kubectl, namespace: str) -> None:
    for kind in kinds.ALL_KINDS:
        kubectl.apply(manifest(kind.kind, "in-category"), namespace)
    output = kubectl.run("get", "flowpin", "-n", namespace).stdout
    for kind in kinds.ALL_KINDS:
        assert f"{kind.singular}.{kinds.GROUP}/in-category" in output


def test_explain_prints_field_descriptions(kubectl: Kubectl) -> None:
    output = kubectl.run("explain", "workflowdeployment.status").stdout
    assert "activeVersion" in output
    assert "The version new runs start on." in output
    assert "kstatus conditions" in output
    definition = kubectl.run("explain", "workflowversion.spec.definition.steps").stdout
    assert "http, wait, condition, set, fail, noop, log or n8n" in definition


def test_workflow_version_spec_is_immutable(kubectl: Kubectl, namespace: str) -> None:
    kubectl.apply(manifest("WorkflowVersion", "lead-nurture.v1.0.0"), namespace)
    result = kubectl.run(
        "patch",
        "wfv",
        "lead-nurture.v1.0.0",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"definition":{"version":"1.0.1"}}}',
        check=False,
    )
    assert result.returncode != 0
    assert "WorkflowVersion spec is immutable" in result.stderr
    spec = kubectl.json("get", "wfv", "lead-nurture.v1.0.0", "-n", namespace)["spec"]
    assert spec["definition"]["version"] == "1.0.0"
    # The status stays writable (the controller reports on versions).
    kubectl.run(
        "patch",
        "wfv",
        "lead-nurture.v1.0.0",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status":{"phase":"Available"}}',
    )


def _ready_reason(kubectl: Kubectl, namespace: str, name: str) -> str | None:
    """The Ready reason once the operator has synced the source (its URL does not exist)."""
    source = kubectl.json("get", "wfsrc", name, "-n", namespace)
    for condition in source.get("status", {}).get("conditions", []):
        if condition["type"] == "Ready" and condition["status"] != "Unknown":
            return str(condition["reason"])
    return None


def _assert_no_permission_errors(process: OperatorProcess) -> None:
    logs = process.logs()
    for marker in ("Forbidden", "forbidden", " 403"):
        assert marker not in logs, f"permission error in operator log:\n{logs[-4000:]}"


def test_operator_with_service_account_handles_objects(
    kubectl: Kubectl, namespace: str, operator: OperatorProcess
) -> None:
    kubectl.apply(manifest("WorkflowSource", "repo"), namespace)
    poll(
        lambda: _ready_reason(kubectl, namespace, "repo"),
        lambda reason: reason == "FetchFailed",
        what="the operator to write the source's status",
    )
    events = poll(
        lambda: kubectl.json(
            "get", "events", "-n", namespace, "--field-selector", "involvedObject.name=repo"
        )["items"],
        lambda items: any(item["reason"] == "FetchFailed" for item in items),
        what="a FetchFailed event",
    )
    assert events[0]["type"] == "Warning"
    conditions = kubectl.json("get", "wfsrc", "repo", "-n", namespace)["status"]["conditions"]
    ready = next(c for c in conditions if c["type"] == "Ready")
    assert ready["status"] == "False"
    assert "does not exist" in ready["message"]
    assert ready["observedGeneration"] == 1
    _assert_no_permission_errors(operator)


def _handled_by(process: OperatorProcess, name: str) -> bool:
    """The operator's own log line for a finished sync of that source."""
    return f"synced {process.namespaces[0]}/{name}:" in process.logs()


def test_two_operators_only_one_handles_objects(
    kubectl: Kubectl, namespace: str, start_operator: StartOperator
) -> None:
    first = start_operator((namespace,), identity="replica-a")
    first.wait_ready()
    second = start_operator((namespace,), identity="replica-b")
    second.wait_answering()
    assert second.leaderz() == 503  # standing by

    names = [f"src-{i}" for i in range(5)]
    for name in names:
        kubectl.apply(manifest("WorkflowSource", name), namespace)
    for name in names:
        poll(
            lambda name=name: _ready_reason(kubectl, namespace, name),
            lambda reason: reason == "FetchFailed",
            what=f"{name} handled",
        )
    assert all(_handled_by(first, name) for name in names)
    assert not any(_handled_by(second, name) for name in names)

    lease = kubectl.json("get", "lease", first.lease_name, "-n", "flowpin-system")
    assert lease["spec"]["holderIdentity"] == "replica-a"

    # The leader dies without releasing: the standby takes over once the lease expires.
    first.kill()
    second.wait_ready(timeout=60)
    kubectl.apply(manifest("WorkflowSource", "after-failover"), namespace)
    poll(
        lambda: _handled_by(second, "after-failover"),
        bool,
        what="the new leader to handle an object",
    )
    _assert_no_permission_errors(second)


def test_deleting_a_namespace_with_flowpin_objects_completes(
    kubectl: Kubectl, operator: OperatorProcess, namespace: str
) -> None:
    names = {kind.kind: f"doomed-{uuid.uuid4().hex[:6]}" for kind in kinds.ALL_KINDS}
    for kind, name in names.items():
        kubectl.apply(manifest(kind, name), namespace)
    run = names[kinds.WORKFLOW_RUN.kind]
    # The operator holds the run with its finalizer: deleting the namespace must go through it.
    poll(
        lambda: kubectl.json("get", "wfr", run, "-n", namespace)["metadata"].get("finalizers"),
        lambda finalizers: kinds.FINALIZER_RUN_COUNTS in (finalizers or []),
        what=f"the finalizer on WorkflowRun {run}",
    )
    kubectl.run("delete", "namespace", namespace, "--wait=false")
    poll(
        lambda: kubectl.run("get", "namespace", namespace, check=False).returncode,
        lambda code: code != 0,
        timeout=90,
        what=f"namespace {namespace} to be deleted",
    )


def test_a_leader_cut_off_from_the_api_server_stops_leading_before_the_lease_expires(
    kubectl: Kubectl,
    control_plane: object,
    start_operator: StartOperator,
    namespace: str,
) -> None:
    """kube-apiserver goes away for longer than the renew deadline (10 s of the 15 s lease):
    the leader stops leading before a standby could take the Lease, and exits so that it
    comes back as a candidate (the Deployment restarts it); with the API back, it leads."""
    import time

    import yaml

    from controller.testing.controlplane import ControlPlane

    assert isinstance(control_plane, ControlPlane)
    leader = start_operator((namespace,), identity="cut-off")
    leader.wait_ready()
    poll(leader.readyz, lambda status: status == 200, what="the leader to be ready")
    apiserver = control_plane._components["kube-apiserver"]
    control_plane._terminate(apiserver)  # connections refused: urllib3's MaxRetryError
    stopped = time.monotonic()
    try:
        poll(
            leader.leaderz,
            lambda status: status != 200,
            timeout=20,
            interval=0.1,
            what="the leader to stop leading",
        )
        # Past the 10 s renew deadline, before the 15 s lease lets a standby lead: never two.
        assert time.monotonic() - stopped < 14
        assert leader.process is not None
        code = poll(
            leader.process.poll,
            lambda code: code is not None,
            timeout=60,
            what="the former leader to exit",
        )
        assert code != 0
    finally:
        control_plane._launch("kube-apiserver")
        control_plane._wait(control_plane._apiserver_ready, "kube-apiserver")
    logs = leader.logs()
    assert "no longer leading" in logs
    assert "lost the leader lease" in logs
    token = yaml.safe_load(leader.kubeconfig.read_text())["users"][0]["user"]["token"]
    assert token not in logs

    # What the kubelet does: the same pod (identity) starts again, and leads.
    restarted = start_operator((namespace,), identity="cut-off")
    restarted.wait_ready(timeout=60)
    assert restarted.readyz() == 200
    lease = kubectl.json("get", "lease", restarted.lease_name, "-n", "flowpin-system")
    assert lease["spec"]["holderIdentity"] == "cut-off"


def test_a_standby_is_ready_and_forwards_webhooks_to_the_leader(
    namespace: str, start_operator: StartOperator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Readiness is not leadership: a standby passes /readyz (so that a two-replica
    Deployment becomes Available) but not /leaderz, and the webhooks it receives are answered
    by the leader, whose address (POD_IP, as the Deployment sets it) is on the Lease."""
    import json
    import urllib.error
    import urllib.request

    monkeypatch.setenv("POD_IP", "127.0.0.1")
    first = start_operator((namespace,), identity="ready-a")
    first.wait_ready()
    second = start_operator((namespace,), identity="ready-b")
    poll(second.readyz, lambda status: status == 200, what="the standby to be ready")
    assert second.leaderz() == 503
    assert first.leaderz() == 200 and first.readyz() == 200

    def deliver(path: str, headers: dict[str, str]) -> tuple[int, dict[str, object]]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{second.port}{path}", data=b"{}", headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return int(answer.status), json.loads(answer.read())
        except urllib.error.HTTPError as error:
            return int(error.code), json.loads(error.read())

    # Answers only the leader can give: its receivers, through the standby.
    assert deliver("/hooks/git", {"X-GitHub-Event": "ping"}) == (200, {"status": "pong"})
    code, answer = deliver(f"/hooks/{namespace}/nothing/prod/signup", {})
    assert code == 404 and answer == {"error": "no webhook trigger at this path"}
    assert "forwarding" not in second.logs()
