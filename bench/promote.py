"""Promotion figures: a pin change in git until the WorkflowDeployment is Ready, with the real
operator against a real control plane.

    python bench/promote.py [--quick] [--keep]

Repositories are bare git repositories written with pygit2 straight into the object database:
W workflows of 5 steps each (http with retries, a CEL condition, a templated POST, a wait, a
log line), every workflow at 1.0.0 in the first commit, and environments pinning exact
versions. A local kube-apiserver (controller/testing) runs flowpin's CRDs and RBAC; ONE
`flowpin operator` subprocess runs under the manifests/ ServiceAccount's token, watching the
two benchmark namespaces; every WorkflowSource has a secretRef with a `webhookSecret`, and
every change arrives through a signed GitHub push to `/hooks/git`.

1. Pin change committed -> deployment Ready, in an environment without gates: 5 workflows,
   `dev` (no `promotion` block) and `staging` (`promotion.from: dev`, pins left alone). Each
   of 20 commits bumps one workflow's `spec.version` (and its content) AND changes that
   workflow's exact pin in dev to it; the signed push is POSTed and
   `GET wfd/<workflow>.dev` (kubernetes client, not kubectl, every 20 ms) is polled until
   `status.activeVersion` is the new version and `Ready=True`. p50 and p95; the part until
   `spec.version` changed (the source sync) is reported beside it. One push at a time: the
   next commit waits until the previous one's last write is done (its Activated Event, and
   every deployment's status.observedGeneration caught up with its spec).
2. 500 workflows x 3 environments (dev, staging, prod, none with a `promotion` block: every
   gate open) = 1,500 deployments, synced and all Verified on 1.0.0 first. ONE commit bumps
   every workflow to 1.1.0 and every pin in the three environments; push; a watch on the
   WorkflowDeployments times the moment the last of them has `activeVersion` 1.1.0 and phase
   Verified. Writes are the delta of the operator's `flowpin_api_writes_total` from the push
   until every write the commit caused is done (every Activated transition counted, every
   deployment's observedGeneration current, then the counter stops moving); the API
   server's own `apiserver_request_total` for the same span splits them by resource and
   verb, and the objects themselves are counted (new WorkflowVersions, Events by reason,
   deployments on the new version, versions whose status.environments lists all three
   environments), and a watch records the sequence of status writes of every deployment.
3. Idle: the same 1,500 deployments, converged, source `interval: 15s`, observed for 5
   minutes: operator writes, sync rounds, the API server's write counter for flowpin objects
   and Events, and the resourceVersion of every flowpin object before and after.
4. Figure 1 once more in the big repository, whose `dev` pins 500 workflows: one commit
   bumping one workflow and its dev pin; time to Ready, and every write it caused.

After each change, every WorkflowVersion's status.environments is compared with where the
deployments run it (status.activeVersion), and disagreements are reported.

`--quick` is a smoke run: 50 workflows (150 deployments), 3 pushes, 30 s idle at 5 s.
`--keep` keeps the work directory (repositories, operator log, git cache) for inspection.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import hmac
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pygit2
from common import percentile, report
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from controller.api import kinds
from controller.testing.cluster import (
    Kubectl,
    OperatorProcess,
    install_flowpin,
    operator_kubeconfig,
    poll,
)
from controller.testing.controlplane import REPO_ROOT, ControlPlane

GROUP = "flowpin.dev"
VERSION = "v1alpha1"
WEBHOOK_SECRET = "bench-webhook-secret"
HOOK_SECRET_NAME = "git-hook"
POLL_FAST = 0.02
FLOWPIN_PLURALS = (
    "workflowsources",
    "workflowversions",
    "environments",
    "workflowdeployments",
    "workflowruns",
    "workflowmigrations",
)
SHORT = {
    "workflowsources": "wfsrc",
    "workflowversions": "wfv",
    "environments": "wfenv",
    "workflowdeployments": "wfd",
    "workflowruns": "wfr",
    "workflowmigrations": "wfmig",
}
WRITE_VERBS = {"POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION", "APPLY"}
AUTHOR = pygit2.Signature("flowpin bench", "bench@flowpin.dev")
NO_GATES = "  rollout: {strategy: immediate}\n  inflight: pin\n"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- repositories


def workflow_name(index: int) -> str:
    return f"wf-{index:03d}"


def workflow_text(index: int, minor: int) -> str:
    """A small realistic workflow of five steps; every minor version changes its content."""
    name = workflow_name(index)
    revision = 1 + minor % 47
    return f"""\
# yaml-language-server: $schema=https://flowpin.dev/schemas/v1alpha1/workflow.json
apiVersion: flowpin.dev/v1alpha1
kind: Workflow
metadata:
  name: {name}
  labels: {{team: team-{index % 5}}}
spec:
  version: 1.{minor}.0
  description: Welcome a new lead (benchmark workflow {index}, revision {revision}).
  inputs:
    type: object
    required: [email]
    properties:
      email: {{type: string}}
      plan: {{type: string, enum: [free, pro, team]}}
  triggers:
    - {{id: signup, type: webhook, secretRef: {{name: {name}-webhook}}}}
  steps:
    - id: lookup
      type: http
      http:
        method: GET
        url: "https://crm{index % 3}.example/contacts?email=${{ inputs.email }}"
      retry: {{limit: 3, backoff: exponential, initialDelay: 1s, maxDelay: 1m}}
      timeout: 10s
      next: known
    - id: known
      type: condition
      condition: {{when: "steps.lookup.output.status == 200", then: welcome, else: end}}
    - id: welcome
      type: http
      http:
        method: POST
        url: https://mail.example/send
        body: {{to: "${{ inputs.email }}", template: welcome-{revision}}}
      retry: {{limit: 5, backoff: exponential, initialDelay: 2s}}
      next: pause
    - id: pause
      type: wait
      wait: {{duration: {revision}h}}
      next: note
    - id: note
      type: log
      log: {{message: "revision {revision} welcomed ${{ inputs.email }}"}}
