"""The step graph of a workflow spec: edges, reachability and cycles.

The entry is the first step. Edges are `next`, `condition.then`, `condition.else` and
`onError: goto:<id>`; `end` (or no edge) ends the run.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

END = "end"


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    field: tuple[str, ...]  # where the edge is written, relative to the step


def step_edges(step: Mapping[str, Any]) -> Iterator[Edge]:
    source = str(step.get("id"))
    if isinstance(step.get("next"), str):
        yield Edge(source, step["next"], ("next",))
    condition = step.get("condition")
    if isinstance(condition, Mapping):
        for branch in ("then", "else"):
            if isinstance(condition.get(branch), str):
                yield Edge(source, condition[branch], ("condition", branch))
    on_error = step.get("onError")
    if isinstance(on_error, str) and on_error.startswith("goto:"):
        yield Edge(source, on_error.removeprefix("goto:"), ("onError",))


def adjacency(steps: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Step id → ids it can go to (edges to `end` or to unknown ids are left out)."""
    ids = {str(step.get("id")) for step in steps}
    graph: dict[str, list[str]] = {str(step.get("id")): [] for step in steps}
    for step in steps:
        for edge in step_edges(step):
            if edge.target in ids:
                graph[edge.source].append(edge.target)
    return graph


def reachable(graph: Mapping[str, list[str]], entry: str) -> set[str]:
    seen = {entry}
    todo = [entry]
    while todo:
        for target in graph.get(todo.pop(), []):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def cycles(graph: Mapping[str, list[str]]) -> list[list[str]]:
    """Strongly connected components that contain a cycle (Tarjan's, iteratively), each in
    graph order: a loop of two or more steps, or a step that goes to itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    position = {node: i for i, node in enumerate(graph)}
    for root in graph:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, child = work.pop()
            if child == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            targets = graph.get(node, [])
            if child < len(targets):
                work.append((node, child + 1))
                target = targets[child]
                if target not in index:
                    work.append((target, 0))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph.get(node, []):
                    found.append(sorted(component, key=position.__getitem__))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return found
