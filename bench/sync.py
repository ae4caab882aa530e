"""Source sync figures: mirroring git history into a real control plane with the real operator.

    python bench/sync.py [--quick] [--keep]

Repositories are written with pygit2 straight into the object database: W workflows of 20
realistic steps each (http with retries and templated bodies, CEL conditions, waits, `set`,
`log`), one commit per version bump of one workflow (W x V commits, commit times over the
last days so that retention archives nothing), and three environments in the first commit:
dev pins `latest` for every workflow, staging pins half of them and prod a quarter to exact
older versions. A local kube-apiserver (controller/testing) runs flowpin's CRDs and RBAC; ONE
`flowpin operator` subprocess runs under the manifests/ ServiceAccount's token, watching the
two benchmark namespaces, and every WorkflowSource has a secretRef with a `webhookSecret`.

The operator runs the source sync and the deployment controller side by side; both count in
its `flowpin_api_writes_total`. So the figures say whose writes they are: the counter over the
sync round (the operator's log line `synced ns/name: ... N writes`), the API server's
`apiserver_request_total` by resource over the same span, the source sync's share of it
(`source_sync_writes`: its resources, Events on WorkflowSources, one wfv/status patch per
version created), and "settled" figures that wait until the operator made no write for a while.

1. Full sync of the 20 x 20 repository; then 20 pushes -> WorkflowVersion visible through
   the push webhook on it (p50/p95; one at a time, polled with the kubernetes client every
   20 ms), while nothing else is going on.
2. Full sync of the 200 x 20 repository (4,000 versions, 4,000 commits): `kubectl apply` of
   the WorkflowSource until Ready=True (Succeeded) with status.counts.versions == 4,000;
   `kubectl get wfv` must list 4,000 objects. Then how long until the operator is quiet.
3. Incremental sync after one commit bumping one workflow, 400 and 4,000 commits side by
   side under the same conditions: signed GitHub push to `/hooks/git`, until the new
   WorkflowVersion exists and the source's status.artifact.commit is the new commit; median
   of 5. Target: under 1 s, writes independent of history.
4. Idle: the 4,000-commit source with `interval: 10s` and nothing new for 5 minutes: the
   operator's write counter; the source sync's own kinds of write on the API server; every
   flowpin.dev write and the resourceVersion of every flowpin object before and after; Lease
   renewals (leader election), counted with a watch.

`--quick` is a smoke run: 10 x 4 and 20 x 5 repositories, 3 repetitions, 10 pushes, 30 s idle.
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
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pygit2
import yaml
from common import percentile, report
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from controller.testing.cluster import (
    Kubectl,
    OperatorProcess,
    install_flowpin,
    operator_kubeconfig,
    poll,
)
from controller.testing.controlplane import ControlPlane

GROUP = "flowpin.dev"
VERSION = "v1alpha1"
STEPS = 20
WEBHOOK_SECRET = "bench-webhook-secret"
HOOK_SECRET_NAME = "git-hook"
ENVIRONMENTS = ("dev", "staging", "prod")
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
# What the source sync writes (the deployment controller writes wfd/status and wfv/status).
SOURCE_SYNC_RESOURCES = {
    "workflowversions",
    "environments",
    "environments/status",
    "workflowdeployments",
    "workflowsources/status",
}
WRITE_VERBS = {"POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION", "APPLY"}
POLL_FAST = 0.02
QUIET = 5.0  # seconds without an operator write that count as settled
_DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
# Replaced per version in a workflow's dumped text: the version, and a revision number that
# changes real content (a wait, a query parameter, a log line) with every bump.
_VERSION = "0.0.0-benchversion"
_REVISION = "benchrevision"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- repositories


def _step_ids() -> list[str]:
    slots = ("lookup", "known", "remember", "welcome", "pause", "crm", "note", "scored", "tag")
    return [f"{slots[i % len(slots)]}-{i // len(slots)}" for i in range(STEPS - 1)] + ["alert"]


def _step(ids: list[str], i: int, seed: int) -> dict[str, Any]:
    """Step `i` of a chain of nine kinds of realistic step in turn; conditions branch
    forward, errors go to the final `alert` step."""
    sid = ids[i]
    last = len(ids) - 1  # `alert`, reached only on errors
    nxt = ids[i + 1] if i + 1 < last else "end"
    skip = ids[i + 2] if i + 2 < last else "end"
    block = i // 9
    base = f"https://api{seed % 5}.example/v{1 + block}"
    slot = i % 9
    step: dict[str, Any] = {"id": sid}
    if i == last:
        return step | {"type": "fail", "fail": {"message": "stage failed for ${ inputs.email }"}}
    if slot == 0:
        step |= {
            "type": "http",
            "http": {
                "method": "GET",
                "url": f"{base}/contacts?email=${{ inputs.email }}&limit={_REVISION}",
                "headers": {
                    "accept": "application/json",
                    "authorization": "Bearer ${ inputs.token }",
                },
            },
            "retry": {"limit": 3, "backoff": "exponential", "initialDelay": "1s", "maxDelay": "1m"},
            "timeout": "10s",
            "onError": "goto:alert",
        }
    elif slot == 1:
        step |= {
            "type": "condition",
            "condition": {
                "when": f'steps["{ids[i - 1]}"].output.status == 200 && inputs.plan != "free"',
                "then": nxt,
                "else": skip,
            },
        }
        return step
    elif slot == 2:
        step |= {
            "type": "set",
            "set": {f"contact_{block}": f'steps["{ids[i - 2]}"].output.body.items[0].id'},
        }
    elif slot == 3:
        step |= {
            "type": "http",
            "http": {
                "method": "POST",
                "url": f"https://mail{seed % 3}.example/send",
                "headers": {"content-type": "application/json"},
                "body": {
                    "to": "${ inputs.email }",
                    "template": f"welcome-{block}",
                    "data": {"contact": f"${{ vars.contact_{block} }}", "plan": "${ inputs.plan }"},
                },
            },
            "retry": {"limit": 5, "backoff": "exponential", "initialDelay": "2s"},
            "timeout": "30s",
        }
    elif slot == 4:
        step |= {"type": "wait", "wait": {"duration": f"{_REVISION}h"}}
    elif slot == 5:
        step |= {
            "type": "http",
            "http": {
                "method": "PUT",
                "url": f"{base}/crm/contacts/${{ vars.contact_{block} }}",
                "body": {"stage": f"nurture-{block}", "email": "${ inputs.email }"},
            },
            "retry": {"limit": 2, "backoff": "fixed", "initialDelay": "500ms"},
        }
    elif slot == 6:
        step |= {
            "type": "log",
            "log": {"message": f"stage {block} revision {_REVISION} done for ${{ inputs.email }}"},
        }
    elif slot == 7:
        crm = ids[i - 2]
        step |= {
            "type": "condition",
            "condition": {
                "when": f'has(steps["{crm}"].output.body.score) && '
                f'steps["{crm}"].output.body.score > {40 + block}',
                "then": nxt,
                "else": skip,
            },
        }
        return step
    else:
        step |= {
            "type": "http",
            "http": {
                "method": "PATCH",
                "url": f"{base}/crm/contacts/${{ vars.contact_{block} }}/tags",
                "body": {"add": ["hot-lead"]},
            },
            "onError": "continue",
        }
    step["next"] = nxt
    return step


def workflow_template(name: str, seed: int) -> str:
    """The workflow's YAML with the version and revision sentinels left in."""
    ids = _step_ids()
    document = {
        "apiVersion": "flowpin.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name, "labels": {"team": f"team-{seed % 5}"}},
        "spec": {
            "version": _VERSION,
            "description": f"Nurture a lead through {STEPS} steps (benchmark workflow {seed}).",
            "inputs": {
                "type": "object",
                "required": ["email", "token"],
                "properties": {
                    "email": {"type": "string"},
                    "token": {"type": "string"},
                    "plan": {"type": "string", "enum": ["free", "pro", "team"]},
                },
            },
            "triggers": [
                {"id": "signup", "type": "webhook", "secretRef": {"name": f"{name}-webhook"}},
                {
                    "id": "nightly",
                    "type": "schedule",
                    "schedule": f"{seed % 60} 9 * * 1-5",
                    "timezone": "Europe/Berlin",
                },
            ],
            "steps": [_step(ids, i, seed) for i in range(len(ids))],
        },
    }
    header = "# yaml-language-server: $schema=https://flowpin.dev/schemas/v1alpha1/workflow.json\n"
    return header + yaml.dump(document, Dumper=_DUMPER, sort_keys=False, width=100)


