"""`flowpin diff` figures: classifying the changes between two 500-step versions.

    python bench/diff.py [--steps N] [--runs N]

The versions are a generated chain of http, wait, condition, set and log steps (conditions
branch forward) with a few dozen realistic edits between them: steps removed and re-wired
around, added, renamed, retyped, URLs and retry policies changed, waits lengthened, an input
made required, a trigger rescheduled. Target: median below 50 ms.
"""

from __future__ import annotations

import argparse
import copy
import time
from typing import Any

from common import percentile, report

from controller.model.diff import diff_specs

KINDS = ("http", "wait", "condition", "set", "log")


def sid(i: int) -> str:
    return f"s{i:04d}"


def make_step(i: int, n: int) -> dict[str, Any]:
    kind = KINDS[i % len(KINDS)]
    nxt = sid(i + 1) if i + 1 < n else "end"
    step: dict[str, Any] = {"id": sid(i), "type": kind}
    if kind == "http":
        step["http"] = {
            "method": "POST",
            "url": f"https://api.example/v1/items/{i}",
            "headers": {"content-type": "application/json"},
            "body": {"item": i, "email": "${ inputs.email }", "tags": ["a", "b"]},
        }
        step["retry"] = {"limit": 3, "backoff": "exponential", "initialDelay": "1s"}
        step["timeout"] = "30s"
    elif kind == "wait":
        step["wait"] = {"duration": f"{i % 48 + 1}h"}
    elif kind == "condition":
        other = sid(i + 2) if i + 2 < n else "end"
        step["condition"] = {"when": f"steps.{sid(i - 2)}.output.status == 200"}
        step["condition"]["then"], step["condition"]["else"] = nxt, other
        return step
    elif kind == "set":
        step["set"] = {f"v{i}": f"steps.{sid(i - 3)}.output.body.id"}
    else:
        step["log"] = {"message": f"reached {i} for ${{ inputs.email }}"}
    step["next"] = nxt
    return step


def base_spec(n: int) -> dict[str, Any]:
    return {
        "version": "1.4.0",
        "description": "A long generated chain.",
        "inputs": {
            "type": "object",
            "required": ["email"],
            "properties": {
                "email": {"type": "string", "maxLength": 200},
                "plan": {"type": "string", "enum": ["free", "pro"]},
                "region": {"type": ["string", "null"]},
            },
        },
        "triggers": [
            {"id": "signup", "type": "webhook", "secretRef": {"name": "hook"}},
            {"id": "nightly", "type": "schedule", "schedule": "0 9 * * *"},
        ],
        "steps": [make_step(i, n) for i in range(n)],
        "migrations": [{"from": ">=1.0.0 <1.4.0", "map": {"old-wait": sid(1)}}],
    }


def retarget(steps: list[dict[str, Any]], old: str, new: str) -> None:
    for step in steps:
        if step.get("next") == old:
            step["next"] = new
        condition = step.get("condition")
        if condition:
            for branch in ("then", "else"):
                if condition.get(branch) == old:
                    condition[branch] = new


def spread(n: int, residue: int, count: int, shift: int) -> list[int]:
    """`count` indices with `i % 10 == residue` spread over the chain (so the kind is known)."""
    blocks = n // 10 - 2
    return [10 * ((shift + j * blocks // count) % blocks) + residue for j in range(count)]


def edited(spec: dict[str, Any]) -> dict[str, Any]:
    new = copy.deepcopy(spec)
    new["version"] = "2.0.0"
    steps: list[dict[str, Any]] = new["steps"]
    by_id = {s["id"]: s for s in steps}
    n = len(steps)
    # Removed log steps, with the steps that led to them re-wired past them.
    for i in spread(n, 4, 5, 1):
        victim = by_id[sid(i)]
        retarget(steps, victim["id"], victim["next"])
        steps.remove(victim)
    # Renamed waits (same content, new id), references rewritten.
    for i in spread(n, 1, 5, 3):
        renamed = f"pause-{i}"
        retarget(steps, sid(i), renamed)
        by_id[sid(i)]["id"] = renamed
    # Retyped log steps (log -> noop).
    for i in spread(n, 9, 3, 5):
        step = by_id[sid(i)]
        del step["log"]
        step["type"] = "noop"
    # Changed URLs and retry policies, lengthened waits.
    for i in spread(n, 0, 6, 2):
        by_id[sid(i)]["http"]["url"] = f"https://api.example/v2/items/{i}"
    for i in spread(n, 5, 6, 4):
        by_id[sid(i)]["retry"] = {"limit": 5, "backoff": "fixed", "initialDelay": "2s"}
    for i in spread(n, 6, 4, 6):
        by_id[sid(i)]["wait"]["duration"] = "72h"
    # Added steps spliced into the chain after set steps.
    for i in spread(n, 3, 5, 7):
        anchor = by_id[sid(i)]
        added = {"id": f"audit-{i}", "type": "log", "log": {"message": "audit"}}
        added["next"] = anchor["next"]
        anchor["next"] = added["id"]
        steps.insert(steps.index(anchor) + 1, added)
    new["inputs"]["required"].append("plan")
    new["triggers"][1]["schedule"] = "0 8 * * *"
    new["description"] = "A long generated chain, revised."
    return new


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    old = base_spec(args.steps)
    new = edited(old)
    changes = len(diff_specs(old, new).changes)  # also warms up imports and caches
    timings: list[float] = []
    for _ in range(args.runs):
        started = time.perf_counter()
        diff_specs(old, new)
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    workload = f"{args.steps}-step versions, {changes} changes"
    report(
        f"diff_{args.steps}_steps_median",
        percentile(timings, 0.5),
        "ms",
        f"{workload}, median of {args.runs}",
    )
    report(
        f"diff_{args.steps}_steps_p95",
        percentile(timings, 0.95),
        "ms",
        f"{workload}, {args.runs} runs",
    )


if __name__ == "__main__":
    main()
