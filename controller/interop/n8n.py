"""n8n workflow JSON ↔ flowpin Workflow manifests, and a structural comparison. Pure.

n8n → flowpin (`from_n8n`):

- Webhook, Schedule Trigger / Cron and Manual Trigger nodes become `triggers`; every other
  node becomes a step: HTTP Request → `http`, Wait → `wait`, If → `condition`, Switch → a
  chain of `condition` steps, Set → `set`, No Op → `noop`, Stop and Error → `fail`, and any
  node that has no flowpin type, or whose parameters do not translate cleanly (expressions
  CEL cannot say, credentials, options) → an `n8n` step that keeps type, typeVersion,
  parameters and credentials verbatim. Each fallback is reported with its reason.
- flowpin has one entry and one path per step; n8n has several triggers, fan-out (an output
  wired to several nodes, all of which run) and disconnected nodes. The entry is the node the
  first trigger feeds (else the leftmost node without inputs). An output becomes `next` (or
  `then`/`else`) pointing at its first target that is a step. Nodes that cannot be reached
  from the entry that way (sub-nodes wired by `ai_*` connections, second branches of a
  fan-out, disconnected nodes) and sticky notes are not steps: they are kept verbatim in the
  annotation `n8n.flowpin.dev/detached`, each reported. A loop without a wait step (flowpin
  refuses those) loses its closing edge, reported. So the manifest always passes `flowpin
  validate`.
- Everything else — node ids, names, positions, the original node of translated steps, the
  connections (with the ones steps represent tagged), settings, pinData, meta, tags — goes
  into `metadata.annotations` (`n8n.flowpin.dev/*`, JSON text), so that nothing is lost.

flowpin → n8n (`to_n8n`) writes steps and triggers as nodes. A node that came from n8n and
whose step is unchanged (a digest of the step's content is kept) is restored exactly; an
edited one is regenerated from the step, keeping its name, id and position. Connections are
the stored ones with the tagged entries replaced by the steps' current edges. So n8n →
flowpin → n8n reproduces nodes, parameters and connections; `compare` lists any difference.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import unicodedata
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from controller.interop import n8n_nodes as nodes_
from controller.interop.expressions import Resolve, Segment, Untranslatable, cel_path
from controller.model import jsonsafe
from controller.model.findings import PathElement
from controller.model.graph import adjacency, cycles, step_edges

API_VERSION = "flowpin.dev/v1alpha1"
MAX_NODES = 2_000  # per workflow, sticky notes included
PREFIX = "n8n.flowpin.dev/"
ANNOTATION_WORKFLOW = PREFIX + "workflow"
ANNOTATION_NODES = PREFIX + "nodes"
ANNOTATION_DETACHED = PREFIX + "detached"
ANNOTATION_CONNECTIONS = PREFIX + "connections"
TAG = "flowpin"  # key added to a connection entry that a step's edge represents
EDGE_FIELDS = ("next", "condition.then", "condition.else", "onError")
_DEFAULT_OUTPUTS = {"next": 0, "condition.then": 0, "condition.else": 1, "onError": 1}

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Note:
    """A problem or a change of meaning, located in the n8n document (`nodes[3].type`)."""

    path: tuple[PathElement, ...]
    code: str
    message: str
    severity: Severity = "warning"


@dataclass
class Conversion:
    """The result of `from_n8n`: the manifest (None when refused) and what to report."""

    manifest: dict[str, Any] | None
    notes: list[Note] = field(default_factory=list)

    @property
    def refused(self) -> bool:
        return self.manifest is None


@dataclass(frozen=True)
class Difference:
    """One structural difference between two n8n workflows."""

    path: str
    before: Any
    after: Any

    def describe(self) -> str:
        if self.before is _MISSING:
            return f"{self.path}: added ({_short(self.after)})"
        if self.after is _MISSING:
            return f"{self.path}: removed (was {_short(self.before)})"
        return f"{self.path}: {_short(self.before)} → {_short(self.after)}"


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------- names


def slug(text: str, limit: int = 63) -> str:
    """A lowercase DNS-label-ish id from free text (`Send Email 1` → `send-email-1`)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    value = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return value[:limit].rstrip("-")


class _Ids:
    """Allocates unique ids: `send-email`, `send-email-2`, …"""

    def __init__(self, fallback: str) -> None:
        self.taken: set[str] = {"end"}  # `next: end` ends a run: never a step id
        self.fallback = fallback

    def allocate(self, text: str) -> str:
        base = slug(text, 55) or self.fallback
        candidate, number = base, 2
        while candidate in self.taken:
            candidate, number = f"{base}-{number}", number + 1
        self.taken.add(candidate)
        return candidate


def digest(value: Any) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def content(step: Mapping[str, Any]) -> dict[str, Any]:
    """A step without its id and edges: what a digest protects."""
    body = {k: copy.deepcopy(v) for k, v in step.items() if k not in ("id", "next")}
    if isinstance(body.get("condition"), dict):
        body["condition"] = {k: v for k, v in body["condition"].items() if k == "when"}
    if isinstance(body.get("onError"), str) and body["onError"].startswith("goto:"):
        body["onError"] = "goto"
    return body


# --------------------------------------------------------------------------- n8n → flowpin


@dataclass
class _Graph:
    """The `main` connections: node → output index → [(target, input index, entry index)]."""

    outputs: dict[str, dict[int, list[tuple[str, int, int]]]] = field(default_factory=dict)
    inputs: dict[str, list[str]] = field(default_factory=dict)

    def targets(self, name: str, output: int) -> list[tuple[str, int, int]]:
        return self.outputs.get(name, {}).get(output, [])