def environment_text(name: str, pins: dict[str, str]) -> str:
    policy = {
        "dev": "  rollout: {strategy: immediate}\n  inflight: cancel\n",
        "staging": "  promotion: {from: dev}\n  rollout: {strategy: immediate}\n  inflight: pin\n",
        "prod": (
            "  promotion:\n    from: staging\n    soak: 1h\n    approval: required\n"
            '    windows: [{kind: allow, schedule: "0 9 * * 1-5", duration: 8h, timezone: UTC}]\n'
            "  rollout:\n    strategy: canary\n"
            "    steps: [{weight: 10, pause: 10m}, {weight: 50, pause: 10m}]\n"
            "    analysis: {minRuns: 20, successRate: 0.95}\n"
            "  inflight: pin\n"
        ),
    }[name]
    head = f"apiVersion: flowpin.dev/v1alpha1\nkind: Environment\nmetadata: {{name: {name}}}\n"
    pin_lines = "".join(f"    {workflow}: {pin}\n" for workflow, pin in sorted(pins.items()))
    return head + "spec:\n" + policy + "  pins:\n" + pin_lines


@dataclass
class BenchRepo:
    """A repository of `workflows` x `versions` commits, and how to add one more."""

    path: Path
    workflows: int
    versions: int
    repo: pygit2.Repository
    templates: list[str]
    minors: list[int]  # the current minor version of each workflow
    commits: int = 0
    bumps: int = 0
    history: int = 0  # commits when built, before any bump

    @property
    def url(self) -> str:
        return str(self.path)

    @property
    def label(self) -> str:
        return f"{self.commits:,} commits"

    def text(self, workflow: int, minor: int) -> str:
        return (
            self.templates[workflow]
            .replace(_VERSION, f"1.{minor}.0")
            .replace(_REVISION, str(1 + minor % 47))
        )

    def bump(self) -> tuple[str, str]:
        """Commit one version bump of one workflow (a different one each time, content
        changed too); returns the commit id and the name of the new WorkflowVersion."""
        workflow = (self.bumps * 7) % self.workflows
        self.bumps += 1
        self.minors[workflow] += 1
        minor = self.minors[workflow]
        name = workflow_name(workflow)
        tip = self.repo.revparse_single("refs/heads/main").peel(pygit2.Commit)
        blob = self.repo.create_blob(self.text(workflow, minor).encode())
        workflows_tree = tip.tree["workflows"]
        assert isinstance(workflows_tree, pygit2.Tree)
        builder = self.repo.TreeBuilder(workflows_tree)
        builder.insert(f"{name}.yaml", blob, pygit2.enums.FileMode.BLOB)
        root = self.repo.TreeBuilder(tip.tree)
        root.insert("workflows", builder.write(), pygit2.enums.FileMode.TREE)
        author = pygit2.Signature("flowpin bench", "bench@flowpin.dev")
        commit = self.repo.create_commit(
            "refs/heads/main", author, author, f"{name} 1.{minor}.0", root.write(), [tip.id]
        )
        self.commits += 1
        return str(commit), f"{name}.v1.{minor}.0"