"""


def environment_text(name: str, policy: str, pins: dict[str, str]) -> str:
    head = f"apiVersion: flowpin.dev/v1alpha1\nkind: Environment\nmetadata: {{name: {name}}}\n"
    pin_lines = "".join(f"    {workflow}: {pin}\n" for workflow, pin in sorted(pins.items()))
    return head + "spec:\n" + policy + "  pins:\n" + pin_lines


@dataclass
class BenchRepo:
    """A bare repository on `main`, and how to commit version bumps and pin changes."""

    path: Path
    repo: pygit2.Repository
    workflows: int
    policies: dict[str, str]  # environment -> its spec lines before `pins:`
    minors: list[int]
    pins: dict[str, dict[str, str]]
    commits: int = 0

    @property
    def url(self) -> str:
        return str(self.path)

    @property
    def deployments(self) -> int:
        return sum(len(pins) for pins in self.pins.values())

    def commit(self, bumped: Iterable[int], environments: Iterable[str], message: str) -> str:
        """One commit: each workflow in `bumped` gets its next minor version (new content),
        and each of `environments` pins exactly that version."""
        parent = None if self.commits == 0 else self.repo.revparse_single("refs/heads/main")
        parent_commit = parent.peel(pygit2.Commit) if parent is not None else None
        if parent_commit is not None:
            old = parent_commit.tree["workflows"]
            assert isinstance(old, pygit2.Tree)
            workflows_builder = self.repo.TreeBuilder(old)
        else:
            workflows_builder = self.repo.TreeBuilder()
        chosen = list(environments)
        for index in bumped:
            if parent_commit is not None:
                self.minors[index] += 1
            text = workflow_text(index, self.minors[index])
            blob = self.repo.create_blob(text.encode())
            workflows_builder.insert(
                f"{workflow_name(index)}.yaml", blob, pygit2.enums.FileMode.BLOB
            )
            for environment in chosen:
                self.pins[environment][workflow_name(index)] = f"1.{self.minors[index]}.0"
        env_builder = self.repo.TreeBuilder()
        for environment, policy in sorted(self.policies.items()):
            text = environment_text(environment, policy, self.pins[environment])
            blob = self.repo.create_blob(text.encode())
            env_builder.insert(f"{environment}.yaml", blob, pygit2.enums.FileMode.BLOB)
        root = self.repo.TreeBuilder()
        root.insert("workflows", workflows_builder.write(), pygit2.enums.FileMode.TREE)
        root.insert("environments", env_builder.write(), pygit2.enums.FileMode.TREE)
        parents = [parent_commit.id] if parent_commit is not None else []
        commit = self.repo.create_commit(
            "refs/heads/main", AUTHOR, AUTHOR, message, root.write(), parents
        )
        self.commits += 1
        return str(commit)


def build_repository(path: Path, workflows: int, policies: dict[str, str]) -> BenchRepo:
    """Every workflow at 1.0.0, pinned exactly in every environment, in one first commit."""
    repo = pygit2.init_repository(str(path), bare=True, initial_head="main")
    names = [workflow_name(w) for w in range(workflows)]
    bench = BenchRepo(
        path,
        repo,
        workflows,
        policies,
        [0] * workflows,
        {environment: dict.fromkeys(names, "1.0.0") for environment in policies},
    )
    bench.commit(range(workflows), (), f"{workflows} workflows at 1.0.0")
    return bench


# --------------------------------------------------------------------------- the cluster


def cpu_seconds_of_children() -> dict[str, float]:
    """CPU time (user + system) of this process's children, by role."""
    tick = os.sysconf("SC_CLK_TCK")
    found: dict[str, float] = {}
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) != me:
            continue
        words = [w.decode(errors="replace") for w in cmdline if w]
        if "operator" in words and "controller.cli" in words:
            role = "operator"
        elif len(words) > 1 and words[0].endswith("control-plane"):
            role = words[1]
        else:
            continue
        found[role] = found.get(role, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return found


def cpu_text(before: dict[str, float], after: dict[str, float]) -> str:
    parts = [
        f"{role} {after[role] - before.get(role, 0.0):.1f}"
        for role in ("operator", "kube-apiserver", "etcd")
        if role in after
    ]
    return "CPU s: " + ", ".join(parts)


def raw_json(response: Any) -> Any:
    """The body of a call made with `_preload_content=False` (no client models: faster)."""
    return json.loads(response.data)


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    for item in (obj.get("status") or {}).get("conditions") or []:
        if item.get("type") == type_:
            return dict(item)
    return {}


@dataclass
class Cluster:
    plane: ControlPlane
    kubectl: Kubectl
    operator: OperatorProcess
    api_client: client.ApiClient
    custom: client.CustomObjectsApi = field(init=False)
    core: client.CoreV1Api = field(init=False)

    def __post_init__(self) -> None:
        self.custom = client.CustomObjectsApi(self.api_client)
        self.core = client.CoreV1Api(self.api_client)

    # -------------------------------------------------------------- reading
    def get(self, namespace: str, plural: str, name: str) -> dict[str, Any]:
        """The object, or {} when it does not exist (yet)."""
        try:
            result = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, name
            )
        except ApiException as error:
            if error.status == 404:
                return {}
            raise
        assert isinstance(result, dict)
        return result

    def items(self, namespace: str, plural: str, selector: str = "") -> list[dict[str, Any]]:
        response = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, label_selector=selector, _preload_content=False
        )
        items: list[dict[str, Any]] = raw_json(response)["items"]
        return items

    def events(self, namespace: str) -> dict[str, dict[str, Any]]:
        """Every Event in the namespace, by uid (JSON, without the client's models)."""
        response = self.core.list_namespaced_event(namespace, _preload_content=False)
        return {e["metadata"]["uid"]: e for e in raw_json(response)["items"]}

    def writes(self) -> int:
        return self.operator.metric_sum("flowpin_api_writes_total")

    def labelled(self, prefix: str) -> Counter[str]:
        """A labelled counter of the operator's /metrics, by the value of its only label."""
        found: Counter[str] = Counter()
        for key, value in self.operator.metrics().items():
            if key.startswith(prefix):
                match = re.search(r'="([^"]*)"', key)
                found[match.group(1) if match else ""] += value
        return found

    def rounds(self) -> Counter[str]:
        return self.labelled("flowpin_source_syncs_total")

    def writes_by_kind(self) -> Counter[str]:
        """The operator's own breakdown of its writes (flowpin_api_writes_by_kind_total), by
        `<by> <kind> <verb>`: by = sync (the source sync) or deployments (the controller)."""
        found: Counter[str] = Counter()
        for key, value in self.operator.metrics().items():
            if key.startswith("flowpin_api_writes_by_kind_total{"):
                labels = dict(re.findall(r'(\w+)="([^"]*)"', key))
                found[f"{labels.get('by')} {labels.get('kind')} {labels.get('verb')}"] += value
        return found

    def transitions(self) -> Counter[str]:
        return self.labelled("flowpin_deployment_transitions_total")

    def apiserver_writes(self) -> Counter[tuple[str, str, str]]:
        """The API server's own count of write requests: (group, resource[/sub], verb)."""
        method, url, headers, _body, _post = self.api_client.param_serialize(
            "GET", "/metrics", auth_settings=["BearerToken"]
        )
        response = self.api_client.call_api(method, url, header_params=headers)
        text = bytes(response.read() or b"").decode()  # type: ignore[no-untyped-call]
        found: Counter[tuple[str, str, str]] = Counter()
        for line in text.splitlines():
            if not line.startswith("apiserver_request_total{"):
                continue
            labels_text, _, value = line.rpartition(" ")
            labels = dict(re.findall(r'(\w+)="([^"]*)"', labels_text))
            if labels.get("verb") not in WRITE_VERBS:
                continue
            resource = labels.get("resource", "")
            if labels.get("subresource"):
                resource += "/" + labels["subresource"]
            found[(labels.get("group", ""), resource, labels["verb"])] += int(float(value))
        return found

    def resource_versions(self, namespaces: Iterable[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for namespace in namespaces:
            for plural in FLOWPIN_PLURALS:
                for item in self.items(namespace, plural):
                    meta = item["metadata"]
                    found[f"{namespace}/{plural}/{meta['name']}"] = meta["resourceVersion"]
        return found

    # -------------------------------------------------------------- acting
    def apply_source(self, namespace: str, name: str, repo: BenchRepo, interval: str) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "WorkflowSource",
            "metadata": {"name": name},
            "spec": {
                "url": repo.url,
                "ref": {"branch": "main"},
                "interval": interval,
                "secretRef": {"name": HOOK_SECRET_NAME},
            },
        }
        self.kubectl.apply(json.dumps(body), namespace)

    def push(self, repo: BenchRepo) -> None:
        """What GitHub sends on a push to main, signed with the webhook secret."""
        body = json.dumps(
            {
                "ref": "refs/heads/main",
                "repository": {"clone_url": repo.url},
                "head_commit": {"id": str(repo.repo.revparse_single("refs/heads/main").id)},
            }
        ).encode()
        signature = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.operator.port}/hooks/git",
            data=body,
            headers={
                "Content-Type": "application/json",
                "X-GitHub-Event": "push",
                "X-Hub-Signature-256": signature,
            },
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            if response.status != 202:
                raise RuntimeError(f"push webhook answered {response.status}: {response.read()!r}")

    def wait_round(self, before: Counter[str], timeout: float = 600) -> Counter[str]:
        """Until the operator counted one more sync round than `before` (the counter moves
        after the round's last write)."""
        return poll(
            self.rounds,
            lambda now: now.total() > before.total(),
            timeout=timeout,
            interval=0.05,
            what="the sync round to finish",
        )

    def unobserved(self, namespace: str) -> list[str]:
        """Deployments whose status does not yet answer their latest spec (generation)."""
        return [
            d["metadata"]["name"]
            for d in self.items(namespace, "workflowdeployments")
            if (d.get("status") or {}).get("observedGeneration") != d["metadata"]["generation"]
        ]

    def settle(self, namespace: str, base: int, activated: int, timeout: float = 900) -> int:
        """Until every write a change caused is done: the operator counted `activated`
        Activated transitions more than `base`, every deployment of the namespace observed
        its latest generation, and the write counter stopped moving (two readings 6 s apart
        agree: longer than kopf's 5 s idle timeout of a per-object worker). Returns the
        counter."""
        poll(
            lambda: (self.transitions()["Activated"] - base, self.unobserved(namespace)),
            lambda r: r[0] >= activated and not r[1],
            timeout=timeout,
            interval=1.0,
            what=f"{activated} Activated transitions and every deployment observed",
        )
        previous = [-1]

        def reading() -> tuple[int, int]:
            before = previous[0]
            previous[0] = self.writes()
            return before, previous[0]

        _before, now = poll(
            reading,
            lambda r: r[0] == r[1],
            timeout=timeout,
            interval=6.0,
            what="the operator's write counter to settle",
        )
        return now