def _check_structure(data: Any, notes: list[Note]) -> list[dict[str, Any]] | None:
    if not isinstance(data, dict):
        notes.append(
            Note((), "not-n8n-workflow", "not an n8n workflow: expected a JSON object", "error")
        )
        return None
    raw_nodes = data.get("nodes")
    if raw_nodes is None:
        notes.append(
            Note((), "not-n8n-workflow", "not an n8n workflow: it has no `nodes` list", "error")
        )
        return None
    if not isinstance(raw_nodes, list):
        notes.append(Note(("nodes",), "n8n-schema", "`nodes` must be a list", "error"))
        return None
    if len(raw_nodes) > MAX_NODES:
        notes.append(
            Note(
                ("nodes",),
                "too-many-nodes",
                f"{len(raw_nodes)} nodes: more than the {MAX_NODES} a workflow may have",
                "error",
            )
        )
        return None
    good = True
    seen: dict[str, int] = {}
    for index, node in enumerate(raw_nodes):
        if not isinstance(node, dict):
            notes.append(Note(("nodes", index), "n8n-schema", "a node must be an object", "error"))
            good = False
            continue
        for key in ("name", "type"):
            if not isinstance(node.get(key), str) or not node[key]:
                notes.append(
                    Note(
                        ("nodes", index, key),
                        "n8n-schema",
                        f"node {index + 1} has no {key}",
                        "error",
                    )
                )
                good = False
        name = node.get("name")
        if isinstance(name, str) and name in seen:
            notes.append(
                Note(
                    ("nodes", index, "name"),
                    "duplicate-node-name",
                    f"two nodes are named {name!r} (nodes {seen[name] + 1} and {index + 1}); "
                    "n8n connections name nodes, so they would be ambiguous",
                    "error",
                )
            )
            good = False
        elif isinstance(name, str):
            seen[name] = index
        if "parameters" in node and not isinstance(node["parameters"], dict):
            notes.append(
                Note(
                    ("nodes", index, "parameters"),
                    "n8n-schema",
                    "parameters must be an object",
                    "error",
                )
            )
            good = False
    connections = data.get("connections", {})
    if not isinstance(connections, dict):
        notes.append(
            Note(("connections",), "n8n-schema", "`connections` must be an object", "error")
        )
        good = False
    return raw_nodes if good else None


def _read_graph(connections: Mapping[str, Any], names: set[str], notes: list[Note]) -> _Graph:
    graph = _Graph()
    for source, types in connections.items():
        if source not in names:
            notes.append(
                Note(
                    ("connections", source),
                    "dangling-connection",
                    f"connections from {source!r}, but there is no such node; ignored",
                )
            )
            continue
        if not isinstance(types, dict):
            notes.append(Note(("connections", source), "n8n-schema", "must be an object; ignored"))
            continue
        for kind, outputs in types.items():
            if kind != "main" and not kind.startswith("ai_"):
                notes.append(
                    Note(
                        ("connections", source, kind),
                        "unknown-connection-type",
                        f"connection type {kind!r} from {source!r} is not main or ai_*; "
                        "kept, not used as an edge",
                    )
                )
                continue
            if not isinstance(outputs, list):
                notes.append(Note(("connections", source, kind), "n8n-schema", "must be a list"))
                continue
            for output, entries in enumerate(outputs):
                if entries is not None and not isinstance(entries, list):
                    notes.append(
                        Note(
                            ("connections", source, kind, output),
                            "n8n-schema",
                            f"output {output} of {source!r} ({kind}) must be a list of "
                            "connections; kept, not used as an edge",
                        )
                    )
                    continue
                for position, entry in enumerate(entries or []):
                    where: tuple[PathElement, ...] = ("connections", source, kind, output, position)
                    if not isinstance(entry, dict) or not isinstance(entry.get("node"), str):
                        notes.append(
                            Note(
                                where,
                                "n8n-schema",
                                "a connection needs a node (an object with the node's name "
                                "as `node`); kept, not used as an edge",
                            )
                        )
                        continue
                    target = entry["node"]
                    if target not in names:
                        notes.append(
                            Note(
                                where,
                                "dangling-connection",
                                f"{source!r} connects to {target!r}, which is not a node; ignored",
                            )
                        )
                        continue
                    if kind != "main":
                        continue
                    index = entry.get("index", 0)
                    index = index if isinstance(index, int) else 0
                    graph.outputs.setdefault(source, {}).setdefault(output, []).append(
                        (target, index, position)
                    )
                    graph.inputs.setdefault(target, []).append(source)
    return graph


def _position(node: Mapping[str, Any]) -> tuple[float, float]:
    position = node.get("position")
    if isinstance(position, list) and len(position) == 2:
        try:
            return float(position[0]), float(position[1])
        except (TypeError, ValueError):
            pass
    return (0.0, 0.0)


@dataclass
class _Context:
    """What expression references resolve against while translating in flow order."""

    graph: _Graph
    kinds: dict[str, tuple[str, Any]] = field(default_factory=dict)  # node → (kind, detail)

    def resolver(self, node: str) -> Resolve:
        def resolve(target: str | None, path: Sequence[Segment]) -> str:
            return self._resolve(node if target is None else target, path, target is None, 0)

        return resolve

    def _resolve(self, name: str, path: Sequence[Segment], incoming: bool, depth: int) -> str:
        if depth > 50:
            raise Untranslatable("references loop")
        if incoming:
            sources = self.graph.inputs.get(name, [])
            if len(set(sources)) != 1:
                raise Untranslatable(
                    "$json of a node with several inputs"
                    if sources
                    else "$json of a node with no input"
                )
            name = sources[0]
        if name not in self.kinds:
            raise Untranslatable(f"it reads {name!r}, which is not a step before it")
        kind, detail = self.kinds[name]
        if kind == "webhook":
            if not path or path[0] != "body":
                raise Untranslatable("it reads the webhook request beyond its body")
            return cel_path("inputs", path[1:])
        if kind == "manual":
            return cel_path("inputs", path)
        if kind == "http":
            return cel_path(f'steps["{detail}"].output.body', path)
        if kind == "n8n":
            return cel_path(f'steps["{detail}"].output', path)
        if kind == "set":
            names, through = detail
            if path and path[0] in names:
                return cel_path("vars", path)
            if through:
                return self._resolve(name, path, True, depth + 1)
            raise Untranslatable(f"it reads a field the Set node {name!r} drops")
        if kind == "pass":
            return self._resolve(name, path, True, depth + 1)
        raise Untranslatable(f"{name!r} has no output flowpin can read")