def workflow_name(index: int) -> str:
    return f"wf-{index:03d}"


def build_repository(path: Path, workflows: int, versions: int) -> BenchRepo:
    """One commit per version bump of one workflow: all workflows at 1.0.0 first, then
    1.1.0, … The environments come with the first commit."""
    repo = pygit2.init_repository(str(path), bare=True, initial_head="main")
    bench = BenchRepo(
        path,
        workflows,
        versions,
        repo,
        [workflow_template(workflow_name(w), w) for w in range(workflows)],
        [versions - 1] * workflows,
    )
    names = [workflow_name(w) for w in range(workflows)]
    pins = {
        "dev": dict.fromkeys(names, "latest"),
        "staging": {n: f"1.{max(versions - 3, 0)}.0" for n in names[: max(workflows // 2, 1)]},
        "prod": {n: f"1.{max(versions - 5, 0)}.0" for n in names[: max(workflows // 4, 1)]},
    }
    env_builder = repo.TreeBuilder()
    for env in ENVIRONMENTS:
        blob = repo.create_blob(environment_text(env, pins[env]).encode())
        env_builder.insert(f"{env}.yaml", blob, pygit2.enums.FileMode.BLOB)
    env_tree = env_builder.write()
    total = workflows * versions
    start = int(time.time()) - total * 60 - 3600  # one commit a minute, ending an hour ago
    blobs: dict[str, pygit2.Oid] = {}
    parents: list[pygit2.Oid] = []
    for v in range(versions):
        for w in range(workflows):
            blobs[f"{names[w]}.yaml"] = repo.create_blob(bench.text(w, v).encode())
            builder = repo.TreeBuilder()
            for file_name, blob in blobs.items():
                builder.insert(file_name, blob, pygit2.enums.FileMode.BLOB)
            root = repo.TreeBuilder()
            root.insert("workflows", builder.write(), pygit2.enums.FileMode.TREE)
            root.insert("environments", env_tree, pygit2.enums.FileMode.TREE)
            when = start + bench.commits * 60
            author = pygit2.Signature("flowpin bench", "bench@flowpin.dev", when, 0)
            commit = repo.create_commit(
                "refs/heads/main", author, author, f"{names[w]} 1.{v}.0", root.write(), parents
            )
            parents = [commit]
            bench.commits += 1
    bench.history = bench.commits
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


@dataclass
class Cluster:
    plane: ControlPlane
    kubectl: Kubectl
    operator: OperatorProcess
    api_client: client.ApiClient
    custom: client.CustomObjectsApi = field(init=False)

    def __post_init__(self) -> None:
        self.custom = client.CustomObjectsApi(self.api_client)

    # -------------------------------------------------------------- reading
    def source(self, namespace: str, name: str) -> dict[str, Any]:
        result = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, "workflowsources", name
        )
        assert isinstance(result, dict)
        return result

    def exists(self, namespace: str, plural: str, name: str) -> bool:
        try:
            self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return True

    def writes(self) -> int:
        return self.operator.metric_sum("flowpin_api_writes_total")

    def writes_by_kind(self) -> Counter[str]:
        """The operator's own breakdown of its writes (flowpin_api_writes_by_kind_total), by
        `<by> <kind> <verb>`: by = sync (the source sync) or deployments (the controller)."""
        found: Counter[str] = Counter()
        for key, value in self.operator.metrics().items():
            if key.startswith("flowpin_api_writes_by_kind_total{"):
                labels = dict(re.findall(r'(\w+)="([^"]*)"', key))
                found[f"{labels.get('by')} {labels.get('kind')} {labels.get('verb')}"] += value
        return found

    def full_rounds(self) -> int:
        """Sync rounds that listed every object (the others planned from memory)."""
        return self.operator.metric_sum("flowpin_source_full_syncs_total")

    def rounds(self) -> Counter[str]:
        found: Counter[str] = Counter()
        for key, value in self.operator.metrics().items():
            if key.startswith("flowpin_source_syncs_total"):
                match = re.search(r'result="([^"]*)"', key)
                found[match.group(1) if match else ""] += value
        return found

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

    def events(self, namespaces: tuple[str, ...]) -> dict[str, str]:
        """uid -> involvedObject.kind of every Event in `namespaces`."""
        core = client.CoreV1Api(self.api_client)
        found: dict[str, str] = {}
        for namespace in namespaces:
            for event in core.list_namespaced_event(namespace).items:
                uid = str(event.metadata.uid) if event.metadata else ""
                found[uid] = str(event.involved_object.kind)
        return found

    def resource_versions(self, namespaces: tuple[str, ...]) -> dict[str, str]:
        found: dict[str, str] = {}
        for namespace in namespaces:
            for plural in FLOWPIN_PLURALS:
                listed = self.custom.list_namespaced_custom_object(
                    GROUP, VERSION, namespace, plural
                )
                assert isinstance(listed, dict)
                for item in listed["items"]:
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


def ready_of(source: dict[str, Any]) -> dict[str, Any]:
    for condition in (source.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return dict(condition)
    return {}


def writes_text(delta: Counter[tuple[str, str, str]]) -> str:
    """`wfv POST 4000, wfv/status PATCH 4000, …` for flowpin objects and events."""
    parts = []
    for (group, resource, verb), count in sorted(delta.items()):
        if count <= 0 or group not in (GROUP, "", "events.k8s.io"):
            continue
        if group != GROUP and not resource.startswith("events"):
            continue
        plural, _, sub = resource.partition("/")
        name = SHORT.get(plural, plural) + (f"/{sub}" if sub else "")
        parts.append(f"{name} {verb} {count}")
    return ", ".join(parts) or "none"


def source_sync_writes(delta: Counter[tuple[str, str, str]], new_events: Counter[str]) -> int:
    """The writes of the source sync, told apart on the API server from the deployment
    controller's (which shares the operator's counter): its resources, the Events on
    WorkflowSources, and one status patch per WorkflowVersion it created (the deployment
    controller patches wfv/status too, for status.environments)."""
    created = sum(
        count
        for (group, resource, verb), count in delta.items()
        if group == GROUP and resource == "workflowversions" and verb == "POST"
    )
    status = sum(
        count
        for (group, resource, _verb), count in delta.items()
        if group == GROUP and resource == "workflowversions/status"
    )
    return (
        new_events.get("WorkflowSource", 0)
        + min(created, status)
        + sum(
            count
            for (group, resource, _verb), count in delta.items()
            if group == GROUP and resource in SOURCE_SYNC_RESOURCES
        )
    )


def new_events(
    cluster: Cluster, namespaces: tuple[str, ...], before: dict[str, str]
) -> Counter[str]:
    """Events created since `before`, by involved kind."""
    return Counter(kind for uid, kind in cluster.events(namespaces).items() if uid not in before)


def flowpin_total(delta: Counter[tuple[str, str, str]]) -> int:
    return sum(
        count
        for (group, resource, _verb), count in delta.items()
        if group == GROUP or resource.startswith("events")
    )


# --------------------------------------------------------------------------- figures


def settle(cluster: Cluster, quiet: float, timeout: float) -> float | None:
    """Wait until the operator made no API write for `quiet` seconds (the deployment
    controller, too, has caught up); seconds from now to its last write, or None when it was
    still writing after `timeout`."""
    started = time.monotonic()
    last = cluster.writes()
    since = started
    while True:
        time.sleep(0.25)
        now = time.monotonic()
        current = cluster.writes()
        if current != last:
            last, since = current, now
        elif now - since >= quiet:
            return since - started
        if now - started > timeout:
            return None


def round_writes(cluster: Cluster, namespace: str, commit: str) -> int:
    """The writes the operator logs for the sync round of `commit` (`synced ns/name: Synced
    at <commit>, N writes`): the round's own count, plus any other write that landed during it."""
    pattern = re.compile(
        rf"synced {re.escape(namespace)}/bench: \w+ at {commit[:12]}, (\d+) writes"
    )
    found = poll(
        lambda: pattern.findall(cluster.operator.logs()),
        bool,
        timeout=30,
        interval=0.1,
        what=f"the operator's log line for {commit[:12]}",
    )
    return int(found[-1])


def full_sync(
    cluster: Cluster, namespace: str, repo: BenchRepo, timeout: float, settle_timeout: float
) -> None:
    expected = repo.workflows * repo.versions
    writes = cluster.writes()
    rounds = cluster.rounds()
    api = cluster.apiserver_writes()
    cpu = cpu_seconds_of_children()
    events = cluster.events((namespace,))
    tip = str(repo.repo.revparse_single("refs/heads/main").id)
    started = time.monotonic()
    cluster.apply_source(namespace, "bench", repo, interval="1h")
    poll(
        lambda: cluster.source(namespace, "bench"),
        lambda s: (
            ready_of(s).get("reason") == "Succeeded"
            and ready_of(s).get("status") == "True"
            and (s.get("status") or {}).get("counts", {}).get("versions") == expected
        ),
        timeout=timeout,
        interval=0.25,
        what=f"Ready=True Succeeded with {expected} versions",
    )
    elapsed = time.monotonic() - started
    cluster.wait_round(rounds)
    written = round_writes(cluster, namespace, tip)
    api_delta = cluster.apiserver_writes()
    api_delta.subtract(api)
    source = source_sync_writes(api_delta, new_events(cluster, (namespace,), events))
    cpu_used = cpu_text(cpu, cpu_seconds_of_children())
    listed = cluster.kubectl.run("get", "wfv", "-n", namespace, "-o", "name").stdout.split()
    if len(listed) != expected:
        raise RuntimeError(f"kubectl get wfv lists {len(listed)} versions, not {expected}")
    counts = cluster.source(namespace, "bench")["status"]["counts"]
    workload = (
        f"{repo.workflows} workflows x {repo.versions} versions x {STEPS} steps, "
        f"{repo.commits:,} commits, 3 environments; kubectl apply -> Ready=True Succeeded; "
        f"kubectl get wfv lists {len(listed):,}; {counts['deployments']} deployments; "
        f"{cpu_used}"
    )
    report(f"sync_full_{repo.commits}_commits", round(elapsed, 2), "s", workload)
    report(
        f"sync_full_writes_{repo.commits}_commits",
        written,
        "writes",
        "the operator's flowpin_api_writes_total over the sync round (its log line), "
        "deployment-controller writes landing meanwhile included; the source sync's share on "
        f"the API server: {source}; every write on the API server over the same span: "
        f"{writes_text(api_delta)} (wfsrc PATCH/POST: kubectl apply and kopf)",
    )
    log("waiting for the operator to settle after the full sync")
    settling = time.monotonic()
    quiet = settle(cluster, 10, settle_timeout)
    total = cluster.writes() - writes
    api_delta = cluster.apiserver_writes()
    api_delta.subtract(api)
    if quiet is None:
        report(
            f"sync_full_settled_{repo.commits}_commits",
            round(time.monotonic() - started, 1),
            "s",
            f"NOT settled: the operator was still writing {settle_timeout:.0f} s after Ready; "
            f"{total} writes so far: {writes_text(api_delta)}",
        )
        return
    report(
        f"sync_full_settled_{repo.commits}_commits",
        round(settling - started + quiet, 1),
        "s",
        f"kubectl apply -> the operator's last write (then 10 s without one): the deployment "
        f"controller has caught up; {total} writes in all: {writes_text(api_delta)}",
    )


@dataclass
class PushResult:
    seconds: float
    round_writes: int  # the sync round's count (operator log)
    source_writes: int  # the source sync's share, from the API server (source_sync_writes)
    writes: int  # every operator write until it was quiet again
    api: Counter[tuple[str, str, str]]
    settled: bool
    by_kind: Counter[str] = field(default_factory=Counter)  # the operator's own breakdown
    full: bool = False  # the round listed every object


def push_and_wait(
    cluster: Cluster, namespace: str, repo: BenchRepo, *, artifact: bool, settle_timeout: float
) -> PushResult:
    """Commit a bump, push, and wait until its WorkflowVersion exists (and, with `artifact`,
    the source reports the new commit); then for the round's writes and, when
    `settle_timeout` allows, until the operator is quiet again (everything the commit
    caused, the deployment controller's reaction included)."""
    commit, version = repo.bump()
    events = cluster.events((namespace,))
    writes = cluster.writes()
    rounds = cluster.rounds()
    api = cluster.apiserver_writes()
    by_kind = cluster.writes_by_kind()
    full_rounds = cluster.full_rounds()

    def visible() -> bool:
        if not cluster.exists(namespace, "workflowversions", version):
            return False
        if not artifact:
            return True
        status = cluster.source(namespace, "bench").get("status") or {}
        return bool((status.get("artifact") or {}).get("commit") == commit)

    started = time.monotonic()
    cluster.push(repo)
    poll(visible, bool, timeout=120, interval=POLL_FAST, what=f"{version} after the push")
    elapsed = time.monotonic() - started
    cluster.wait_round(rounds)
    own = round_writes(cluster, namespace, commit)
    settled = settle_timeout > 0 and settle(cluster, QUIET, settle_timeout) is not None
    api_delta = cluster.apiserver_writes()
    api_delta.subtract(api)
    source = source_sync_writes(api_delta, new_events(cluster, (namespace,), events))
    by_kind_delta = cluster.writes_by_kind()
    by_kind_delta.subtract(by_kind)
    return PushResult(
        elapsed,
        own,
        source,
        cluster.writes() - writes,
        api_delta,
        settled,
        +by_kind_delta,
        cluster.full_rounds() > full_rounds,
    )


def pushes(
    cluster: Cluster, namespace: str, repo: BenchRepo, count: int, *, artifact: bool
) -> list[PushResult]:
    """`count` pushes one at a time. Each waits for the operator to be quiet again; once it
    is not within 15 s (still busy with earlier work), the rest do not wait."""
    results: list[PushResult] = []
    settle_timeout = 15.0
    for _ in range(count):
        result = push_and_wait(
            cluster, namespace, repo, artifact=artifact, settle_timeout=settle_timeout
        )
        if not result.settled:
            settle_timeout = 0.0
        results.append(result)
    return results


def incremental(cluster: Cluster, targets: list[tuple[str, BenchRepo]], repetitions: int) -> None:
    measured = []
    for namespace, repo in targets:
        log(f"incremental syncs on {repo.label}")
        history = repo.commits
        results = pushes(cluster, namespace, repo, repetitions, artifact=True)
        measured.append((repo, history, results))
    for repo, history, results in measured:
        seconds = [r.seconds for r in results]
        full = sum(r.full for r in results)
        workload = (
            f"{repo.workflows} x {repo.versions} repository of {history:,} commits; one "
            f"commit bumping one workflow; signed push -> new WorkflowVersion exists and "
            f"status.artifact.commit is the commit; median of {len(results)} "
            f"({', '.join(f'{s:.2f}' for s in seconds)}); {full} of them full (listing "
            f"every object: every tenth round), the others planned from memory; target < 1 s"
        )
        report(
            f"sync_incremental_{repo.history}_commits",
            round(statistics.median(seconds), 3),
            "s",
            workload,
        )
    for repo, history, results in measured:
        own = [r.round_writes for r in results]
        workload = (
            f"{history:,} commits; the operator's flowpin_api_writes_total over the sync round "
            f"(its log line), median of {len(results)} ({', '.join(map(str, own))}); writes "
            "of the deployment controller landing during the round are in it"
        )
        report(
            f"sync_incremental_writes_{repo.history}_commits",
            int(statistics.median(own)),
            "writes",
            workload,
        )
    for repo, history, results in measured:
        source = [r.source_writes for r in results]
        settled = [r for r in results if r.settled]
        if settled:
            totals = (
                f"all operator writes until {QUIET:.0f} s without one (the deployment "
                f"controller's reaction included): {', '.join(str(r.writes) for r in settled)}"
            )
        else:
            totals = "the operator never went quiet (the deployment controller was catching up)"
        workload = (
            f"{history:,} commits; the source sync's share on the API server, median of "
            f"{len(results)} ({', '.join(map(str, source))}); API server, last push, every "
            f"write: {writes_text(results[-1].api)}; {totals}; the operator's breakdown, last "
            f"push: {', '.join(f'{k} {v}' for k, v in sorted(results[-1].by_kind.items()))}"
        )
        report(
            f"sync_incremental_source_writes_{repo.history}_commits",
            int(statistics.median(source)),
            "writes",
            workload,
        )


def push_latency(cluster: Cluster, namespace: str, repo: BenchRepo, count: int) -> None:
    log(f"{count} pushes on {repo.label}")
    results = pushes(cluster, namespace, repo, count, artifact=False)
    seconds = [r.seconds for r in results]
    quiet = sum(r.settled for r in results)
    workload = (
        f"{count} pushes one at a time ({quiet} with the operator quiet before the next), each "
        f"one commit bumping one workflow on the {repo.history:,}-commit repository; signed "
        f"GitHub push -> `GET wfv` (kubernetes client, every {POLL_FAST * 1000:.0f} ms) finds it"
    )
    report("push_to_version_visible_p50", round(percentile(seconds, 0.5), 3), "s", workload)
    report("push_to_version_visible_p95", round(percentile(seconds, 0.95), 3), "s", workload)
    report("push_to_version_visible_max", round(max(seconds), 3), "s", workload)


class LeaseWatch(threading.Thread):
    """Counts modifications of every Lease (leader-election renewals) while it runs."""

    def __init__(self, api_client: client.ApiClient, timeout: int) -> None:
        super().__init__(daemon=True)
        self.api = client.CoordinationV1Api(api_client)
        self.timeout = timeout
        self.counts: Counter[str] = Counter()
        self._watch = watch.Watch()  # type: ignore[no-untyped-call]
        self._stopped = threading.Event()
        self.listening = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            listed = self.api.list_lease_for_all_namespaces()
            assert listed.metadata is not None
            self.listening.set()
            for event in self._watch.stream(  # type: ignore[no-untyped-call]
                self.api.list_lease_for_all_namespaces,
                resource_version=listed.metadata.resource_version,
                timeout_seconds=self.timeout,
            ):
                if self._stopped.is_set():
                    break
                obj = event["object"]
                self.counts[f"{obj.metadata.namespace}/{obj.metadata.name}"] += 1
        except BaseException as error:  # reported by the caller
            if not self._stopped.is_set():  # stopping ends the stream with an error
                self.error = error

    def stop(self) -> None:
        self._stopped.set()
        self._watch.stop()  # type: ignore[no-untyped-call]


def idle(
    cluster: Cluster,
    namespace: str,
    repo: BenchRepo,
    namespaces: tuple[str, ...],
    seconds: float,
    interval: str,
    settle_timeout: float,
) -> None:
    log(f"idle: interval {interval}, observing {seconds:.0f} s")
    cluster.kubectl.run(
        "patch", "wfsrc", "bench", "-n", namespace, "--type=merge",
        "-p", json.dumps({"spec": {"interval": interval}}),
    )  # fmt: skip
    generation = cluster.source(namespace, "bench")["metadata"]["generation"]
    poll(
        lambda: cluster.source(namespace, "bench").get("status", {}),
        lambda s: s.get("observedGeneration") == generation,
        timeout=120,
        what="the interval change to be observed",
    )
    # Two more rounds, so that kopf's bookkeeping of the spec change is behind us too.
    for _ in range(2):
        cluster.wait_round(cluster.rounds(), timeout=120)
    settled = settle(cluster, 10, settle_timeout) is not None
    state = "operator quiet for 10 s before" if settled else "operator NOT quiet before"

    leases = LeaseWatch(cluster.api_client, int(seconds) + 120)
    leases.start()
    if not leases.listening.wait(timeout=30):
        raise RuntimeError(f"the Lease watch did not start: {leases.error}")
    versions_before = cluster.resource_versions(namespaces)
    events_before = cluster.events(namespaces)
    writes = cluster.writes()
    rounds = cluster.rounds()
    api = cluster.apiserver_writes()
    time.sleep(seconds)  # the observation window itself
    written = cluster.writes() - writes
    rounds_delta = cluster.rounds()
    rounds_delta.subtract(rounds)
    api_delta = cluster.apiserver_writes()
    api_delta.subtract(api)
    versions_after = cluster.resource_versions(namespaces)
    events_delta = new_events(cluster, namespaces, events_before)
    changed = sorted(k for k, v in versions_before.items() if versions_after.get(k) != v)
    changed += sorted(set(versions_after) - set(versions_before))
    leases.stop()
    changed_kinds = Counter(SHORT.get(key.split("/")[1], key) for key in changed)
    examples = f" ({', '.join(f'{k} {v}' for k, v in sorted(changed_kinds.items()))})"
    source_writes = source_sync_writes(api_delta, events_delta)
    leases.join(timeout=10)
    minutes = f"{seconds / 60:g}min" if seconds >= 60 else f"{seconds:.0f}s"
    by_result = ", ".join(f"{k} {v}" for k, v in sorted(rounds_delta.items()) if v)
    report(
        f"sync_idle_writes_{minutes}",
        written,
        "writes",
        f"operator's flowpin_api_writes_total over {seconds:.0f} s, {repo.label} synced, "
        f"interval {interval}, {rounds_delta.total()} sync rounds observed ({by_result}); "
        f"{state}",
    )
    report(
        f"sync_idle_source_sync_writes_{minutes}",
        source_writes,
        "writes",
        "the source sync's share, counted by the API server: wfv create/patch (+ one wfv/status "
        "patch per version created), wfenv, wfd spec, wfsrc/status, Events on WorkflowSources; "
        "new Events in the window by involved kind: "
        f"{dict(sorted(events_delta.items())) or 'none'}",
    )
    report(
        f"sync_idle_apiserver_flowpin_writes_{minutes}",
        flowpin_total(api_delta),
        "writes",
        f"API server's apiserver_request_total, write verbs on flowpin.dev objects and Events, "
        f"same window: {writes_text(api_delta)}; resourceVersions of {len(versions_before):,} "
        f"flowpin objects: {len(changed)} changed" + (examples if changed else ""),
    )
    operator_lease = f"flowpin-system/{cluster.operator.lease_name}"
    lease_text = ", ".join(f"{k} {v}" for k, v in sorted(leases.counts.items()))
    if leases.error is not None:
        lease_text = f"watch failed: {leases.error}"
    report(
        f"sync_idle_lease_renewals_{minutes}",
        leases.counts.get(operator_lease, 0),
        "writes",
        f"leader-election renewals of the operator's Lease {operator_lease} (not in "
        f"flowpin_api_writes_total); every Lease update seen by a watch: {lease_text}",
    )


# --------------------------------------------------------------------------- main


@dataclass(frozen=True)
class Plan:
    small: tuple[int, int]  # workflows, versions
    big: tuple[int, int]
    repetitions: int
    pushes: int
    idle_seconds: float
    idle_interval: str
    full_timeout: float
    settle_small: float  # how long to wait for the operator to go quiet after a full sync
    settle_big: float
    settle_idle: float


FULL = Plan((20, 20), (200, 20), 5, 20, 300, "10s", 1800, 240, 60, 30)
QUICK = Plan((10, 4), (20, 5), 3, 10, 30, "3s", 300, 120, 60, 30)


def run(plan: Plan, workdir: Path) -> None:
    log("building repositories")
    started = time.monotonic()
    small = build_repository(workdir / "small.git", *plan.small)
    big = build_repository(workdir / "big.git", *plan.big)
    log(f"built {small.label} and {big.label} in {time.monotonic() - started:.1f} s")

    plane = ControlPlane()
    operator: OperatorProcess | None = None
    try:
        log("starting the control plane")
        plane.start()
        kubectl = Kubectl(env=plane.env())
        install_flowpin(kubectl)
        suffix = uuid.uuid4().hex[:6]
        ns_small = f"bench-small-{suffix}"
        ns_big = f"bench-big-{suffix}"
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
        # The push latency on a settled operator first; then the big repository, and the
        # incremental syncs of both side by side under the same conditions.
        log(f"full sync of {small.label}")
        full_sync(cluster, ns_small, small, plan.full_timeout, plan.settle_small)
        push_latency(cluster, ns_small, small, plan.pushes)
        log(f"full sync of {big.label}")
        full_sync(cluster, ns_big, big, plan.full_timeout, plan.settle_big)
        incremental(cluster, [(ns_small, small), (ns_big, big)], plan.repetitions)
        idle(
            cluster,
            ns_big,
            big,
            namespaces,
            plan.idle_seconds,
            plan.idle_interval,
            plan.settle_idle,
        )
        cluster.api_client.close()  # type: ignore[no-untyped-call]
    except BaseException:
        if operator is not None:
            print(operator.logs()[-4000:], file=sys.stderr)
        raise
    finally:
        if operator is not None:
            operator.stop()
        plane.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small repositories, 30 s idle")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="flowpin-bench-sync-"))
    try:
        run(plan, workdir)
    finally:
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    report(
        "sync_bench_wall_time",
        round(time.monotonic() - started, 1),
        "s",
        f"{'--quick' if args.quick else 'default'} run, {os.cpu_count()} cores, "
        f"{datetime.date.today().isoformat()}",
    )


if __name__ == "__main__":
    main()