def writes_text(delta: Counter[tuple[str, str, str]]) -> str:
    """`wfv POST 500, wfv/status PATCH 1500, …` for flowpin objects and events."""
    parts = []
    for (group, resource, verb), count in sorted(delta.items()):
        if count <= 0 or not (group == GROUP or resource.startswith("events")):
            continue
        plural, _, sub = resource.partition("/")
        name = SHORT.get(plural, plural) + (f"/{sub}" if sub else "")
        parts.append(f"{name} {verb} {count}")
    return ", ".join(parts) or "none"


def breakdown_text(delta: Counter[str], per: int = 1) -> str:
    """`sync WorkflowVersion create 0.33, …` per `per` (writes per deployment)."""
    parts = [
        f"{key} {count / per:.2f}" if per > 1 else f"{key} {count}"
        for key, count in sorted(delta.items())
        if count > 0
    ]
    return ", ".join(parts) or "none"


def flowpin_total(delta: Counter[tuple[str, str, str]]) -> int:
    return sum(
        count
        for (group, resource, _verb), count in delta.items()
        if group == GROUP or resource.startswith("events")
    )


def api_count(delta: Counter[tuple[str, str, str]], resource: str, verb: str) -> int:
    return sum(c for (g, r, v), c in delta.items() if r == resource and v == verb and c > 0)


