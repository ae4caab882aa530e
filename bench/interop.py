"""`flowpin import` and n8n round-trip figures (issue 8). No control plane needed.

    python bench/interop.py [--files N] [--quick]

1. Import: N generated n8n workflows (default 2,000; 5 to 30 nodes each, the node mix of
   real exports: triggers, HTTP requests, Set, If, Switch, Wait, code and SaaS nodes with
   credentials, AI agents with sub-nodes, sticky notes, fan-out) in one directory, imported
   by `flowpin import DIR` as a real subprocess into a fresh git repository: detection,
   conversion, validation with every `flowpin validate` check, the round-trip self-check,
   and one commit on a new branch. The run must exit 0 and the branch must hold N files.
2. Round trip of the same files, in process: n8n → flowpin → YAML text → flowpin → n8n,
   compared structurally with the original. Target: 100 % lossless.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import pygit2
import yaml
from common import report

from controller.interop.formats import dump_yaml
from controller.interop.n8n import compare, from_n8n, to_n8n

BIN = Path(sys.executable).parent
AUTHOR = pygit2.Signature("flowpin bench", "bench@flowpin.dev", 1_700_000_000, 0)
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


# --------------------------------------------------------------------------- generated content


def _node(
    name: str, kind: str, version: float, parameters: dict[str, Any], x: int, **extra: Any
) -> dict[str, Any]:
    return {
        "parameters": parameters,
        "id": f"{zlib.crc32(f'{name}/{kind}/{x}'.encode()):08x}-0000-4000-8000-000000000000",
        "name": name,
        "type": kind if "." in kind else f"n8n-nodes-base.{kind}",
        "typeVersion": version,
        "position": [x, 300],
        **extra,
    }


def _condition(left: str, operation: str, right: Any, kind: str = "string") -> dict[str, Any]:
    return {
        "options": {"caseSensitive": True, "leftValue": "", "typeValidation": "strict"},
        "conditions": [
            {
                "id": "c-1",
                "leftValue": left,
                "rightValue": right,
                "operator": {"type": kind, "operation": operation},
            }
        ],
        "combinator": "and",
    }


def generate(seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    nodes: list[dict[str, Any]] = []
    connections: dict[str, Any] = {}

    def link(source: str, target: str, output: int = 0, index: int = 0) -> None:
        outputs = connections.setdefault(source, {}).setdefault("main", [])
        while len(outputs) <= output:
            outputs.append([])
        outputs[output].append({"node": target, "type": "main", "index": index})

    trigger_kind = rng.choice(["webhook", "scheduleTrigger", "manualTrigger"])
    trigger = {
        "webhook": ("Webhook", 2, {"httpMethod": "POST", "path": f"hook-{seed}", "options": {}}),
        "scheduleTrigger": (
            "Schedule",
            1.2,
            {"rule": {"interval": [{"triggerAtHour": seed % 24}]}},
        ),
        "manualTrigger": ("Start", 1, {}),
    }[trigger_kind]
    nodes.append(_node(trigger[0], trigger_kind, trigger[1], trigger[2], 0, webhookId=f"w{seed}"))
    previous = trigger[0]
    length = rng.randint(4, 26)
    for i in range(length):
        name = f"Step {i + 1}"
        slot = rng.choice(["http", "set", "if", "wait", "code", "slack", "agent", "switch", "noop"])
        x = 220 * (i + 1)
        if slot == "http":
            nodes.append(
                _node(
                    name,
                    "httpRequest",
                    4.2,
                    {
                        "method": rng.choice(["GET", "POST"]),
                        "url": f"=https://api{seed % 9}.example/items/{{{{ $json.id }}}}?n={i}",
                        "sendHeaders": True,
                        "headerParameters": {
                            "parameters": [{"name": "accept", "value": "application/json"}]
                        },
                        "options": {},
                    },
                    x,
                    retryOnFail=rng.random() < 0.3,
                )
            )
        elif slot == "set":
            nodes.append(
                _node(
                    name,
                    "set",
                    3.4,
                    {
                        "assignments": {
                            "assignments": [
                                {
                                    "id": f"a{i}",
                                    "name": f"field{i}",
                                    "type": "string",
                                    "value": f"={{{{ $json.name }}}}-{i}",
                                },
                                {"id": f"b{i}", "name": "count", "type": "number", "value": i},
                            ]
                        },
                        "includeOtherFields": True,
                        "options": {},
                    },
                    x,
                )
            )
        elif slot == "if":
            nodes.append(
                _node(
                    name,
                    "if",
                    2,
                    {
                        "conditions": _condition("={{ $json.status }}", "equals", "ok"),
                        "options": {},
                    },
                    x,
                )
            )
            other = f"{name} else"
            nodes.append(
                _node(
                    other,
                    "slack",
                    2.2,
                    {"channel": "#alerts", "text": "={{ $json.error }}"},
                    x,
                    credentials={"slackApi": {"id": "s1", "name": "Slack"}},
                )
            )
            link(previous, name)
            link(name, other, 1)
            previous = name
            continue
        elif slot == "switch":
            rules = [
                {
                    "conditions": _condition("={{ $json.plan }}", "equals", plan),
                    "renameOutput": True,
                    "outputKey": plan,
                }
                for plan in ("pro", "free")
            ]
            nodes.append(
                _node(
                    name,
                    "switch",
                    3,
                    {"rules": {"values": rules}, "options": {"fallbackOutput": "extra"}},
                    x,
                )
            )
            for output, branch in enumerate(("pro", "free")):
                target = f"{name} {branch}"
                nodes.append(_node(target, "noOp", 1, {}, x))
                link(name, target, output)
            link(previous, name)
            previous = name
            continue
        elif slot == "wait":
            nodes.append(
                _node(
                    name,
                    "wait",
                    1.1,
                    {"amount": rng.randint(1, 90), "unit": "minutes"},
                    x,
                    webhookId=f"wait-{seed}-{i}",
                )
            )
        elif slot == "code":
            nodes.append(
                _node(
                    name,
                    "code",
                    2,
                    {
                        "jsCode": "return $input.all().map(i => ({json: {...i.json, "
                        f"step: {i}}}}}));"
                    },
                    x,
                )
            )
        elif slot == "slack":
            nodes.append(
                _node(
                    name,
                    "slack",
                    2.2,
                    {"channel": "#leads", "text": "={{ $json.email }}"},
                    x,
                    credentials={"slackApi": {"id": "s1", "name": "Slack"}},
                )
            )
        elif slot == "agent":
            nodes.append(
                _node(
                    name,
                    "@n8n/n8n-nodes-langchain.agent",
                    1.7,
                    {"text": "={{ $json.question }}", "options": {}},
                    x,
                )
            )
            model = f"{name} model"
            nodes.append(
                _node(
                    model,
                    "@n8n/n8n-nodes-langchain.lmChatOpenAi",
                    1,
                    {"model": "gpt-4o-mini", "options": {}},
                    x,
                    credentials={"openAiApi": {"id": "o1", "name": "OpenAI"}},
                )
            )
            connections[model] = {
                "ai_languageModel": [[{"node": name, "type": "ai_languageModel", "index": 0}]]
            }
        else:
            nodes.append(_node(name, "noOp", 1, {}, x))
        link(previous, name)
        if rng.random() < 0.08 and i + 1 < length:  # fan-out: a side branch
            side = f"{name} side"
            nodes.append(_node(side, "noOp", 1, {}, x))
            link(previous, side)
        previous = name
    for note in range(rng.randint(0, 3)):
        nodes.append(
            _node(
                f"Sticky Note{note}",
                "stickyNote",
                1,
                {"content": f"## Part {note}\nExplains things.", "height": 240, "width": 320},
                100 * note,
            )
        )
    return {
        "name": f"Generated workflow {seed}",
        "nodes": nodes,
        "connections": connections,
        "settings": {"executionOrder": "v1", "timezone": "Europe/Berlin"},
        "pinData": {},
        "meta": {"instanceId": "bench"},
        "tags": [{"id": str(seed % 5), "name": f"team-{seed % 5}"}],
        "versionId": f"v-{seed}",
    }


# --------------------------------------------------------------------------- measurements


def import_files(count: int, folder: Path, work: Path) -> None:
    root = work / "repo"
    (root / "workflows").mkdir(parents=True)
    (root / "workflows" / ".keep").write_text("")
    repo = pygit2.init_repository(str(root), initial_head="main")
    repo.index.add_all()
    repo.index.write()
    repo.create_commit("HEAD", AUTHOR, AUTHOR, "start", repo.index.write_tree(), [])
    started = time.perf_counter()
    done = subprocess.run(
        [
            str(BIN / "flowpin"),
            "import",
            str(folder),
            "--into",
            str(root),
            "--branch",
            "bench",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(
            f"flowpin import failed ({done.returncode}):\n"
            f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    tree = repo.branches.local["bench"].peel(pygit2.Commit).tree["workflows"]
    written = sum(1 for entry in tree if entry.name.endswith(".yaml"))  # type: ignore[union-attr]
    if written != count:
        sys.exit(f"expected {count} imported files, the branch holds {written}")
    size = sum(p.stat().st_size for p in folder.iterdir()) / 2**20
    report(
        f"interop_import_{count}_files",
        count / elapsed,
        "files/s",
        f"{count:,} generated n8n workflows, {size:.1f} MiB; `flowpin import DIR` subprocess incl. "
        f"interpreter start: detect, convert, every validate check, round-trip self-check, "
        f"one commit on a new branch; {elapsed:.1f} s",
    )


def round_trip(count: int, documents: list[dict[str, Any]]) -> None:
    lossless = 0
    first_failure = ""
    started = time.perf_counter()
    for document in documents:
        conversion = from_n8n(document)
        if conversion.manifest is None:
            first_failure = first_failure or "refused"
            continue
        manifest = yaml.load(dump_yaml(conversion.manifest), Loader=_LOADER)
        differences = compare(document, to_n8n(manifest).workflow)
        if differences:
            first_failure = first_failure or differences[0].describe()
        else:
            lossless += 1
    elapsed = time.perf_counter() - started
    report(
        f"interop_round_trip_{count}_files",
        count / elapsed,
        "files/s",
        "n8n → flowpin → YAML text → flowpin → n8n, structural compare, in process, 1 core",
    )
    report(
        f"interop_round_trip_lossless_{count}_files",
        100.0 * lossless / count,
        "%",
        f"{lossless} of {count} well-formed files identical on nodes, parameters, connections and "
        "top-level fields" + (f"; first difference: {first_failure}" if first_failure else ""),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="flowpin import and n8n round-trip figures.")
    parser.add_argument("--files", type=int, help="n8n workflows to generate (default 2000)")
    parser.add_argument("--quick", action="store_true", help="200 files, for a smoke run")
    args = parser.parse_args()
    count = args.files or (200 if args.quick else 2000)
    documents = [generate(seed) for seed in range(count)]
    with tempfile.TemporaryDirectory(prefix="flowpin-bench-interop-") as temporary:
        work = Path(temporary)
        folder = work / "n8n"
        folder.mkdir()
        for seed, document in enumerate(documents):
            (folder / f"workflow-{seed:05d}.json").write_text(json.dumps(document, indent=2))
        nodes = sum(len(d["nodes"]) for d in documents) / count
        print(f"# {count} workflows, {nodes:.1f} nodes on average", flush=True)
        import_files(count, folder, work)
        round_trip(count, documents)


if __name__ == "__main__":
    main()
