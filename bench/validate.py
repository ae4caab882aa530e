"""`flowpin validate` figures.

    python bench/validate.py [--workflows N] [--quick] [--only throughput|history|adversarial]

1. Throughput: a generated repository of N workflows (default 1,000) x 50 steps plus three
   environments that pin all of them. `flowpin validate <dir>` (every schema and semantic
   check) and check-jsonschema (from PyPI, the schema only) run as real subprocesses over the
   same workflow files, best of 3 each, interpreter start included. Target: flowpin at least
   as fast as check-jsonschema.
2. `validate --against HEAD` on real git repositories of 1,000 and 10,000 commits (written
   with pygit2 straight into the object database), with one change in the working tree: a
   workflow bumped X.Y.Z → X.Y+1.0 with a new step, and the dev pin moved to it. Target: the
   cost follows the size of the change, not the length of history (ratio near 1.0).

3. Adversarial inputs (issue 13): nesting 100,000 deep, 10,000 aliases, a 1 MiB line (to
   `flowpin validate`), an n8n JSON with one 20 MiB string (over the 16 MiB input limit) and
   one of 15 MiB (parsed and converted whole), and a 1.2 MB tar.gz whose one pax
   header claims 1.2 GiB (to `flowpin import --dry-run`). Each runs as a subprocess; its wall
   time (interpreter start included) and peak resident memory are printed, then the worst of
   each. Targets: < 1 s and < 256 MiB each. Each must also end in its documented exit code
   with a message and no traceback, or the figure is not printed.

The first two parts first prove that the tools did the real work: the valid input gives 0 errors,
and a broken input fails (a schema error for both tools; a missing version bump for
`--against`).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pygit2
import yaml
from common import report

REPO_ROOT = Path(__file__).resolve().parents[1]
WORKFLOW_SCHEMA = REPO_ROOT / "controller" / "api" / "schemas" / "workflow.yaml"
BIN = Path(sys.executable).parent
RUNS = 3
ENVIRONMENTS = ("dev", "staging", "prod")
AUTHOR = pygit2.Signature("flowpin bench", "bench@flowpin.dev", 1_700_000_000, 0)
_DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
# Sentinels replaced per revision in the history repositories (see `WorkflowTemplate`).
_VERSION = "0.0.0-benchversion"
_REVISION = "benchrevision"


# --------------------------------------------------------------------------- generated content


def _step_ids(count: int) -> list[str]:
    slots = (
        "fetch-contact",
        "check-contact",
        "remember",
        "notify",
        "wait",
        "sync-crm",
        "audit",
        "score",
        "tag",
        "cool-down",
    )
    return [f"{slots[i % len(slots)]}-{i // len(slots)}" for i in range(count)]


def _step(ids: list[str], i: int, seed: int) -> dict[str, Any]:
    """Step `i` of a chain: ten kinds of realistic step in turn; conditions branch forward."""
    sid = ids[i]
    nxt = ids[i + 1] if i + 1 < len(ids) else None
    after = ids[i + 2] if i + 2 < len(ids) else "end"
    block = i // 10
    slot = i % 10
    base = f"https://api{seed % 7}.example/v{1 + block % 3}"
    step: dict[str, Any] = {"id": sid}
    if slot == 0:
        step |= {
            "type": "http",
            "http": {
                "method": "GET",
                "url": f"{base}/contacts?email=${{ inputs.email }}&limit={10 + i}",
                "headers": {
                    "accept": "application/json",
                    "authorization": "Bearer ${ inputs.token }",
                    "x-request-id": "${ inputs.requestId + '-" + sid + "' }",
                },
                "timeout": "10s",
                "expectStatus": [200, 404],
            },
            "retry": {"limit": 3, "backoff": "exponential", "initialDelay": "1s", "maxDelay": "1m"},
            "onError": "continue",
        }
    elif slot == 1:
        fetched = ids[i - 1]
        step |= {
            "type": "condition",
            "condition": {
                "when": f'steps["{fetched}"].output.status == 200 '
                '&& inputs.plan in ["pro", "team"]',
                "then": nxt or "end",
                "else": after,
            },
        }
        return step
    elif slot == 2:
        fetched = ids[i - 2]
        step |= {
            "type": "set",
            "set": {
                f"contact_{block}": f'steps["{fetched}"].output.body.items[0].id',
                f"seen_{block}": f'size(steps["{fetched}"].output.body.items) > 0',
            },
        }
    elif slot == 3:
        step |= {
            "type": "http",
            "http": {
                "method": "POST",
                "url": f"https://mail{seed % 3}.example/send",
                "headers": {"content-type": "application/json", "x-workflow": f"wf-{seed}"},
                "body": {
                    "to": "${ inputs.email }",
                    "template": f"welcome-{block}",
                    "data": {
                        "contact": "${ vars.contact_" + str(block) + " }",
                        "plan": "${ inputs.plan }",
                        "tags": ["lead", f"stage-{block}"],
                    },
                },
                "timeout": "30s",
                "expectStatus": ["2xx"],
            },
            "retry": {"limit": 5, "backoff": "exponential", "initialDelay": "2s", "jitter": 0.2},
            "timeout": "45s",
        }
    elif slot == 4:
        step |= {"type": "wait", "wait": {"duration": f"{1 + (seed + block) % 47}h"}}
    elif slot == 5:
        step |= {
            "type": "http",
            "http": {
                "method": "PUT",
                "url": f"{base}/crm/contacts/${{ vars.contact_{block} }}",
                "headers": {"authorization": "Bearer ${ inputs.token }"},
                "body": {"stage": f"nurture-{block}", "email": "${ inputs.email }"},
            },
            "retry": {"limit": 2, "backoff": "fixed", "initialDelay": "500ms"},
        }
    elif slot == 6:
        step |= {
            "type": "log",
            "log": {"message": f"stage {block} done for ${{ inputs.email }} (${{ inputs.plan }})"},
        }
    elif slot == 7:
        synced = ids[i - 2]
        step |= {
            "type": "condition",
            "condition": {
                "when": f'has(steps["{synced}"].output.body.score) && '
                f'steps["{synced}"].output.body.score > {40 + block}',
                "then": nxt or "end",
                "else": after,
            },
        }
        return step
    elif slot == 8:
        step |= {
            "type": "http",
            "http": {
                "method": "PATCH",
                "url": f"{base}/crm/contacts/${{ vars.contact_{block} }}/tags",
                "body": {"add": ["hot-lead"], "by": "${ 'flowpin/' + inputs.plan }"},
            },
            "onError": "continue",
        }
    else:
        step |= {"type": "wait", "wait": {"duration": f"{15 + block}m"}}
    if nxt is not None:
        step["next"] = nxt
    return step


def workflow_document(name: str, version: str, steps: int, seed: int) -> dict[str, Any]:
    ids = _step_ids(steps)
    return {
        "apiVersion": "flowpin.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name, "labels": {"team": f"team-{seed % 5}"}},
        "spec": {
            "version": version,
            "description": f"Nurture a lead through {steps} steps (generated, seed {seed}).",
            "inputs": {
                "type": "object",
                "required": ["email", "token", "requestId"],
                "additionalProperties": False,
                "properties": {
                    "email": {"type": "string", "format": "email", "maxLength": 254},
                    "token": {"type": "string", "minLength": 16},
                    "requestId": {"type": "string", "pattern": "^[a-z0-9-]+$"},
                    "plan": {"type": "string", "enum": ["free", "pro", "team"], "default": "free"},
                    "region": {"type": ["string", "null"]},
                },
            },
            "settings": {"timeout": "30d"},
            "triggers": [
                {"id": "signup", "type": "webhook", "secretRef": {"name": f"{name}-webhook"}},
                {
                    "id": "nightly",
                    "type": "schedule",
                    "schedule": f"{seed % 60} 9 * * 1-5",
                    "timezone": "Europe/Berlin",
                    "startingDeadline": "10m",
                    "inputs": {"email": "batch@example.com", "token": "x" * 16, "requestId": "n"},
                },
            ],
            "steps": [_step(ids, i, seed) for i in range(steps)],
        },
    }


def dump(document: dict[str, Any]) -> str:
    header = "# yaml-language-server: $schema=https://flowpin.dev/schemas/v1alpha1/workflow.json\n"
    body = yaml.dump(document, Dumper=_DUMPER, sort_keys=False, width=100, allow_unicode=True)
    return header + body


def environment_text(name: str, pins: dict[str, str]) -> str:
    promotion = {
        "dev": "",
        "staging": "  promotion: {from: dev}\n",
        "prod": (
            "  promotion:\n    from: staging\n    soak: 1h\n    approval: required\n"
            '    windows: [{kind: allow, schedule: "0 9 * * 1-5", duration: 8h, timezone: UTC}]\n'
        ),
    }[name]
    rollout = (
        "  rollout:\n    strategy: canary\n"
        "    steps: [{weight: 10, pause: 10m}, {weight: 50, pause: 10m}]\n"
        "    analysis: {minRuns: 20, successRate: 0.95}\n"
        if name == "prod"
        else "  rollout: {strategy: immediate}\n"
    )
    lines = [
        "apiVersion: flowpin.dev/v1alpha1",
        "kind: Environment",
        f"metadata: {{name: {name}}}",
        "spec:",
    ]
    body = "\n".join(lines) + "\n" + promotion + rollout
    body += f"  inflight: {'cancel' if name == 'dev' else 'pin'}\n  pins:\n"
    return body + "".join(f"    {workflow}: {pin}\n" for workflow, pin in sorted(pins.items()))


def workflow_name(index: int) -> str:
    return f"wf-{index:04d}"


def write_repository(root: Path, workflows: int, steps: int) -> list[Path]:
    """workflows/wf-NNNN.yaml x `workflows` and environments/{dev,staging,prod}.yaml."""
    (root / "workflows").mkdir(parents=True)
    (root / "environments").mkdir()
    files = []
    pins = {}
    for index in range(workflows):
        name = workflow_name(index)
        version = f"1.{index % 7}.{index % 3}"
        path = root / "workflows" / f"{name}.yaml"
        path.write_text(dump(workflow_document(name, version, steps, index)))
        files.append(path)
        pins[name] = version
    for environment in ENVIRONMENTS:
        text = environment_text(environment, pins)
        (root / "environments" / f"{environment}.yaml").write_text(text)
    return files


# --------------------------------------------------------------------------- subprocesses


@dataclass
class Run:
    seconds: float
    code: int
    stdout: str
    stderr: str


def tool(name: str) -> str:
    candidate = BIN / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if found is None:
        sys.exit(f"bench/validate.py: {name} is not installed (looked in {BIN} and on PATH)")
    return found


def run(argv: Sequence[str], cwd: Path) -> Run:
    started = time.perf_counter()
    done = subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    return Run(elapsed, done.returncode, done.stdout, done.stderr)


def expect(condition: bool, message: str, result: Run | None = None) -> None:
    """Fail loudly: a figure from a run that did not do the real work is worthless."""
    if condition:
        return
    detail = ""
    if result is not None:
        detail = f"\nexit status {result.code}\n--- stdout\n{result.stdout[-3000:]}"
        detail += f"\n--- stderr\n{result.stderr[-3000:]}"
    raise SystemExit(f"bench/validate.py: {message}{detail}")


Check = Callable[[Run], None]


def best_of(commands: Sequence[tuple[Sequence[str], Check]], cwd: Path) -> list[float]:
    """Best wall-clock time of each command over RUNS rounds. The commands take turns, so
    that a burst of load from elsewhere on the machine hits them alike; every run's output
    is checked, not only the first."""
    times: list[list[float]] = [[] for _ in commands]
    for _ in range(RUNS):
        for index, (argv, check) in enumerate(commands):
            result = run(argv, cwd)
            check(result)
            times[index].append(result.seconds)
    return [min(each) for each in times]


def summary_line(manifests: int, errors: int = 0, warnings: int = 0) -> str:
    """The last line `flowpin validate` writes to stderr in text format."""

    def plural(count: int, word: str) -> str:
        return f"{count} {word}{'' if count == 1 else 's'}"

    return (
        f"{plural(manifests, 'manifest')} checked: "
        f"{plural(errors, 'error')}, {plural(warnings, 'warning')}"
    )


# --------------------------------------------------------------------------- 1. throughput


def check_jsonschema_version(checker: str, cwd: Path) -> str:
    result = run([checker, "--version"], cwd)
    expect(result.code == 0, "check-jsonschema --version failed", result)
    return result.stdout.strip().rsplit(" ", 1)[-1]


def throughput(workflows: int, steps: int) -> None:
    flowpin, checker = tool("flowpin"), tool("check-jsonschema")
    with tempfile.TemporaryDirectory(prefix="flowpin-bench-validate-") as temp:
        work = Path(temp)
        root = work / "repo"
        files = write_repository(root, workflows, steps)
        manifests = workflows + len(ENVIRONMENTS)
        size = sum(f.stat().st_size for f in files)
        relative = [f.relative_to(work).as_posix() for f in files]
        version = check_jsonschema_version(checker, work)

        # A broken copy of one file: both tools must reject it, or they measure a no-op.
        # (Alone in its own repository, so that proving it costs seconds, not minutes.)
        victim = files[len(files) // 2]
        broken = work / "broken" / "workflows" / victim.name
        broken.parent.mkdir(parents=True)
        text = victim.read_text()
        expect("type: wait" in text, f"{victim.name} has no wait step to break")
        broken.write_text(text.replace("type: wait", "type: sleep", 1))
        failed = run([flowpin, "validate", "broken"], work)
        expect(
            failed.code == 1
            and f"{victim.name}:" in failed.stdout
            and "error[schema]" in failed.stdout,
            "flowpin validate accepted a file with an unknown step type",
            failed,
        )
        rejected = run([checker, "--schemafile", str(WORKFLOW_SCHEMA), str(broken)], work)
        expect(
            rejected.code == 1 and victim.name in rejected.stdout + rejected.stderr,
            "check-jsonschema accepted a file with an unknown step type",
            rejected,
        )

        def flowpin_clean(result: Run) -> None:
            expect(
                result.code == 0
                and not result.stdout.strip()
                and result.stderr.strip().endswith(summary_line(manifests)),
                "flowpin validate does not pass the generated repository cleanly",
                result,
            )

        def check_jsonschema_clean(result: Run) -> None:
            listed = [line.strip() for line in result.stdout.splitlines()[2:]]
            expect(
                result.code == 0
                and result.stdout.startswith("ok -- validation done")
                and sorted(listed) == sorted(relative),
                f"check-jsonschema did not validate all {workflows} files successfully",
                result,
            )

        flowpin_seconds, check_seconds = best_of(
            [
                ([flowpin, "validate", "repo"], flowpin_clean),
                (
                    [checker, "-vv", "--schemafile", str(WORKFLOW_SCHEMA), *relative],
                    check_jsonschema_clean,
                ),
            ],
            work,
        )

    common = f"best of {RUNS}, wall clock incl. interpreter start, {os.cpu_count()} cores"
    report(
        "validate_flowpin_files_per_s",
        round(workflows / flowpin_seconds, 1),
        "files/s",
        f"{workflows:,} workflow files x {steps} steps, {size / 2**20:.1f} MiB, every check; "
        f"{len(ENVIRONMENTS)} environments pinning all of them also checked, not counted; "
        f"{flowpin_seconds:.1f} s; {common}",
    )
    report(
        "validate_check_jsonschema_files_per_s",
        round(workflows / check_seconds, 1),
        "files/s",
        f"check-jsonschema {version}, same {workflows:,} files against "
        f"controller/api/schemas/workflow.yaml, schema only; {check_seconds:.1f} s; {common}",
    )
    report(
        "validate_flowpin_vs_check_jsonschema",
        round(check_seconds / flowpin_seconds, 2),
        "x",
        ">1 means flowpin is faster; flowpin runs every semantic check, "
        "check-jsonschema the schema only",
    )


# --------------------------------------------------------------------------- 2. history


def revision_version(revision: int) -> str:
    """Version of a workflow after `revision` bumps: patches, and a minor every tenth."""
    return f"1.{revision // 10}.{revision % 10}"


class WorkflowTemplate:
    """A workflow's YAML dumped once with sentinels, so that each of thousands of revisions
    costs two string replacements instead of a YAML dump."""

    def __init__(self, name: str, steps: int, seed: int) -> None:
        document = workflow_document(name, _VERSION, steps, seed)
        first = document["spec"]["steps"][0]
        first["http"]["headers"]["x-revision"] = _REVISION
        first["http"]["timeout"] = f"{_REVISION}s"
        self.text = dump(document)
        expect(self.text.count(_VERSION) == 1, f"{name}: the version sentinel must appear once")

    def render(self, revision: int) -> bytes:
        # The revision changes a header and the request timeout (1s … 60s): a fix.
        text = self.text.replace(f"{_REVISION}s", f"{1 + revision % 60}s")
        text = text.replace(_REVISION, f"r{revision}").replace(_VERSION, revision_version(revision))
        return text.encode()


def _pins(revisions: list[int], back: int) -> dict[str, str]:
    return {workflow_name(w): revision_version(max(0, r - back)) for w, r in enumerate(revisions)}


@dataclass
class Change:
    path: Path  # the changed workflow file in the working tree
    base_version: str  # its version at HEAD
    version: str  # its version in the working tree


def build_history(root: Path, workflows: int, commits: int, steps: int) -> Change:
    """A repository on `main` with `commits` commits on one first-parent chain: the first adds
    every workflow at 1.0.0 and the environments; each later one bumps one workflow (in
    turn) and moves dev to it, staging to its previous version, prod to the one before."""
    repo = pygit2.init_repository(str(root), initial_head="main")
    templates = [WorkflowTemplate(workflow_name(w), steps, w) for w in range(workflows)]
    revisions = [0] * workflows
    blob_mode = pygit2.enums.FileMode.BLOB

    workflow_tree = repo.TreeBuilder()
    for w, template in enumerate(templates):
        workflow_tree.insert(
            f"{workflow_name(w)}.yaml", repo.create_blob(template.render(0)), blob_mode
        )

    def environments_tree() -> pygit2.Oid:
        builder = repo.TreeBuilder()
        for back, environment in enumerate(ENVIRONMENTS):
            text = environment_text(environment, _pins(revisions, back))
            builder.insert(f"{environment}.yaml", repo.create_blob(text.encode()), blob_mode)
        return builder.write()

    def root_tree(workflows_id: pygit2.Oid) -> pygit2.Oid:
        builder = repo.TreeBuilder()
        builder.insert("environments", environments_tree(), pygit2.enums.FileMode.TREE)
        builder.insert("workflows", workflows_id, pygit2.enums.FileMode.TREE)
        return builder.write()

    workflows_id = workflow_tree.write()
    parents: list[pygit2.Oid] = []
    for number in range(commits):
        if number:
            w = (number - 1) % workflows
            revisions[w] += 1
            blob = repo.create_blob(templates[w].render(revisions[w]))
            builder = repo.TreeBuilder(workflows_id)
            builder.insert(f"{workflow_name(w)}.yaml", blob, blob_mode)
            workflows_id = builder.write()
            message = f"{workflow_name(w)}: {revision_version(revisions[w])}"
        else:
            message = "Add the workflows and environments"
        signature = pygit2.Signature(AUTHOR.name, AUTHOR.email, AUTHOR.time + number * 60, 0)
        tree = root_tree(workflows_id)
        commit = repo.create_commit(None, signature, signature, message, tree, parents)
        parents = [commit]
    repo.references.create("refs/heads/main", parents[0], force=True)
    repo.set_head("refs/heads/main")
    repo.reset(parents[0], pygit2.enums.ResetMode.HARD)  # index and working tree
    expect(not repo.status(), "the checked-out working tree differs from HEAD")

    # The change under review: one workflow gets a new step (a feature) and a minor bump,
    # and dev moves to it.
    chosen = workflows // 2
    name = workflow_name(chosen)
    old = revision_version(revisions[chosen])
    major, minor, _ = (int(part) for part in old.split("."))
    new = f"{major}.{minor + 1}.0"
    document = yaml.safe_load(templates[chosen].render(revisions[chosen]))
    document["spec"]["version"] = new
    last = document["spec"]["steps"][-1]
    last["next"] = "farewell"
    document["spec"]["steps"].append(
        {"id": "farewell", "type": "log", "log": {"message": "nurture done for ${ inputs.email }"}}
    )
    (root / "workflows" / f"{name}.yaml").write_text(dump(document))
    dev = root / "environments" / "dev.yaml"
    pin = f"    {name}: {old}\n"
    text = dev.read_text()
    expect(pin in text, f"dev does not pin {name} {old}")
    dev.write_text(text.replace(pin, f"    {name}: {new}\n"))
    return Change(root / "workflows" / f"{name}.yaml", old, new)


def history(commit_counts: Sequence[int], workflows: int, steps: int) -> None:
    flowpin = tool("flowpin")
    figures: dict[int, float] = {}
    manifests = workflows + len(ENVIRONMENTS)
    with tempfile.TemporaryDirectory(prefix="flowpin-bench-history-") as temp:
        for commits in commit_counts:
            root = Path(temp) / f"history-{commits}"
            started = time.perf_counter()
            change = build_history(root, workflows, commits, steps)
            built = time.perf_counter() - started
            note(f"built {commits:,} commits in {built:.1f} s")
            argv = [flowpin, "validate", "--against", "HEAD", "."]

            # The same change without the bump must be refused, so the check is real …
            text = change.path.read_text()
            unbumped = text.replace(f"version: {change.version}", f"version: {change.base_version}")
            expect(unbumped != text, "could not undo the version bump")
            change.path.write_text(unbumped)
            refused = run(argv, root)
            expect(
                refused.code == 1
                and f"{change.path.name}:" in refused.stdout
                and "error[version-not-bumped]" in refused.stdout,
                f"an unbumped change was not refused ({commits:,} commits)",
                refused,
            )
            change.path.write_text(text)

            # … and the bumped one passes with no finding at all, in every timed run.
            def clean(result: Run, commits: int = commits) -> None:
                expect(
                    result.code == 0
                    and not result.stdout.strip()
                    and result.stderr.strip().endswith(summary_line(manifests)),
                    f"the bumped change is not clean ({commits:,} commits)",
                    result,
                )

            [figures[commits]] = best_of([(argv, clean)], root)
            shutil.rmtree(root)

    small, large = min(figures), max(figures)
    for commits, seconds in sorted(figures.items()):
        workload = (
            f"{commits:,} commits, {workflows} workflows x {steps} steps + "
            f"{len(ENVIRONMENTS)} environments; change: one workflow minor-bumped with a new "
            f"step, dev pin moved; subprocess, best of {RUNS}"
        )
        report(f"validate_against_{commits}_commits", round(seconds, 2), "s", workload)
    report(
        f"validate_against_ratio_{large}_vs_{small}",
        round(figures[large] / figures[small], 2),
        "x",
        "1.0 means independent of history length",
    )


# --------------------------------------------------------------------------- adversarial inputs

_WORKFLOW_HEAD = (
    "apiVersion: flowpin.dev/v1alpha1\nkind: Workflow\nmetadata: {name: evil}\nspec:\n"
    "  version: 1.0.0\n  steps: [{id: start, type: noop}]\n"
)


def _deep(root: Path) -> list[str]:
    path = root / "tree" / "workflows" / "deep.yaml"
    path.write_text("[" * 100_000)
    return ["validate", str(path)]


def _aliases(root: Path) -> list[str]:
    path = root / "tree" / "workflows" / "aliases.yaml"
    path.write_text(
        _WORKFLOW_HEAD + "  x: &a [1, 2, 3]\n  y: [" + ", ".join(["*a"] * 10_000) + "]\n"
    )
    return ["validate", str(path)]


def _long_line(root: Path) -> list[str]:
    path = root / "tree" / "workflows" / "long.yaml"
    head = _WORKFLOW_HEAD + "  description: "
    path.write_text(head + "x" * (1024 * 1024 - len(head) - 2) + "\n")
    return ["validate", str(path)]


def _n8n_string(root: Path, mib: int = 20) -> list[str]:
    """One n8n node whose URL is a `mib` MiB string: 20 MiB is over the 16 MiB input limit
    (refused by size), 15 MiB is parsed and converted whole."""
    path = root / "big-n8n.json"
    start = {
        "id": "1",
        "name": "Start",
        "type": "n8n-nodes-base.manualTrigger",
        "typeVersion": 1,
        "position": [0, 0],
        "parameters": {},
    }
    step = {
        "id": "2",
        "name": "Call",
        "type": "n8n-nodes-base.httpRequest",
        "typeVersion": 4,
        "position": [200, 0],
        "parameters": {"url": "https://example.com/" + "x" * (mib * 1024 * 1024)},
    }
    connections = {"Start": {"main": [[{"node": "Call", "type": "main", "index": 0}]]}}
    document = {"name": "big", "nodes": [start, step], "connections": connections}
    path.write_text(json.dumps(document))
    return ["import", str(path), "--into", str(root / "repo"), "--dry-run"]


def _tar_header_bomb(root: Path) -> list[str]:
    """A pax header that claims 1.2 GiB of zeros: 1.2 MB gzipped."""
    import gzip
    import tarfile

    claimed = 1200 * 1024 * 1024
    header = tarfile.TarInfo("././@PaxHeader")
    header.type = tarfile.XHDTYPE
    header.size = claimed
    path = root / "bomb.tar.gz"
    zeros = bytes(1024 * 1024)
    with gzip.open(path, "wb", compresslevel=9) as out:
        out.write(header.tobuf(format=tarfile.USTAR_FORMAT))
        for _ in range(claimed // len(zeros)):
            out.write(zeros)
    return ["import", str(path), "--into", str(root / "repo"), "--dry-run"]


ADVERSARIAL: dict[str, tuple[Callable[[Path], list[str]], tuple[int, ...]]] = {
    # case: (writes the input and returns the CLI arguments, the exit codes that are right)
    "nesting_100k": (_deep, (1,)),
    "aliases_10k": (_aliases, (1,)),
    "line_1mib": (_long_line, (0, 1)),
    "n8n_string_20mib": (_n8n_string, (1, 2)),
    "n8n_string_15mib": (functools.partial(_n8n_string, mib=15), (0, 1)),
    "tar_header_bomb": (_tar_header_bomb, (1, 2)),
}


def adversarial() -> None:
    worst_seconds, worst_peak = 0.0, 0.0
    for case, (build, codes) in ADVERSARIAL.items():
        with tempfile.TemporaryDirectory(prefix=f"flowpin-bench-{case}-") as tmp:
            root = Path(tmp)
            (root / "tree" / "workflows").mkdir(parents=True)
            repo = pygit2.init_repository(str(root / "repo"), initial_head="main")
            del repo
            arguments = build(root)
            note(f"adversarial {case}: flowpin {' '.join(arguments[:1])}")
            seconds, peak, code, stderr = _measure_in_child(arguments, root)
        note(f"exit {code}: {stderr.strip().splitlines()[-1:] if stderr.strip() else ''}")
        if code not in codes or "Traceback" in stderr or (not stderr.strip() and code):
            raise SystemExit(f"{case}: exit {code}, expected {codes}; stderr: {stderr[-2000:]}")
        workload = f"flowpin {arguments[0]}, exit {code}, subprocess incl. interpreter start"
        report(f"adversarial_{case}_seconds", round(seconds, 2), "s", workload)
        report(f"adversarial_{case}_peak_rss", round(peak), "MiB", workload)
        worst_seconds, worst_peak = max(worst_seconds, seconds), max(worst_peak, peak)
    report("adversarial_worst_seconds", round(worst_seconds, 2), "s", "target < 1 s")
    report("adversarial_worst_peak_rss", round(worst_peak), "MiB", "target < 256 MiB")


def _measure_in_child(arguments: list[str], cwd: Path) -> tuple[float, float, int, str]:
    """Runs the case from a fresh Python so that RUSAGE_CHILDREN holds this case alone."""
    code = (
        "import json, os, resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True, "
        "env={**os.environ, 'NO_COLOR': '1'})\n"
        "s = time.perf_counter() - t\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
        "print(json.dumps([s, peak, p.returncode, p.stderr.decode('utf-8', 'replace')]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(BIN / "flowpin"), *arguments],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    seconds, peak, status, stderr = json.loads(done.stdout)
    return float(seconds), float(peak), int(status), str(stderr)


def note(text: str) -> None:
    """Progress, on stderr: the figures alone go to stdout."""
    print(f"# {text}", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="flowpin validate figures.")
    parser.add_argument(
        "--workflows", type=int, help="workflows in the throughput part (default 1000; 100 quick)"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument(
        "--only",
        choices=("throughput", "history", "adversarial"),
        help="run one part (default: all)",
    )
    args = parser.parse_args()
    started = time.perf_counter()
    if args.only in (None, "throughput"):
        throughput(args.workflows or (100 if args.quick else 1000), 50)
    if args.only in (None, "adversarial"):
        adversarial()
    if args.only in (None, "history"):
        if args.quick:
            history((100, 1000), workflows=10, steps=20)
        else:
            history((1000, 10000), workflows=50, steps=20)
    report("validate_bench_wall_time", round(time.perf_counter() - started), "s", "this whole run")


if __name__ == "__main__":
    main()