def status_change(before: dict[str, Any], after: dict[str, Any]) -> str:
    """`Verified(1.1.0)`, `Blocked/InvalidVersion(1.0.0)`, or the status fields that changed
    when phase, reason and active version did not."""
    label = f"{after.get('phase')}"
    if after.get("reason") != after.get("phase"):
        label += f"/{after.get('reason')}"
    label += f"(active {after.get('activeVersion')})"
    same = all(before.get(k) == after.get(k) for k in ("phase", "reason", "activeVersion"))
    if same:
        changed = sorted(k for k in {*before, *after} if before.get(k) != after.get(k))
        label += "[" + ",".join(changed) + "]"
    return label


class DeploymentWatch(threading.Thread):
    """Watches the WorkflowDeployments of a namespace and records, for the armed target
    version, when every one of them has it desired (spec.version) and when every one has
    it active and Verified."""

    def __init__(self, api_client: client.ApiClient, namespace: str) -> None:
        super().__init__(daemon=True)
        self.custom = client.CustomObjectsApi(api_client)
        self.namespace = namespace
        self.state: dict[str, tuple[str, str, str]] = {}  # name -> desired, active, phase
        self.statuses: dict[str, dict[str, Any]] = {}
        self.trails: dict[str, list[str]] = {}  # name -> status changes since armed
        self.lock = threading.Lock()
        self.listening = threading.Event()
        self.error: BaseException | None = None
        self.target: str | None = None
        self.expected = 0
        self.desired_at: float | None = None
        self.converged_at: float | None = None
        self._stopped = threading.Event()
        self._watch: Any = None

    def arm(self, version: str, expected: int) -> None:
        with self.lock:
            self.target, self.expected = version, expected
            self.desired_at = self.converged_at = None
            self.trails = {}
            self._check(time.monotonic())

    def counts(self) -> tuple[int, int]:
        """(deployments desiring the target, deployments Verified on it)."""
        with self.lock:
            values = list(self.state.values())
        desired = sum(1 for d, _a, _p in values if d == self.target)
        converged = sum(1 for _d, a, p in values if a == self.target and p == "Verified")
        return desired, converged

    def trail_counts(self) -> Counter[str]:
        """How many deployments went through each sequence of status writes."""
        with self.lock:
            return Counter(" > ".join(trail) for trail in self.trails.values())

    def _check(self, now: float) -> None:
        if self.target is None or len(self.state) < self.expected:
            return
        values = self.state.values()
        if self.desired_at is None and all(d == self.target for d, _a, _p in values):
            self.desired_at = now
        if self.converged_at is None and all(
            a == self.target and p == "Verified" for _d, a, p in values
        ):
            self.converged_at = now

    def _record(self, obj: dict[str, Any], deleted: bool = False) -> None:
        name = obj["metadata"]["name"]
        if deleted:
            self.state.pop(name, None)
            self.statuses.pop(name, None)
            return
        status = obj.get("status") or {}
        previous = self.statuses.get(name)
        if previous is not None and previous != status and self.target is not None:
            self.trails.setdefault(name, []).append(status_change(previous, status))
        self.statuses[name] = status
        self.state[name] = (
            str((obj.get("spec") or {}).get("version", "")),
            str(status.get("activeVersion", "")),
            str(status.get("phase", "")),
        )

    def _list(self) -> str:
        response = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "workflowdeployments", _preload_content=False
        )
        listed = raw_json(response)
        with self.lock:
            self.state.clear()
            for item in listed["items"]:
                self._record(item)
            self._check(time.monotonic())
        return str(listed["metadata"]["resourceVersion"])

    def run(self) -> None:
        try:
            resource_version = self._list()
            self.listening.set()
            while not self._stopped.is_set():
                self._watch = watch.Watch()  # type: ignore[no-untyped-call]
                try:
                    for event in self._watch.stream(
                        self.custom.list_namespaced_custom_object,
                        GROUP,
                        VERSION,
                        self.namespace,
                        "workflowdeployments",
                        resource_version=resource_version,
                        timeout_seconds=5,
                    ):
                        now = time.monotonic()
                        obj = event["object"]
                        if event["type"] == "ERROR":
                            raise ApiException(status=obj.get("code"), reason=obj.get("message"))
                        resource_version = obj["metadata"]["resourceVersion"]
                        with self.lock:
                            self._record(obj, deleted=event["type"] == "DELETED")
                            self._check(now)
                except ApiException as error:
                    if error.status != 410:
                        raise
                    resource_version = self._list()  # expired: list again
        except BaseException as error:  # reported by the caller
            if not self._stopped.is_set():
                self.error = error

    def wait(self, what: str, timeout: float, converged: bool = True) -> float:
        """Until the armed target is reached; the monotonic time the watch saw it."""

        def reached() -> float | None:
            if self.error is not None:
                raise RuntimeError(f"the deployment watch failed: {self.error}")
            return self.converged_at if converged else self.desired_at

        moment = poll(reached, lambda m: m is not None, timeout=timeout, interval=0.1, what=what)
        assert moment is not None
        return moment

    def stop(self) -> None:
        self._stopped.set()
        if self._watch is not None:
            self._watch.stop()