def from_n8n(data: Any, fallback_name: str = "n8n-workflow", version: str = "1.0.0") -> Conversion:
    """Convert an n8n workflow (parsed JSON). Never raises for bad input: problems are
    error notes and the manifest is None."""
    notes: list[Note] = []
    try:
        return _from_n8n(data, fallback_name, version, notes)
    except RecursionError:
        notes.append(Note((), "n8n-schema", "the workflow is nested too deeply", "error"))
        return Conversion(None, notes)


@dataclass
class _Built:
    """One translation pass over the step nodes."""

    translations: dict[str, nodes_.Translation]
    fallbacks: dict[str, str]  # node → why it stayed an n8n step
    chains: dict[str, list[str]]  # node → its step ids (more than one for a Switch)
    edges: dict[tuple[str, int], tuple[str, int]]  # (node, output) → (target, entry position)


def _from_n8n(data: Any, fallback_name: str, version: str, notes: list[Note]) -> Conversion:
    raw_nodes = _check_structure(data, notes)
    if raw_nodes is None:
        return Conversion(None, notes)
    title = data.get("name")
    if not isinstance(title, str) or not title.strip():
        notes.append(
            Note(("name",), "missing-name", f"the workflow has no name; named {fallback_name!r}")
        )
        title = fallback_name
    name = slug(title) or slug(fallback_name) or "n8n-workflow"
    connections = data.get("connections", {})
    by_name = {node["name"]: node for node in raw_nodes}
    index_of = {node["name"]: i for i, node in enumerate(raw_nodes)}
    graph = _read_graph(connections, set(by_name), notes)
    settings = data.get("settings") if isinstance(data.get("settings"), dict) else {}
    timezone = settings.get("timezone") if isinstance(settings.get("timezone"), str) else None

    def at(node_name: str) -> tuple[PathElement, ...]:
        return ("nodes", index_of.get(node_name, 0))

    detached: list[str] = []  # node names kept verbatim, neither steps nor triggers
    triggers: dict[str, nodes_.Translation] = {}
    step_nodes: list[str] = []
    for node in raw_nodes:
        node_name = node["name"]
        if node["type"] == nodes_.STICKY:
            detached.append(node_name)
        elif node["type"] in nodes_.TRIGGERS and node.get("disabled") is True:
            detached.append(node_name)
            notes.append(
                Note(at(node_name), "n8n-detached", f"trigger {node_name!r} is disabled; kept")
            )
        elif node["type"] in nodes_.TRIGGERS:
            try:
                triggers[node_name] = nodes_.translate_trigger(node, name, timezone)
            except (Untranslatable, TypeError, AttributeError, ValueError, LookupError) as why:
                notes.append(
                    Note(
                        at(node_name),
                        "n8n-verbatim",
                        f"trigger {node_name!r} kept as an n8n step: {why}",
                    )
                )
                step_nodes.append(node_name)
        else:
            step_nodes.append(node_name)
    if not step_nodes:
        notes.append(
            Note(
                ("nodes",),
                "no-steps",
                "the workflow has no nodes besides triggers and sticky notes; a flowpin "
                "workflow needs at least one step",
                "error",
            )
        )
        return Conversion(None, notes)

    step_alloc = _Ids("step")
    step_ids = {n: step_alloc.allocate(n) for n in step_nodes}
    trigger_alloc = _Ids("trigger")
    trigger_ids = {n: trigger_alloc.allocate(n) for n in triggers}

    # The entry: what the first trigger feeds, else the leftmost node without inputs.
    entry: str | None = None
    for trigger in triggers:
        entry = next((t for t, _, _ in graph.targets(trigger, 0) if t in step_ids), None)
        if entry:
            break
    if entry is None:
        candidates = [n for n in step_nodes if not graph.inputs.get(n)] or step_nodes
        entry = min(candidates, key=lambda n: (*_position(by_name[n]), index_of[n]))

    order = _flow_order(step_nodes, graph, entry, index_of)
    parked: set[str] = set()
    while True:  # parking only grows, so this ends
        built = _translate_all(order, parked, by_name, step_ids, graph, triggers, step_alloc)
        reached = _reachable(built.edges, entry)
        newly = {n for n in step_nodes if n not in parked and n not in reached}
        if not newly:
            break
        parked |= newly

    steps, represented = _assemble(order, parked, built, step_ids)
    _break_loops(steps, step_ids[entry], represented, notes, at)
    for node_name in step_nodes:
        if node_name in parked:
            detached.append(node_name)
            notes.append(
                Note(at(node_name), "n8n-detached", _why_detached(node_name, graph, connections))
            )
            continue
        if node_name in built.fallbacks:
            notes.append(
                Note(
                    at(node_name),
                    "n8n-verbatim",
                    f"{node_name!r} kept as an n8n step: {built.fallbacks[node_name]}",
                )
            )
        for text in built.translations[node_name].notes:
            notes.append(Note(at(node_name), "n8n-meaning", f"{node_name!r}: {text}"))
    _fan_out_notes(graph, represented, parked, notes)

    annotation_nodes: dict[str, dict[str, Any]] = {"steps": {}, "triggers": {}}
    trigger_list: list[dict[str, Any]] = []
    for node_name, translation in triggers.items():
        tid = trigger_ids[node_name]
        body = {"id": tid, **translation.bodies[0]}
        trigger_list.append(body)
        annotation_nodes["triggers"][tid] = {
            "node": by_name[node_name],
            "digest": digest(content(body)),
        }
        for text in translation.notes:
            notes.append(Note(at(node_name), "n8n-meaning", f"trigger {node_name!r}: {text}"))
        first = [t for t, _, _ in graph.targets(node_name, 0)]
        if entry in first:
            position = first.index(entry)
            represented[(node_name, 0, graph.targets(node_name, 0)[position][2])] = f"trigger {tid}"
        elif first:
            notes.append(
                Note(
                    at(node_name),
                    "n8n-meaning",
                    f"trigger {node_name!r} starts at {first[0]!r}, but flowpin starts every "
                    f"run at the entry {entry!r}",
                )
            )
        else:
            notes.append(
                Note(
                    at(node_name),
                    "n8n-meaning",
                    f"trigger {node_name!r} is connected to nothing; in flowpin it starts "
                    f"runs at the entry {entry!r}",
                )
            )
    for node_name in order:
        if node_name not in parked:
            annotation_nodes["steps"][step_ids[node_name]] = _step_record(
                by_name[node_name], node_name, built, steps, step_ids
            )

    top = {k: v for k, v in data.items() if k not in ("nodes", "connections")}
    annotations = {
        ANNOTATION_WORKFLOW: _json_text(
            {"workflow": top, "keys": list(data), "nodeOrder": list(by_name)}
        ),
        ANNOTATION_NODES: _json_text(annotation_nodes),
        ANNOTATION_CONNECTIONS: _json_text(_tagged(connections, represented)),
    }
    if detached:
        annotations[ANNOTATION_DETACHED] = _json_text(
            [by_name[n] for n in sorted(detached, key=index_of.__getitem__)]
        )
    spec: dict[str, Any] = {
        "version": version,
        "description": f"Imported from the n8n workflow {title!r}.",
    }
    if trigger_list:
        spec["triggers"] = trigger_list
    spec["steps"] = _step_order(steps, step_ids[entry])
    manifest = {
        "apiVersion": API_VERSION,
        "kind": "Workflow",
        "metadata": {"name": name, "annotations": annotations},
        "spec": spec,
    }
    return Conversion(manifest, notes)


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=1)


def _step_record(
    node: Mapping[str, Any],
    node_name: str,
    built: _Built,
    steps: Mapping[str, dict[str, Any]],
    step_ids: Mapping[str, str],
) -> dict[str, Any]:
    """What the nodes annotation keeps for a step: the node's other fields (an n8n step
    holds type, version, parameters and credentials itself), or for a translated step the
    whole original node and the digest of what it became."""
    translation = built.translations[node_name]
    sid = step_ids[node_name]
    chain = built.chains.get(node_name, [sid])
    record: dict[str, Any]
    if translation.bodies[0]["type"] == "n8n":
        own = ("type", "typeVersion", "parameters", "credentials", "notes")
        record = {"node": {k: v for k, v in node.items() if k not in own}}
        if list(node) != _canonical_keys(node):
            record["keys"] = list(node)
    else:
        record = {"node": node, "digest": digest([content(steps[c]) for c in chain])}
        if len(chain) > 1:
            record["chain"] = chain
    outputs = {
        f"{chain[i]} {field_}": source
        for i, wiring in enumerate(translation.outputs)
        for field_, source in wiring.items()
        if isinstance(source, int)
    }
    if any(_DEFAULT_OUTPUTS.get(k.split(" ")[1]) != v for k, v in outputs.items()):
        record["outputs"] = outputs
    return record


def _flow_order(
    step_nodes: list[str], graph: _Graph, entry: str, index_of: Mapping[str, int]
) -> list[str]:
    """Nodes in the order data flows (Kahn's algorithm from the entry), so that a node's
    predecessors are translated before it; loops are entered in document order."""
    remaining = {n: len(set(graph.inputs.get(n, []))) for n in step_nodes}
    ready = deque([entry] + [n for n in step_nodes if remaining[n] == 0 and n != entry])
    done: list[str] = []
    seen: set[str] = set()
    by_index = sorted(step_nodes, key=index_of.__getitem__)
    first_unseen = 0  # into by_index; seen only grows, so this only moves forward
    while len(done) < len(step_nodes):
        if not ready:
            while by_index[first_unseen] in seen:
                first_unseen += 1
            ready.append(by_index[first_unseen])
        name = ready.popleft()
        if name in seen:
            continue
        seen.add(name)
        done.append(name)
        for target in dict.fromkeys(
            t for targets in graph.outputs.get(name, {}).values() for t, _, _ in targets
        ):
            if target in remaining and target not in seen:
                remaining[target] -= 1
                if remaining[target] <= 0:
                    ready.append(target)
    return done


def _translate_all(
    order: list[str],
    parked: set[str],
    by_name: Mapping[str, dict[str, Any]],
    step_ids: Mapping[str, str],
    graph: _Graph,
    triggers: Mapping[str, nodes_.Translation],
    ids: _Ids,
) -> _Built:
    context = _Context(graph)
    for trigger, translation in triggers.items():
        kind = translation.bodies[0]["type"]
        if kind in ("webhook", "manual"):
            context.kinds[trigger] = (kind, None)
    built = _Built({}, {}, {}, {})
    taken = set(ids.taken)
    for name in order:
        if name in parked:
            continue
        node = by_name[name]
        try:
            translation = nodes_.translate_step(node, context.resolver(name))
        except Untranslatable as why:
            translation, built.fallbacks[name] = nodes_.n8n_step(node), str(why)
        except (TypeError, AttributeError, ValueError, LookupError) as error:
            translation = nodes_.n8n_step(node)
            built.fallbacks[name] = f"its parameters have an unexpected shape ({error})"
        built.translations[name] = translation
        sid = step_ids[name]
        if len(translation.bodies) > 1:
            chain = [sid]
            for number in range(2, len(translation.bodies) + 1):
                candidate = f"{sid}-{number}"
                while candidate in taken:
                    candidate += "-x"
                taken.add(candidate)
                chain.append(candidate)
            built.chains[name] = chain
        kind = translation.bodies[0]["type"]
        params = node.get("parameters") or {}
        if kind == "http":
            context.kinds[name] = ("http", sid)
        elif kind == "set":
            through = params.get("includeOtherFields") is True or params.get("keepOnlySet") is False
            context.kinds[name] = ("set", (set(translation.bodies[0]["set"]), through))
        elif kind in ("wait", "condition", "noop"):
            context.kinds[name] = ("pass", None)
        elif kind == "n8n":
            context.kinds[name] = ("n8n", sid)
        for wiring in translation.outputs:
            for source in wiring.values():
                if not isinstance(source, int) or (name, source) in built.edges:
                    continue
                for target, _, position in graph.targets(name, source):
                    if target in step_ids and target not in parked:
                        built.edges[(name, source)] = (target, position)
                        break
    return built