# --------------------------------------------------------------------------- figures


@dataclass
class PinResult:
    to_ready: float
    to_desired: float
    writes: int
    api: Counter[tuple[str, str, str]]
    stale: list[str]


def stale_environments(cluster: Cluster, namespace: str) -> list[str]:
    """WorkflowVersions whose status.environments (Active entries) disagree with where the
    deployments run them (status.activeVersion)."""
    where: dict[str, set[str]] = {}
    for deployment in cluster.items(namespace, "workflowdeployments"):
        spec = deployment["spec"]
        active = (deployment.get("status") or {}).get("activeVersion")
        if active:
            name = kinds.version_object_name(str(spec["workflow"]), str(active))
            where.setdefault(name, set()).add(str(spec["environment"]))
    stale = []
    for version in cluster.items(namespace, "workflowversions"):
        name = version["metadata"]["name"]
        entries = (version.get("status") or {}).get("environments") or []
        listed = {e.get("name") for e in entries if e.get("state") == "Active"}
        expected = where.get(name, set())
        if listed != expected:
            stale.append(f"{name} lists {sorted(listed)}, active in {sorted(expected)}")
    return stale


def settle_environments(cluster: Cluster, namespace: str, timeout: float = 30) -> list[str]:
    """Wait (bounded) until every WorkflowVersion's status.environments agrees with the
    deployments (the operator writes it a moment after an activation, coalesced per
    workflow); the disagreements left when the time is up."""
    try:
        poll(
            lambda: stale_environments(cluster, namespace),
            lambda stale: not stale,
            timeout=timeout,
            interval=0.2,
            what="WorkflowVersion status.environments",
        )
    except TimeoutError:
        return stale_environments(cluster, namespace)
    return []


def stale_text(stale: list[str]) -> str:
    return f" (disagreements: {'; '.join(sorted(set(stale))[:4])})" if stale else ""


def one_pin_change(cluster: Cluster, namespace: str, repo: BenchRepo, index: int) -> PinResult:
    """Commit a version bump of one workflow and its exact dev pin, push, and wait until the
    deployment is Ready on it; then until the change's last write (its Activated Event)."""
    workflow = workflow_name(index)
    deployment = f"{workflow}.dev"
    writes = cluster.writes()
    rounds = cluster.rounds()
    api = cluster.apiserver_writes()
    activated = cluster.transitions()["Activated"]
    events_before = set(cluster.events(namespace))
    repo.commit([index], ["dev"], f"{workflow} 1.{repo.minors[index] + 1}.0 to dev")
    version = f"1.{repo.minors[index]}.0"
    desired_at: list[float] = []

    def fetch() -> dict[str, Any]:
        obj = cluster.get(namespace, "workflowdeployments", deployment)
        if not desired_at and (obj.get("spec") or {}).get("version") == version:
            desired_at.append(time.monotonic())
        return obj

    def ready(obj: dict[str, Any]) -> bool:
        status = obj.get("status") or {}
        return (
            status.get("activeVersion") == version
            and condition(obj, "Ready").get("status") == "True"
        )

    started = time.monotonic()
    cluster.push(repo)
    poll(fetch, ready, timeout=120, interval=POLL_FAST, what=f"{deployment} Ready on {version}")
    elapsed = time.monotonic() - started
    cluster.wait_round(rounds)
    poll(
        lambda: cluster.transitions()["Activated"],
        lambda count: count > activated,
        timeout=60,
        what="the Activated transition",
    )
    poll(
        lambda: [
            e
            for uid, e in cluster.events(namespace).items()
            if uid not in events_before and e.get("reason") == "Activated"
        ],
        bool,
        timeout=60,
        what="the Activated Event",
    )
    poll(
        lambda: cluster.unobserved(namespace),
        lambda names: not names,
        timeout=600,
        interval=0.5,
        what=f"every deployment in {namespace} to observe its latest spec",
    )
    stale = settle_environments(cluster, namespace)
    log(f"{deployment} Ready on {version} in {elapsed:.3f} s")
    written = cluster.writes() - writes
    api_delta = cluster.apiserver_writes()
    api_delta.subtract(api)
    return PinResult(elapsed, desired_at[0] - started, written, api_delta, stale)