def _reachable(edges: Mapping[tuple[str, int], tuple[str, int]], entry: str) -> set[str]:
    out: dict[str, list[str]] = {}
    for (source, _), (target, _) in edges.items():
        out.setdefault(source, []).append(target)
    seen = {entry}
    todo = [entry]
    while todo:
        for target in out.get(todo.pop(), []):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def _why_detached(name: str, graph: _Graph, connections: Any) -> str:
    own = connections.get(name) if isinstance(connections, dict) else None
    sub = [k for k in own if k.startswith("ai_")] if isinstance(own, dict) else []
    where = "kept in the annotation n8n.flowpin.dev/detached"
    if sub:
        return f"{name!r} is a sub-node ({', '.join(sub)}) of another node, not a step; {where}"
    if not graph.inputs.get(name) and not graph.outputs.get(name):
        return f"{name!r} is not connected; {where}"
    return (
        f"{name!r} cannot be reached from the entry along the path flowpin follows (a second "
        f"branch of a fan-out, another trigger's path, or an output without an edge); {where}"
    )


def _assemble(
    order: list[str], parked: set[str], built: _Built, step_ids: Mapping[str, str]
) -> tuple[dict[str, dict[str, Any]], dict[tuple[str, int, int], str]]:
    """Steps with their edges, by id; and which connection entry each edge represents:
    (node, output, position) → `step <id> <field>`."""
    steps: dict[str, dict[str, Any]] = {}
    represented: dict[tuple[str, int, int], str] = {}
    for name in order:
        if name in parked:
            continue
        translation = built.translations[name]
        ids = built.chains.get(name, [step_ids[name]])
        for index, body in enumerate(translation.bodies):
            step = _ordered_step(ids[index], copy.deepcopy(body))
            for field_, source in translation.outputs[index].items():
                target_id: str | None = None
                if isinstance(source, str):  # chain:<j>
                    target_id = ids[int(source.split(":")[1])]
                elif (name, source) in built.edges:
                    target, position = built.edges[(name, source)]
                    target_id = step_ids[target]
                    represented[(name, source, position)] = f"step {ids[index]} {field_}"
                _set_edge(step, field_, target_id)
            steps[ids[index]] = step
    return steps, represented


def _ordered_step(sid: str, body: dict[str, Any]) -> dict[str, Any]:
    step: dict[str, Any] = {"id": sid, "type": body.pop("type")}
    if "description" in body:
        step["description"] = body.pop("description")
    tail: dict[str, Any] = {k: body.pop(k) for k in ("retry", "timeout", "onError") if k in body}
    step.update(body)
    step.update(tail)
    return step


def _set_edge(step: dict[str, Any], field_: str, target: str | None) -> None:
    if field_ == "onError":
        step["onError"] = f"goto:{target or 'end'}"
    elif target is None:
        return
    elif field_ == "next":
        step["next"] = target
    else:
        step["condition"][field_.split(".")[1]] = target


def edge_of(step: Mapping[str, Any], field_: str) -> str | None:
    """The step id an edge field points at (None for `end` or no edge)."""
    if field_ == "next":
        value = step.get("next")
    elif field_ == "onError":
        raw = step.get("onError")
        value = (
            raw.removeprefix("goto:") if isinstance(raw, str) and raw.startswith("goto:") else None
        )
    else:
        condition = step.get("condition")
        value = condition.get(field_.split(".")[1]) if isinstance(condition, dict) else None
    return value if isinstance(value, str) and value != "end" else None


def _clear_edge(step: dict[str, Any], field_: str) -> None:
    if field_ == "next":
        step.pop("next", None)
    elif field_ == "onError":
        step["onError"] = "goto:end"
    else:
        step["condition"].pop(field_.split(".")[1], None)


def _break_loops(
    steps: dict[str, dict[str, Any]],
    entry: str,
    represented: dict[tuple[str, int, int], str],
    notes: list[Note],
    at: Any,
) -> None:
    """Drop the closing edge of every loop without a wait step (flowpin refuses them)."""
    origin: str | None = None
    graph = adjacency(list(steps.values()))  # kept up to date as edges are dropped
    for _ in range(len(steps) + 1):
        bad = [c for c in cycles(graph) if not any(steps[s]["type"] == "wait" for s in c)]
        if not bad:
            return
        back = _back_edge(graph, entry, set(bad[0]))
        if back is None:
            return
        source, target = back
        for field_ in EDGE_FIELDS:
            if edge_of(steps[source], field_) == target:
                _clear_edge(steps[source], field_)
                graph[source] = [e.target for e in step_edges(steps[source]) if e.target in graph]
                tag = f"step {source} {field_}"
                for key in [k for k, v in represented.items() if v == tag]:
                    del represented[key]
                    origin = key[0]
                break
        else:
            return
        notes.append(
            Note(
                at(origin) if origin is not None else (),
                "loop-without-wait",
                f"the loop {_loop_text(bad[0])} has no wait step (flowpin refuses loops "
                f"that would spin); its edge {source} → {target} is dropped",
            )
        )


def _loop_text(members: Sequence[str], shown: int = 8) -> str:
    if len(members) <= shown:
        return " → ".join(members)
    return " → ".join(members[:shown]) + f" → … ({len(members)} steps)"


def _back_edge(
    graph: Mapping[str, list[str]], entry: str, members: set[str]
) -> tuple[str, str] | None:
    """An edge of a depth-first walk from the entry that closes a loop within `members`."""
    on_stack: set[str] = set()
    seen: set[str] = set()
    work: list[tuple[str, int]] = [(entry, 0)]
    while work:
        node, child = work.pop()
        if child == 0:
            seen.add(node)
            on_stack.add(node)
        targets = graph.get(node, [])
        if child < len(targets):
            work.append((node, child + 1))
            target = targets[child]
            if target in on_stack and node in members and target in members:
                return node, target
            if target not in seen:
                work.append((target, 0))
        else:
            on_stack.discard(node)
    return None


def _fan_out_notes(
    graph: _Graph,
    represented: Mapping[tuple[str, int, int], str],
    parked: set[str],
    notes: list[Note],
) -> None:
    chosen = {(s, o): p for (s, o, p) in represented}
    for source, outputs in graph.outputs.items():
        if source in parked:
            continue
        for output, targets in outputs.items():
            if len(targets) < 2 or (source, output) not in chosen:
                continue
            position = chosen[(source, output)]
            first = next(t for t, _, p in targets if p == position)
            others = [t for t, _, p in targets if p != position]
            notes.append(
                Note(
                    ("connections", source, "main", output),
                    "n8n-fan-out",
                    f"{source!r} output {output} feeds {len(targets)} nodes, which n8n runs "
                    f"one after another; flowpin follows {first!r} only "
                    f"({', '.join(repr(o) for o in others)} not run from here)",
                )
            )


def _step_order(steps: Mapping[str, dict[str, Any]], entry: str) -> list[dict[str, Any]]:
    """Depth-first from the entry along next, then, else, onError: reads top to bottom."""
    ordered: list[dict[str, Any]] = []
    seen: set[str] = set()
    work = [entry]
    while work:
        sid = work.pop()
        if sid in seen or sid not in steps:
            continue
        seen.add(sid)
        ordered.append(steps[sid])
        follow = [edge_of(steps[sid], f) for f in EDGE_FIELDS]
        work.extend(t for t in reversed(follow) if t is not None)
    ordered += [step for sid, step in steps.items() if sid not in seen]
    return ordered


def _tagged(connections: Any, represented: Mapping[tuple[str, int, int], str]) -> Any:
    """The original connections with each entry a flowpin edge represents tagged
    `flowpin: "step <id> <field>"` or `flowpin: "trigger <id>"`."""
    if not isinstance(connections, dict):
        return connections
    tagged = copy.deepcopy(connections)
    for (source, output, position), tag in represented.items():
        tagged[source]["main"][output][position][TAG] = tag
    return tagged


# --------------------------------------------------------------------------- flowpin → n8n


@dataclass
class Export:
    """An n8n workflow, and what could not be written back as it was."""

    workflow: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def _annotation(annotations: Mapping[str, Any], key: str, default: Any, notes: list[str]) -> Any:
    text = annotations.get(key)
    if text is None:
        return default
    if not isinstance(text, str):
        notes.append(f"annotation {key} is not JSON text; ignored")
        return default
    try:
        return jsonsafe.loads(text)
    except jsonsafe.JSONInputError as error:
        notes.append(f"annotation {key} is not usable JSON ({error}); ignored")
        return default