def pin_to_ready(cluster: Cluster, namespace: str, repo: BenchRepo, pushes: int) -> None:
    """Figure 1: one commit (version bump + exact dev pin) at a time through the webhook."""
    results = [one_pin_change(cluster, namespace, repo, i % repo.workflows) for i in range(pushes)]
    ready_s = [r.to_ready for r in results]
    desired_s = [r.to_desired for r in results]
    writes = sorted(r.writes for r in results)
    workload = (
        f"{len(results)} commits one at a time, each bumping one of {repo.workflows} workflows "
        f"(5 steps) and its exact pin in `dev` (no promotion block: every gate open, rollout "
        f"immediate); signed GitHub push to /hooks/git -> status.activeVersion is the new "
        f"version and Ready=True, polled with the kubernetes client (GET every "
        f"{POLL_FAST * 1000:.0f} ms, no kubectl)"
    )
    report("promote_pin_to_ready_p50", round(percentile(ready_s, 0.5), 3), "s", workload)
    report("promote_pin_to_ready_p95", round(percentile(ready_s, 0.95), 3), "s", workload)
    report(
        "promote_pin_to_desired_p50",
        round(percentile(desired_s, 0.5), 3),
        "s",
        f"the source sync's share of the above: push -> spec.version of the deployment is the "
        f"new version (p95 {percentile(desired_s, 0.95):.3f} s); the rest is the deployment "
        f"controller",
    )
    report(
        "promote_pin_writes_per_commit",
        writes[len(writes) // 2],
        "writes",
        f"operator's flowpin_api_writes_total per commit, median of {len(writes)} "
        f"(min {writes[0]}, max {writes[-1]}); API server, last commit: "
        f"{writes_text(results[-1].api)} ({repo.workflows} deployments in dev, "
        f"{repo.workflows} in staging), the last of them the WorkflowVersions' "
        f"status.environments, waited for (at most 30 s): they agreed with the deployments "
        f"after {sum(1 for r in results if not r.stale)} of {len(results)} "
        f"commits{stale_text([s for r in results for s in r.stale])}",
    )


def initial_sync(
    cluster: Cluster, namespace: str, repo: BenchRepo, deployments: DeploymentWatch, interval: str
) -> None:
    """Apply the source and wait until every deployment is Verified on 1.0.0."""
    cpu = cpu_seconds_of_children()
    writes = cluster.writes()
    activated = cluster.transitions()["Activated"]
    started = time.monotonic()
    deployments.arm("1.0.0", repo.deployments)
    cluster.apply_source(namespace, "bench", repo, interval=interval)
    moment = deployments.wait(
        f"{repo.deployments} deployments Verified on 1.0.0", timeout=1200, converged=True
    )
    elapsed = moment - started
    written = cluster.settle(namespace, activated, repo.deployments) - writes
    report(
        f"promote_initial_converge_{repo.deployments}_deployments",
        round(elapsed, 2),
        "s",
        f"kubectl apply of the WorkflowSource ({repo.workflows} workflows x "
        f"{len(repo.policies)} environments, one commit) -> every deployment Verified on "
        f"1.0.0 (watch); {written} operator writes until settled; "
        f"{cpu_text(cpu, cpu_seconds_of_children())}",
    )


def converge(
    cluster: Cluster, namespace: str, repo: BenchRepo, deployments: DeploymentWatch
) -> None:
    """Figure 2: one commit bumping every workflow and every pin; push; until converged."""
    total = repo.deployments
    old_version, new_version = "1.0.0", "1.1.0"
    writes = cluster.writes()
    rounds = cluster.rounds()
    api = cluster.apiserver_writes()
    by_kind = cluster.writes_by_kind()
    transitions = cluster.transitions()
    events_before = set(cluster.events(namespace))
    cpu = cpu_seconds_of_children()
    repo.commit(range(repo.workflows), list(repo.policies), f"Bump all to {new_version}")
    assert all(m == 1 for m in repo.minors)
    deployments.arm(new_version, total)
    started = time.monotonic()
    cluster.push(repo)
    desired_at = deployments.wait(
        f"every deployment to desire {new_version}", timeout=900, converged=False
    )
    converged_at = deployments.wait(
        f"every deployment Verified on {new_version}", timeout=900, converged=True
    )
    at_convergence = cluster.writes() - writes
    elapsed = converged_at - started
    cluster.wait_round(rounds)
    written = cluster.settle(namespace, transitions["Activated"], total) - writes
    settled = time.monotonic() - started
    cpu_used = cpu_text(cpu, cpu_seconds_of_children())
    api_delta = cluster.apiserver_writes()
    api_delta.subtract(api)
    transitions_delta = cluster.transitions()
    transitions_delta.subtract(transitions)
    by_kind_delta = cluster.writes_by_kind()
    by_kind_delta.subtract(by_kind)
    trails = deployments.trail_counts()
    stale = settle_environments(cluster, namespace, timeout=10)

    # The objects themselves: what changed, and which Events were written.
    new_events = [e for uid, e in cluster.events(namespace).items() if uid not in events_before]
    event_reasons = Counter(
        f"{e['involvedObject'].get('kind')}/{e.get('reason')}" for e in new_events
    )
    versions = cluster.items(namespace, "workflowversions")
    created = [v for v in versions if v["spec"]["version"] == new_version]
    everywhere = sorted(repo.policies)

    def environments_of(v: dict[str, Any]) -> list[str]:
        return [e["name"] for e in (v.get("status") or {}).get("environments") or []]

    new_listed = sum(1 for v in created if environments_of(v) == everywhere)
    old_emptied = sum(
        1 for v in versions if v["spec"]["version"] == old_version and not environments_of(v)
    )
    listed = cluster.items(namespace, "workflowdeployments")
    activated = sum(
        1
        for d in listed
        if (d.get("status") or {}).get("activeVersion") == new_version
        and ((d.get("status") or {}).get("history") or [{}])[0].get("result") == "Activated"
        and (d.get("status") or {}).get("previousVersion") == old_version
    )

    wfv_status = api_count(api_delta, "workflowversions/status", "PATCH")
    # The sync's own status writes of versions (none since versions carry spec.facts); the
    # rest are the deployment controller's status.environments.
    sync_wfv_status = sum(
        c for k, c in by_kind_delta.items() if k.startswith("sync WorkflowVersion patch-status")
    )
    per_deployment = (
        api_count(api_delta, "workflowdeployments", "PATCH")
        + api_count(api_delta, "workflowdeployments/status", "PATCH")
        + event_reasons.get("WorkflowDeployment/Activated", 0)
        + event_reasons.get("WorkflowDeployment/Blocked", 0)
    )
    by_result = ", ".join(f"{k} {v}" for k, v in sorted(transitions_delta.items()) if v > 0)
    sync_share = desired_at - started
    report(
        f"promote_converge_{total}_deployments",
        round(elapsed, 2),
        "s",
        f"{repo.workflows} workflows (5 steps) x {len(repo.policies)} environments "
        f"({', '.join(everywhere)}, none with a promotion block: every gate open, rollout "
        f"immediate); ONE commit bumps every workflow to {new_version} and every pin; signed "
        f"push -> a watch sees all {total} deployments with activeVersion {new_version} and "
        f"phase Verified; all {total} had spec.version {new_version} (the sync's share) after "
        f"{sync_share:.2f} s; {cpu_used}",
    )
    report(
        "promote_writes_per_deployment",
        round(written / total, 2),
        "writes",
        f"operator's flowpin_api_writes_total from the push until every write the commit "
        f"caused was done ({settled:.1f} s; {at_convergence} of them by convergence), "
        f"divided by {total} converged deployments; target <= 3. API server "
        f"(apiserver_request_total, write verbs): {writes_text(api_delta)}. Of the wfv/status "
        f"patches, {sync_wfv_status} are the sync's (versions without spec.facts) and "
        f"{wfv_status - sync_wfv_status} the deployment controller's status.environments. "
        f"Per deployment object (wfd spec + wfd status + its Events): "
        f"{per_deployment / total:.2f}. Transitions: {by_result or 'none'}",
    )
    events_written = sum(c for k, c in by_kind_delta.items() if " Event " in k and c > 0)
    report(
        "promote_writes_per_deployment_without_events",
        round((written - events_written) / total, 2),
        "writes",
        f"the same without the {events_written} Events (one per transition); by the "
        f"operator's flowpin_api_writes_by_kind_total, per deployment: "
        f"{breakdown_text(by_kind_delta, total)}",
    )
    report(
        f"promote_writes_{total}_deployments",
        written,
        "writes",
        f"the total; counted on the objects: {len(created)} new WorkflowVersions "
        f"({new_listed} list all {len(everywhere)} environments in status.environments, "
        f"{old_emptied} old ones list none), {activated} deployments Activated "
        f"{old_version} -> {new_version}, "
        f"{len(new_events)} new Events ("
        + ", ".join(f"{k} {v}" for k, v in sorted(event_reasons.items()))
        + "); status writes of each deployment as a watch saw them: "
        + "; ".join(f"{count} x {trail}" for trail, count in trails.most_common(6))
        + f"; WorkflowVersions whose status.environments disagree with the deployments: "
        f"{len(stale)}{stale_text(stale)}",
    )


def idle(
    cluster: Cluster,
    namespaces: tuple[str, ...],
    repo: BenchRepo,
    seconds: float,
    interval: str,
) -> None:
    """Figure 3: nothing new in git; observe writes over `seconds`."""
    # Start at a round boundary, so that every round counted ran inside the window.
    cluster.wait_round(cluster.rounds(), timeout=120)
    versions_before = cluster.resource_versions(namespaces)
    writes = cluster.writes()
    rounds = cluster.rounds()
    transitions = cluster.transitions()
    api = cluster.apiserver_writes()
    time.sleep(seconds)  # the observation window itself
    written = cluster.writes() - writes
    rounds_delta = cluster.rounds()
    rounds_delta.subtract(rounds)
    transitions_delta = cluster.transitions()
    transitions_delta.subtract(transitions)
    api_delta = cluster.apiserver_writes()
    api_delta.subtract(api)
    versions_after = cluster.resource_versions(namespaces)
    changed = sorted(k for k, v in versions_before.items() if versions_after.get(k) != v)
    changed += sorted(set(versions_after) - set(versions_before))
    examples = f" ({', '.join(changed[:5])})" if changed else ""
    minutes = f"{seconds / 60:g}min" if seconds >= 60 else f"{seconds:.0f}s"
    by_result = ", ".join(f"{k} {v}" for k, v in sorted(rounds_delta.items()) if v > 0)
    moved = ", ".join(f"{k} {v}" for k, v in sorted(transitions_delta.items()) if v > 0)
    report(
        f"promote_idle_writes_{minutes}",
        written,
        "writes",
        f"{repo.deployments:,} deployments converged, {rounds_delta.total()} sync rounds "
        f"(interval {interval}: {by_result or 'none'}); operator's flowpin_api_writes_total "
        f"over {seconds:.0f} s; transitions: {moved or 'none'}; API server, flowpin objects "
        f"and Events: {flowpin_total(api_delta)} writes ({writes_text(api_delta)}); "
        f"resourceVersions of {len(versions_before):,} flowpin objects: {len(changed)} "
        f"changed{examples}",
    )


def pin_in_large_environment(cluster: Cluster, namespace: str, repo: BenchRepo) -> None:
    """Figure 1 again, once, in an environment of `repo.workflows` deployments."""
    writes = cluster.writes()
    api = cluster.apiserver_writes()
    by_kind = cluster.writes_by_kind()
    activated = cluster.transitions()["Activated"]
    started = time.monotonic()
    result = one_pin_change(cluster, namespace, repo, 0)
    written = cluster.settle(namespace, activated, 1) - writes
    settled = time.monotonic() - started
    stale = settle_environments(cluster, namespace, timeout=10)
    api_delta = cluster.apiserver_writes()
    api_delta.subtract(api)
    by_kind_delta = cluster.writes_by_kind()
    by_kind_delta.subtract(by_kind)
    workload = (
        f"one commit bumping {workflow_name(0)} and its exact pin in `dev`, which pins "
        f"{repo.workflows} workflows (no promotion block), after the figures above; signed "
        f"push -> Ready=True on the new version (GET every {POLL_FAST * 1000:.0f} ms); "
        f"spec.version changed after {result.to_desired:.2f} s"
    )
    report(f"promote_pin_to_ready_{repo.workflows}_pins", round(result.to_ready, 3), "s", workload)
    report(
        f"promote_pin_writes_{repo.workflows}_pins",
        written,
        "writes",
        f"operator's flowpin_api_writes_total until every write was done ({settled:.1f} s after "
        f"the commit); by the operator: {breakdown_text(by_kind_delta)}; API server: "
        f"{writes_text(api_delta)}; WorkflowVersions whose status.environments disagree with "
        f"the deployments: {len(stale)}{stale_text(stale)}",
    )


# --------------------------------------------------------------------------- main


@dataclass(frozen=True)
class Plan:
    workflows: int
    pushes: int
    idle_seconds: float
    idle_interval: str


FULL = Plan(workflows=500, pushes=20, idle_seconds=300, idle_interval="15s")
QUICK = Plan(workflows=50, pushes=3, idle_seconds=30, idle_interval="5s")
SMALL_WORKFLOWS = 5


def run(plan: Plan, workdir: Path) -> None:
    log("building repositories")
    small = build_repository(
        workdir / "small.git",
        SMALL_WORKFLOWS,
        {"dev": NO_GATES, "staging": "  promotion: {from: dev}\n" + NO_GATES},
    )
    big = build_repository(
        workdir / "big.git",
        plan.workflows,
        {"dev": NO_GATES, "staging": NO_GATES, "prod": NO_GATES},
    )

    plane = ControlPlane()
    operator: OperatorProcess | None = None
    deployments: DeploymentWatch | None = None
    api_client: client.ApiClient | None = None
    try:
        log("starting the control plane")
        plane.start()
        kubectl = Kubectl(env=plane.env())
        install_flowpin(kubectl)
        suffix = uuid.uuid4().hex[:6]
        ns_small, ns_big = f"promote-small-{suffix}", f"promote-big-{suffix}"
        namespaces = (ns_small, ns_big)
        for namespace in namespaces:
            kubectl.run("create", "namespace", namespace)
            kubectl.run(
                "create", "secret", "generic", HOOK_SECRET_NAME, "-n", namespace,
                f"--from-literal=webhookSecret={WEBHOOK_SECRET}",
            )  # fmt: skip
        kubeconfig = operator_kubeconfig(plane, kubectl, workdir / "operator-kubeconfig")
        operator = OperatorProcess(
            kubeconfig=kubeconfig,
            log_path=workdir / "operator.log",
            namespaces=namespaces,
            lease_name=f"bench-{suffix}",
            extra_env={"FLOWPIN_CACHE": str(workdir / "cache")},
        ).start()
        operator.wait_ready(timeout=120)
        log(f"operator ready (log: {operator.log_path})")
        api_client = config.new_client_from_config(str(plane.kubeconfig))  # type: ignore[no-untyped-call]
        cluster = Cluster(plane, kubectl, operator, api_client)

        log(f"figure 1: {plan.pushes} pin changes in dev, {SMALL_WORKFLOWS} workflows")
        cluster.apply_source(ns_small, "bench", small, interval="1h")
        poll(
            lambda: [
                (d.get("status") or {}).get("phase")
                for d in cluster.items(ns_small, "workflowdeployments")
            ],
            lambda phases: len(phases) == small.deployments and set(phases) == {"Verified"},
            timeout=120,
            what="the small repository's deployments Verified",
        )
        pin_to_ready(cluster, ns_small, small, plan.pushes)

        log(f"figure 2: {big.workflows} workflows x 3 environments")
        deployments = DeploymentWatch(api_client, ns_big)
        deployments.start()
        if not deployments.listening.wait(timeout=30):
            raise RuntimeError(f"the deployment watch did not start: {deployments.error}")
        initial_sync(cluster, ns_big, big, deployments, plan.idle_interval)
        log("all Verified on 1.0.0; one commit bumps everything")
        converge(cluster, ns_big, big, deployments)
        deployments.stop()

        log(f"figure 3: idle for {plan.idle_seconds:.0f} s")
        idle(cluster, namespaces, big, plan.idle_seconds, plan.idle_interval)

        log(f"one pin change in an environment of {big.workflows} workflows")
        pin_in_large_environment(cluster, ns_big, big)
    except BaseException:
        if operator is not None:
            print(operator.logs()[-4000:], file=sys.stderr)
        raise
    finally:
        if deployments is not None:
            deployments.stop()
            deployments.join(timeout=15)
        if api_client is not None:
            api_client.close()  # type: ignore[no-untyped-call]
        if operator is not None:
            operator.stop()
        plane.stop()


def product_revision() -> str:
    """The commit of the code under test, and whether controller/ has uncommitted changes."""
    try:
        repo = pygit2.Repository(str(REPO_ROOT))
        changed = any(
            path.startswith("controller/") and not flags & pygit2.enums.FileStatus.IGNORED
            for path, flags in repo.status().items()
        )
    except (pygit2.GitError, KeyError) as error:
        return f"unknown ({error})"
    suffix = " + uncommitted changes in controller/" if changed else ""
    return f"{str(repo.head.target)[:7]}{suffix}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="50 workflows, 3 pushes, 30 s idle")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    started = time.monotonic()
    revision = product_revision()
    workdir = Path(tempfile.mkdtemp(prefix="flowpin-bench-promote-"))
    try:
        run(plan, workdir)
    finally:
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    report(
        "promote_bench_wall_time",
        round(time.monotonic() - started, 1),
        "s",
        f"{'--quick' if args.quick else 'default'} run, {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f} at the end, {datetime.date.today().isoformat()}, flowpin at "
        f"{revision}",
    )


if __name__ == "__main__":
    main()