def to_n8n(manifest: Mapping[str, Any]) -> Export:
    """The n8n workflow for a schema-valid flowpin Workflow manifest."""
    notes: list[str] = []
    metadata = manifest.get("metadata", {})
    spec = manifest.get("spec", {})
    workflow_name = str(metadata.get("name", "workflow"))
    annotations = metadata.get("annotations") or {}
    stored_workflow = _annotation(annotations, ANNOTATION_WORKFLOW, {}, notes)
    stored_nodes = _annotation(annotations, ANNOTATION_NODES, {}, notes)
    detached = _annotation(annotations, ANNOTATION_DETACHED, [], notes)
    stored_connections = _annotation(annotations, ANNOTATION_CONNECTIONS, {}, notes)
    if not isinstance(stored_workflow, dict):
        stored_workflow = {}
    step_records = (stored_nodes.get("steps") if isinstance(stored_nodes, dict) else None) or {}
    trigger_records = (
        stored_nodes.get("triggers") if isinstance(stored_nodes, dict) else None
    ) or {}
    detached = [n for n in detached if isinstance(n, dict)] if isinstance(detached, list) else []

    steps: list[dict[str, Any]] = list(spec.get("steps", []))
    triggers: list[dict[str, Any]] = list(spec.get("triggers", []))
    by_id = {step["id"]: step for step in steps}
    head_of: dict[str, str] = {}  # chain member → the step id that holds the Switch
    for sid, record in step_records.items():
        for member in record.get("chain", []) if isinstance(record, dict) else []:
            head_of[member] = sid
    taken = {n["name"] for n in detached if isinstance(n.get("name"), str)}

    def unique(wanted: str) -> str:
        candidate, number = wanted, 2
        while candidate in taken:
            candidate, number = f"{wanted} {number}", number + 1
        taken.add(candidate)
        return candidate

    step_name: dict[str, str] = {}
    nodes: list[dict[str, Any]] = []
    for step in steps:
        sid = step["id"]
        if sid in head_of and head_of[sid] != sid:
            continue
        record = step_records.get(sid) if isinstance(step_records.get(sid), dict) else None
        node = _step_node(step, record, by_id, workflow_name, notes)
        node["name"] = unique(str(node.get("name") or sid))
        step_name[sid] = node["name"]
        nodes.append(node)
    for member, head in head_of.items():
        if head in step_name:
            step_name.setdefault(member, step_name[head])
    trigger_name: dict[str, str] = {}
    for trigger in triggers:
        tid = trigger["id"]
        record = trigger_records.get(tid) if isinstance(trigger_records.get(tid), dict) else None
        stored = record.get("node") if record else None
        if isinstance(stored, dict) and record and record.get("digest") == digest(content(trigger)):
            node = copy.deepcopy(stored)
        else:
            node = nodes_.fresh_trigger_node(trigger, workflow_name, tid)
            if isinstance(stored, dict):
                _keep_identity(node, stored)
                notes.append(f"trigger {tid} changed in flowpin: its n8n node was regenerated")
        node["name"] = unique(str(node.get("name") or tid))
        trigger_name[tid] = node["name"]
        nodes.insert(len(trigger_name) - 1, node)
    nodes += copy.deepcopy(detached)

    entry = steps[0]["id"] if steps else None
    current: dict[str, str | None] = {}
    source_of: dict[str, tuple[str, int]] = {}
    for step in steps:
        sid = step["id"]
        record = step_records.get(sid) if isinstance(step_records.get(sid), dict) else {}
        outputs = record.get("outputs", {}) if isinstance(record, dict) else {}
        if sid in head_of:
            head_record = step_records.get(head_of[sid], {})
            outputs = head_record.get("outputs", {}) if isinstance(head_record, dict) else {}
        for field_ in EDGE_FIELDS:
            tag = f"step {sid} {field_}"
            target = edge_of(step, field_)
            if sid in head_of and target in head_of and head_of[target] == head_of[sid]:
                continue  # a link inside a Switch chain, not a connection
            default = _DEFAULT_OUTPUTS[field_]
            if field_ == "onError" and step.get("type") == "n8n":
                continue
            output = outputs.get(f"{sid} {field_}", default)
            source_of[tag] = (step_name.get(sid, sid), output if isinstance(output, int) else 0)
            current[tag] = step_name.get(target) if target else None
    for trigger in triggers:
        tag = f"trigger {trigger['id']}"
        source_of[tag] = (trigger_name[trigger["id"]], 0)
        native = trigger["id"] not in trigger_records
        current[tag] = step_name.get(entry) if entry else None
        if not native:
            source_of[tag] = (trigger_name[trigger["id"]], -1)  # only where it was wired
    connections = _connections(stored_connections, current, source_of, notes)

    names = {n.get("name") for n in nodes}
    for source, types in connections.items():
        for kind, outputs in types.items() if isinstance(types, dict) else []:
            for entries in outputs if isinstance(outputs, list) else []:
                for entry_ in entries if isinstance(entries, list) else []:
                    if not isinstance(entry_, dict):
                        continue
                    target = entry_.get("node")
                    if not isinstance(target, str) or target not in names:
                        notes.append(f"connection {source} → {target!r} ({kind}) names no node")
    _layout(nodes, steps, step_name, trigger_name)
    order = stored_workflow.get("nodeOrder") or []
    rank = {name: i for i, name in enumerate(order)}
    nodes.sort(key=lambda n: rank.get(n.get("name"), len(rank)))
    top = (
        stored_workflow.get("workflow")
        if isinstance(stored_workflow.get("workflow"), dict)
        else None
    )
    if top is None:
        top = {"name": workflow_name, "settings": {"executionOrder": "v1"}, "pinData": {}}
        zones = {t.get("timezone") for t in triggers if t.get("type") == "schedule"}
        zones.discard(None)
        if len(zones) == 1:
            top["settings"]["timezone"] = zones.pop()
        elif zones:
            notes.append("schedule triggers use several time zones; n8n has one per workflow")
    keys = stored_workflow.get("keys") or ["name", "nodes", "connections", *top]
    workflow: dict[str, Any] = {}
    for key in keys:
        if key == "nodes":
            workflow["nodes"] = nodes
        elif key == "connections":
            workflow["connections"] = connections
        elif key in top:
            workflow[key] = copy.deepcopy(top[key])
    for key, value in top.items():
        workflow.setdefault(key, copy.deepcopy(value))
    workflow.setdefault("nodes", nodes)
    workflow.setdefault("connections", connections)
    return Export(workflow, notes)


_KEY_ORDER = ("parameters", "id", "name", "type", "typeVersion", "position")


def _canonical_keys(node: Mapping[str, Any]) -> list[str]:
    """The key order n8n writes: parameters and identity first, the rest as they come."""
    return [k for k in _KEY_ORDER if k in node] + [k for k in node if k not in _KEY_ORDER]


_IDENTITY = ("id", "name", "position", "webhookId", "notesInFlow")


def _keep_identity(node: dict[str, Any], stored: Mapping[str, Any]) -> None:
    for key in _IDENTITY:
        if key in stored:
            node[key] = copy.deepcopy(stored[key])


def _step_node(
    step: Mapping[str, Any],
    record: Mapping[str, Any] | None,
    by_id: Mapping[str, Mapping[str, Any]],
    workflow: str,
    notes: list[str],
) -> dict[str, Any]:
    sid = step["id"]
    stored = record.get("node") if record else None
    stored = stored if isinstance(stored, dict) else None
    if step.get("type") == "n8n" and record and "digest" not in record:
        block = step.get("n8n", {})
        node = copy.deepcopy(stored or {})
        node["type"] = block.get("nodeType")
        for key, own in (("typeVersion", "typeVersion"), ("parameters", "parameters")):
            if own in block:
                node[key] = copy.deepcopy(block[own])
        if "credentials" in block:
            node["credentials"] = copy.deepcopy(block["credentials"])
        if step.get("description"):
            node["notes"] = step["description"]
        order = record.get("keys")
        keys = order if isinstance(order, list) else []
        return {k: node[k] for k in [*keys, *_canonical_keys(node)] if k in node}
    if stored is not None and record is not None and "digest" in record:
        chain = record.get("chain", [sid])
        if all(c in by_id for c in chain):
            now = digest([content(by_id[c]) for c in chain])
            if now == record["digest"]:
                return copy.deepcopy(stored)
        if len(chain) > 1:
            notes.append(
                f"step {sid} (an n8n Switch) changed in flowpin; its rules cannot be written "
                "back as Switch rules, the original Switch node is kept"
            )
            return copy.deepcopy(stored)
        notes.append(f"step {sid} changed in flowpin: its n8n node was regenerated")
    node = nodes_.fresh_step_node(step, workflow, sid)
    if stored is not None:
        _keep_identity(node, stored)
    return node


def _connections(
    stored: Any,
    current: Mapping[str, str | None],
    source_of: Mapping[str, tuple[str, int]],
    notes: list[str],
) -> dict[str, Any]:
    """The stored connections with tagged entries following the steps' current edges, and
    edges that have no entry yet appended."""
    out: dict[str, Any] = {}
    used: set[str] = set()
    for source, types in stored.items() if isinstance(stored, dict) else []:
        if not isinstance(types, dict):
            out[source] = copy.deepcopy(types)
            continue
        new_types: dict[str, Any] = {}
        for kind, outputs in types.items():
            if not isinstance(outputs, list):
                new_types[kind] = copy.deepcopy(outputs)
                continue
            new_outputs: list[Any] = []
            for entries in outputs:
                if not isinstance(entries, list):
                    new_outputs.append(copy.deepcopy(entries))
                    continue
                kept: list[Any] = []
                for entry in entries:
                    if not isinstance(entry, dict) or TAG not in entry:
                        kept.append(copy.deepcopy(entry))
                        continue
                    tag = entry[TAG]
                    base = {k: copy.deepcopy(v) for k, v in entry.items() if k != TAG}
                    if tag in used:
                        continue
                    used.add(tag)
                    target = current.get(tag)
                    if target is None:
                        notes.append(f"connection {source} → {base.get('node')} removed in flowpin")
                    elif target == base.get("node"):
                        kept.append(base)
                    else:
                        kept.append({"node": target, "type": "main", "index": 0})
                new_outputs.append(kept)
            new_types[kind] = new_outputs
        out[source] = new_types
    for tag, target in current.items():
        if tag in used or target is None:
            continue
        source, output = source_of[tag]
        if output < 0:
            continue
        main = out.setdefault(source, {}).setdefault("main", [])
        while len(main) <= output:
            main.append([])
        main[output].append({"node": target, "type": "main", "index": 0})
    return out


def _layout(
    nodes: list[dict[str, Any]],
    steps: Sequence[Mapping[str, Any]],
    step_name: Mapping[str, str],
    trigger_name: Mapping[str, str],
) -> None:
    """Positions for nodes that have none: triggers in the first column, steps by depth."""
    depth: dict[str, int] = {}
    if steps:
        graph = adjacency(list(steps))
        frontier = [steps[0]["id"]]
        depth[steps[0]["id"]] = 1
        while frontier:
            sid = frontier.pop(0)
            for target in graph.get(sid, []):
                if target not in depth:
                    depth[target] = depth[sid] + 1
                    frontier.append(target)
    column: dict[str, int] = {name: 0 for name in trigger_name.values()}
    for sid, level in depth.items():
        column.setdefault(step_name.get(sid, sid), level)
    rows: dict[int, int] = {}
    for node in nodes:
        if isinstance(node.get("position"), list):
            continue
        x = column.get(node.get("name", ""), max(column.values(), default=0) + 1)
        row = rows.get(x, 0)
        rows[x] = row + 1
        node["position"] = [240 * x, 200 * row]


# --------------------------------------------------------------------------- comparison


def compare(before: Any, after: Any) -> list[Difference]:
    """Structural differences between two n8n workflows: nodes matched by name, key order
    ignored, numbers compared by value (JSON has one number type)."""
    out: list[Difference] = []
    if not isinstance(before, dict) or not isinstance(after, dict):
        _diff(before, after, "", out)
        return out
    for key in _union(before, after):
        if key == "nodes":
            _diff_nodes(before.get("nodes", _MISSING), after.get("nodes", _MISSING), out)
        else:
            _diff(before.get(key, _MISSING), after.get(key, _MISSING), key, out)
    return out


def _union(a: Iterable[str], b: Iterable[str]) -> list[str]:
    keys = list(a)
    seen = set(keys)
    keys += [k for k in b if k not in seen]
    return keys


def _node_key(node: Any, index: int) -> str:
    return (
        node["name"]
        if isinstance(node, dict) and isinstance(node.get("name"), str)
        else f"#{index}"
    )


def _diff_nodes(before: Any, after: Any, out: list[Difference]) -> None:
    if not isinstance(before, list) or not isinstance(after, list):
        _diff(before, after, "nodes", out)
        return
    old = {_node_key(n, i): n for i, n in enumerate(before)}
    new = {_node_key(n, i): n for i, n in enumerate(after)}
    for name in _union(old, new):
        _diff(
            old.get(name, _MISSING),
            new.get(name, _MISSING),
            f"nodes[{json.dumps(name, ensure_ascii=False)}]",
            out,
        )


def _same_scalar(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return bool(a == b)
    return type(a) is type(b) and a == b


def _diff(a: Any, b: Any, path: str, out: list[Difference]) -> None:
    if a is _MISSING or b is _MISSING:
        if not (a is _MISSING and b is _MISSING):
            out.append(Difference(path, a, b))
        return
    if isinstance(a, dict) and isinstance(b, dict):
        for key in _union(a, b):
            sub = (
                f"{path}.{key}"
                if re.match(r"^[A-Za-z_$][\w$]*$", str(key))
                else f"{path}[{json.dumps(key, ensure_ascii=False)}]"
            )
            _diff(a.get(key, _MISSING), b.get(key, _MISSING), sub.lstrip("."), out)
        return
    if isinstance(a, list) and isinstance(b, list):
        for i in range(max(len(a), len(b))):
            _diff(
                a[i] if i < len(a) else _MISSING,
                b[i] if i < len(b) else _MISSING,
                f"{path}[{i}]",
                out,
            )
        return
    if not _same_scalar(a, b):
        out.append(Difference(path, a, b))
