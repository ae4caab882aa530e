"""What changed between two versions of a workflow, and how much it matters.

`flowpin diff`, CI's bump check and the WorkflowVersion status all need the same answer: a
list of changes, each classified as `breaking`, `feature`, `fix` or `none`, from which the
required semver bump follows. Inputs are the `spec` mappings of two schema-valid Workflow
manifests; everything here is a pure function over plain data.

Classification (the rules CI enforces):

- **breaking**: a step removed, retyped or renamed (runs parked on it need a migration), an
  edge change that leaves a step unreachable, a new required input, a removed input, a
  narrowed input type, a trigger removed or retyped.
- **feature**: a step, trigger or optional input added, an input made optional, a widened
  input type.
- **fix**: changed step or trigger configuration, edges that keep every step reachable,
  settings, migrations, input keywords that assert nothing (`default`, `$defs` …).
- **none**: description/title text, and spellings with the same meaning (`next: end` vs no
  `next`, `type: string` vs `type: [string]`, a reordered `enum`).

Steps and triggers are matched by id, never by position, so the cost is linear in the number
of steps; deepdiff is used only to describe *where* inside an already-changed free-form value
(a request body, a map) the difference lies.

Renames: a step whose id disappeared and a step whose id appeared with the same type and
configuration (edges and description aside) are one `step-renamed` change. Pairs are made in
document order when several candidates look alike. The old spec's edges are rewritten through
the rename before comparing, so a pure rename yields only the rename. CEL expressions that
mention `steps.<old-id>` are not rewritten; changing them is a `step-changed`.

Reachability: the first step is the entry; `next`, `condition.then`, `condition.else` and
`onError: goto:<id>` are edges; `end` or absent ends the run. A step that was reachable and
still exists but no longer is becomes a `step-unreachable` change, and every edge change that
dropped an edge to it is breaking. Steps that were already unreachable, and added steps, are
left to validation.

Inputs: the top-level `properties` and `required` give inputs added, removed, made required
or optional. Every schema below them (a property, its nested `properties` and `items`) is
compared keyword by keyword into narrowed (breaking) or widened (feature): `type` (absent = any;
`integer` is inside `number`), `enum`, the bounds (`maxLength`, `maximum`, `exclusiveMaximum`,
`maxItems`, `maxProperties` and their `min` counterparts), `required`, `additionalProperties`.
Assertions that cannot be ordered cheaply (`const`, `pattern`, `format`, `multipleOf`, `allOf`
…) narrow when added or changed and widen when removed; a keyword that both loses and gains
values counts as narrowed.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from controller.model.semver import bump_kind, parse_range, parse_version

ChangeClass = Literal["breaking", "feature", "fix", "none"]
Bump = Literal["major", "minor", "patch", "none"]

#: Most severe first; the order of groups in every renderer.
CHANGE_CLASSES: tuple[ChangeClass, ...] = ("breaking", "feature", "fix", "none")
_RANK: dict[str, int] = {"none": 0, "fix": 1, "feature": 2, "breaking": 3}
_BUMPS: dict[str, Bump] = {"breaking": "major", "feature": "minor", "fix": "patch", "none": "none"}
_BUMP_RANK: dict[str, int] = {"downgrade": -1, "none": 0, "patch": 1, "minor": 2, "major": 3}

#: Step changes that strand runs parked on the old step unless a migration maps it.
STEP_BREAKING_KINDS: frozenset[str] = frozenset({"step-removed", "step-retyped", "step-renamed"})

_KIND = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
_PLAIN_KEY = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$-]*$")
_SHORT = 60  # longest value quoted inside a reason
_PLACES = 3  # places inside a changed value named in a reason before "and N more"


@dataclass(frozen=True)
class Change:
    """One classified difference.

    `path` addresses steps and triggers by id (`spec.steps[welcome].http.url`); `old`/`new`
    are copies of the values there (None when absent), so a Change holding a mapping is not
    hashable. `step_id` names the step for step changes — for a rename, the *old* id, which is
    what parked runs and migrations refer to.
    """

    kind: str
    path: str
    change_class: ChangeClass
    reason: str
    old: Any = None
    new: Any = None
    step_id: str | None = None

    def __post_init__(self) -> None:
        # Kinds are stable ids that CI rules and dashboards match on.
        if not _KIND.match(self.kind):
            raise ValueError(f"change kind {self.kind!r} is not kebab-case")
        if self.change_class not in _RANK:
            raise ValueError(f"change class {self.change_class!r} is not one of {CHANGE_CLASSES}")


def _order(change: Change) -> tuple[int, str, str]:
    return (-_RANK[change.change_class], change.path, change.kind)


@dataclass(frozen=True)
class WorkflowDiff:
    """All changes between two versions, most severe first, then by path.

    The order is imposed on construction so every renderer and every test sees the same one.
    """

    changes: tuple[Change, ...] = ()
    change_class: ChangeClass = field(init=False)

    def __post_init__(self) -> None:
        ordered = tuple(sorted(self.changes, key=_order))
        object.__setattr__(self, "changes", ordered)
        worst: ChangeClass = "none"
        for change in ordered:
            if _RANK[change.change_class] > _RANK[worst]:
                worst = change.change_class
        object.__setattr__(self, "change_class", worst)

    @property
    def breaking(self) -> tuple[Change, ...]:
        """The breaking changes (empty, hence falsy, when there are none)."""
        return tuple(c for c in self.changes if c.change_class == "breaking")

    @property
    def required_bump(self) -> Bump:
        return required_bump(self.change_class)

    def by_class(self) -> dict[ChangeClass, tuple[Change, ...]]:
        """Every class as a key, most severe first, so renderers need no special cases."""
        groups: dict[ChangeClass, list[Change]] = {c: [] for c in CHANGE_CLASSES}
        for change in self.changes:
            groups[change.change_class].append(change)
        return {c: tuple(items) for c, items in groups.items()}


def required_bump(change_class: str) -> Bump:
    """The smallest semver bump a change class needs (0.x versions get no special rule)."""
    try:
        return _BUMPS[change_class]
    except KeyError:
        raise ValueError(
            f"change class {change_class!r} is not one of {', '.join(CHANGE_CLASSES)}"
        ) from None


# --------------------------------------------------------------------------- helpers


def _category(value: object) -> str:
    # bool is an int and 1 == 1.0 in Python, but `true`, `1` and `1.0` differ in a request body.
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, Mapping):
        return "map"
    if isinstance(value, list | tuple):
        return "seq"
    return type(value).__name__


def _same(a: object, b: object) -> bool:
    """Structural equality that, unlike `==`, keeps `true`, `1` and `1.0` apart."""
    if a is b:
        return True
    kind = _category(a)
    if kind != _category(b):
        return False
    if kind == "map":
        assert isinstance(a, Mapping) and isinstance(b, Mapping)
        return len(a) == len(b) and all(k in b and _same(v, b[k]) for k, v in a.items())
    if kind == "seq":
        assert isinstance(a, list | tuple) and isinstance(b, list | tuple)
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    # NaN is not equal to itself, yet the same `.nan` in both files is no change.
    return bool(a == b) or (kind == "float" and a != a and b != b)


def _key(name: object) -> str:
    text = str(name)
    if _PLAIN_KEY.match(text):
        return f".{text}"
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'["{escaped}"]'


def _join(base: str, *keys: object) -> str:
    return base + "".join(_key(k) for k in keys)


def _step_path(step_id: str, *keys: object) -> str:
    return _join(f"spec.steps[{step_id}]", *keys)


def _trigger_path(trigger_id: str, *keys: object) -> str:
    return _join(f"spec.triggers[{trigger_id}]", *keys)


def _copy(value: Any) -> Any:
    # Changes must not alias the caller's (mutable) manifests.
    return copy.deepcopy(value) if isinstance(value, Mapping | list) else value


def _union(a: Iterable[str], b: Iterable[str]) -> list[str]:
    seen = dict.fromkeys(a)
    seen.update(dict.fromkeys(b))
    return list(seen)


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _by_id(items: object) -> dict[str, Mapping[str, Any]]:
    """Items of a list keyed by `id`; the first of duplicate ids wins (validation reports it)."""
    out: dict[str, Mapping[str, Any]] = {}
    if isinstance(items, list):
        for item in items:
            if isinstance(item, Mapping) and isinstance(item.get("id"), str):
                out.setdefault(item["id"], item)
    return out


def _short(value: object) -> str | None:
    """The value as JSON when it is short enough to quote in a sentence."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return None
    return text if len(text) <= _SHORT else None


def _places(old: object, new: object) -> list[str]:
    """Where inside two changed containers they differ, as `to`, `headers.X`, `items[2]`."""
    from deepdiff import DeepDiff  # imported on first use: ~0.1 s that most commands skip

    tree = DeepDiff(old, new, view="tree", threshold_to_diff_deeper=0)
    places = set()
    for levels in tree.values():
        for level in levels:
            parts: list[Any] = level.path(output_format="list") or []
            text = "".join(f"[{p}]" if isinstance(p, int) else _key(p) for p in parts)
            places.add(text.removeprefix(".") or "the top level")
    return sorted(places)


def _what_changed(old: object, new: object) -> str:
    """A verb phrase for a sentence: `changed from "1m" to "5m"`, `changed at to, cc`."""
    if old is None:
        quoted = _short(new)
        return f"added ({quoted})" if quoted else "added"
    if new is None:
        return "removed"
    before, after = _short(old), _short(new)
    if before is not None and after is not None:
        return f"changed from {before} to {after}"
    if isinstance(old, Mapping | list) and isinstance(new, Mapping | list):
        places = _places(old, new)
        if places:
            shown = ", ".join(places[:_PLACES])
            more = len(places) - _PLACES
            return f"changed at {shown}" + (f" and {more} more" if more > 0 else "")
    return "changed"


# --------------------------------------------------------------------------- steps

_EDGE_LABELS = ("next", "condition.then", "condition.else", "onError")
_STEP_NOT_CONFIG = frozenset({"id", "type", "description", "next", "onError"})
# Blocks compared key by key so paths point at `http.url`, not at the whole `http` block.
_STEP_BLOCKS = frozenset({"http", "wait", "condition", "set", "fail", "log", "n8n", "retry"})


def _target(value: object) -> str | None:
    return value if isinstance(value, str) and value and value != "end" else None


def _raw_edge(step: Mapping[str, Any], label: str) -> Any:
    if label.startswith("condition."):
        return _mapping(step.get("condition")).get(label.removeprefix("condition."))
    return step.get(label)


def _goto(on_error: object) -> str | None:
    if isinstance(on_error, str) and on_error.startswith("goto:"):
        return _target(on_error.removeprefix("goto:"))
    return None


def _edges(step: Mapping[str, Any]) -> dict[str, str | None]:
    condition = _mapping(step.get("condition"))
    return {
        "next": _target(step.get("next")),
        "condition.then": _target(condition.get("then")),
        "condition.else": _target(condition.get("else")),
        "onError": _goto(step.get("onError")),
    }


def _reachable(edges: Mapping[str, Mapping[str, str | None]], entry: str | None) -> set[str]:
    seen: set[str] = set()
    stack = [entry] if entry is not None and entry in edges else []
    seen.update(stack)
    while stack:
        for target in edges[stack.pop()].values():
            if target is not None and target not in seen and target in edges:
                seen.add(target)
                stack.append(target)
    return seen


def _first_id(steps: object) -> str | None:
    if isinstance(steps, list) and steps and isinstance(steps[0], Mapping):
        first = steps[0].get("id")
        return first if isinstance(first, str) else None
    return None


def _content_key(step: Mapping[str, Any]) -> str:
    """What must match for a rename: type and configuration, without id, edges or text."""
    body = {k: v for k, v in step.items() if k not in ("id", "next", "description")}
    condition = body.get("condition")
    if isinstance(condition, Mapping):
        body["condition"] = {k: v for k, v in condition.items() if k not in ("then", "else")}
    if _goto(body.get("onError")) is not None:
        body["onError"] = "goto:"
    return json.dumps(body, sort_keys=True, default=str)


def _detect_renames(
    old: Mapping[str, Mapping[str, Any]], new: Mapping[str, Mapping[str, Any]]
) -> dict[str, str]:
    added: dict[str, list[str]] = {}
    for sid, step in new.items():
        if sid not in old:
            added.setdefault(_content_key(step), []).append(sid)
    renames: dict[str, str] = {}
    if not added:
        return renames
    for sid, step in old.items():
        if sid in new:
            continue
        candidates = added.get(_content_key(step))
        if candidates:
            renames[sid] = candidates.pop(0)
    return renames


def _error_mode(on_error: object) -> str:
    if isinstance(on_error, str) and on_error.startswith("goto:"):
        return "goto"
    return on_error if isinstance(on_error, str) else "fail"


def _spelled(value: object) -> str:
    return "nothing" if value is None else (_short(value) or "a long value")


def _describe_target(target: str | None) -> str:
    return f"step {target}" if target is not None else "the end of the run"


def _on_error_action(raw: object) -> tuple[str, str]:
    """What a failed step does, as ("goes to step x", "going to step x"): onError has no
    `end`; without a goto the run fails (`fail`, the default) or follows `next`."""
    target = _goto(raw)
    if target is not None:
        return f"goes to step {target}", f"going to step {target}"
    if _error_mode(raw) == "continue":
        return "continues with next", "continuing with next"
    return "fails the run", "failing the run"


@dataclass(frozen=True)
class _EdgeChange:
    """An edge change waiting for reachability to decide its class."""

    step_id: str | None
    path: str
    subject: str
    old_raw: Any
    new_raw: Any
    old_target: str | None
    new_target: str | None
    on_error: bool = False


def _diff_steps(old_list: object, new_list: object) -> list[Change]:
    old, new = _by_id(old_list), _by_id(new_list)
    renames = _detect_renames(old, new)
    renamed_to = set(renames.values())

    def mapped(target: str | None) -> str | None:
        return renames.get(target, target) if target is not None else None

    out: list[Change] = []
    for sid, step in old.items():
        if sid in renames:
            out.append(_renamed(sid, renames[sid], step))
        elif sid not in new:
            out.append(
                Change(
                    "step-removed",
                    _step_path(sid),
                    "breaking",
                    f"step {sid} removed: runs parked on it cannot continue",
                    old=_copy(step),
                    step_id=sid,
                )
            )
    for sid, step in new.items():
        if sid not in old and sid not in renamed_to:
            out.append(
                Change(
                    "step-added",
                    _step_path(sid),
                    "feature",
                    f"step {sid} ({step.get('type')}) added",
                    new=_copy(step),
                    step_id=sid,
                )
            )

    old_edges = {sid: _edges(step) for sid, step in old.items()}
    new_edges = {sid: _edges(step) for sid, step in new.items()}
    pending: list[_EdgeChange] = []
    for old_id, o in old.items():
        new_id = renames.get(old_id, old_id)
        n = new.get(new_id)
        if n is None or (old_id == new_id and _same(o, n)):
            continue
        out.extend(_diff_step_body(new_id, o, n))
        for label in _EDGE_LABELS:
            before, after = mapped(old_edges[old_id][label]), new_edges[new_id][label]
            raw_before, raw_after = _raw_edge(o, label), _raw_edge(n, label)
            path = _step_path(new_id, *label.split("."))
            if before != after:
                subject = f"step {new_id}: {label}"
                pending.append(
                    _EdgeChange(
                        new_id,
                        path,
                        subject,
                        raw_before,
                        raw_after,
                        before,
                        after,
                        on_error=label == "onError",
                    )
                )
            elif label == "onError" and _error_mode(raw_before) != _error_mode(raw_after):
                out.append(
                    Change(
                        "step-changed",
                        path,
                        "fix",
                        f"step {new_id}: onError {_what_changed(raw_before, raw_after)}",
                        old=raw_before,
                        new=raw_after,
                        step_id=new_id,
                    )
                )
            elif not _same(_rename_raw(raw_before, label, renames), raw_after):
                out.append(
                    Change(
                        "edge-changed" if label != "onError" else "step-changed",
                        path,
                        "none",
                        f"step {new_id}: {label} written as {_spelled(raw_after)} instead of "
                        f"{_spelled(raw_before)}, which means the same",
                        old=raw_before,
                        new=raw_after,
                        step_id=new_id,
                    )
                )

    old_entry, new_entry = mapped(_first_id(old_list)), _first_id(new_list)
    if old_entry != new_entry and old_entry is not None and new_entry is not None:
        pending.append(
            _EdgeChange(
                None,
                "spec.steps",
                "the entry step",
                _first_id(old_list),
                new_entry,
                old_entry,
                new_entry,
            )
        )

    was_reachable = {mapped(s) for s in _reachable(old_edges, _first_id(old_list))}
    reachable = _reachable(new_edges, new_entry)
    stranded = {s for s in was_reachable if s is not None and s in new and s not in reachable}
    out.extend(_classify_edge(e, stranded, reachable, new) for e in pending)
    for sid in stranded:
        out.append(
            Change(
                "step-unreachable",
                _step_path(sid),
                "breaking",
                f"step {sid} can no longer be reached from the entry step {new_entry}: "
                "new runs never get there",
                step_id=sid,
            )
        )
    return out


def _rename_raw(raw: Any, label: str, renames: Mapping[str, str]) -> Any:
    """An old edge value as the new spec would spell it after the renames."""
    if not isinstance(raw, str):
        return raw
    if label == "onError":
        target = _goto(raw)
        return f"goto:{renames.get(target, target)}" if target is not None else raw
    return renames.get(raw, raw)


def _classify_edge(
    edge: _EdgeChange, stranded: set[str], reachable: set[str], present: Mapping[str, object]
) -> Change:
    """Breaking only when the edge it replaced was the last way to a step that still exists."""
    goes = _describe_target(edge.new_target)
    was, ending = f"step {edge.old_target}", "ending the run"
    if edge.step_id is None:
        head, kind = f"runs now start at {goes}", "entry-changed"
    elif edge.on_error:
        head, kind = f"{edge.subject} now {_on_error_action(edge.new_raw)[0]}", "edge-changed"
        was, ending = f"going to step {edge.old_target}", _on_error_action(edge.old_raw)[1]
    else:
        head, kind = f"{edge.subject} now goes to {goes}", "edge-changed"
    cls: ChangeClass = "fix"
    if edge.old_target is None:
        reason = f"{head} instead of {ending}"
    elif edge.old_target in stranded:
        cls = "breaking"
        reason = f"{head} instead of {was}, which leaves step {edge.old_target} unreachable"
    elif edge.old_target not in present:
        reason = f"{head} instead of {was}, which was removed"
    elif edge.old_target in reachable:
        reason = f"{head} instead of {was}, which stays reachable"
    else:
        reason = f"{head} instead of {was}, which was unreachable already"
    return Change(
        kind, edge.path, cls, reason, old=edge.old_raw, new=edge.new_raw, step_id=edge.step_id
    )


def _renamed(old_id: str, new_id: str, step: Mapping[str, Any]) -> Change:
    return Change(
        "step-renamed",
        _step_path(old_id, "id"),
        "breaking",
        f"step {old_id} renamed to {new_id} with the same {step.get('type')} configuration: "
        f"runs parked on {old_id} need a migration mapping",
        old=old_id,
        new=new_id,
        step_id=old_id,
    )


def _diff_step_body(sid: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    """Type, configuration and description of one step present in both versions."""
    out: list[Change] = []
    if not _same(old.get("description"), new.get("description")):
        out.append(
            Change(
                "description-changed",
                _step_path(sid, "description"),
                "none",
                f"step {sid}: description "
                f"{_what_changed(old.get('description'), new.get('description'))} (text only)",
                old=_copy(old.get("description")),
                new=_copy(new.get("description")),
                step_id=sid,
            )
        )
    old_type, new_type = old.get("type"), new.get("type")
    if old_type != new_type:
        # The configuration of a retyped step is a new step's; listing it adds nothing.
        out.append(
            Change(
                "step-retyped",
                _step_path(sid, "type"),
                "breaking",
                f"step {sid} changed type from {old_type} to {new_type}: runs parked on it "
                "cannot continue as they were",
                old=old_type,
                new=new_type,
                step_id=sid,
            )
        )
        return out
    for key in _union(old, new):
        if key in _STEP_NOT_CONFIG:
            continue
        before, after = old.get(key), new.get(key)
        if key == "condition":
            before, after = _without_branches(before), _without_branches(after)
        if _same(before, after):
            continue
        if key in _STEP_BLOCKS and isinstance(before, Mapping) and isinstance(after, Mapping):
            for sub in _union(before, after):
                if not _same(before.get(sub), after.get(sub)):
                    out.append(_step_changed(sid, (key, sub), before.get(sub), after.get(sub)))
        else:
            out.append(_step_changed(sid, (key,), before, after))
    return out


def _without_branches(condition: Any) -> Any:
    if isinstance(condition, Mapping):
        return {k: v for k, v in condition.items() if k not in ("then", "else")}
    return condition


def _step_changed(sid: str, keys: tuple[str, ...], old: Any, new: Any) -> Change:
    where = _join("", *keys).removeprefix(".")
    return Change(
        "step-changed",
        _step_path(sid, *keys),
        "fix",
        f"step {sid}: {where} {_what_changed(old, new)}",
        old=_copy(old),
        new=_copy(new),
        step_id=sid,
    )


# --------------------------------------------------------------------------- triggers

_TRIGGER_LOSS = {
    "webhook": "webhook calls to it will fail",
    "schedule": "its scheduled runs stop",
    "manual": "starting runs through it by hand will fail",
}


def _diff_triggers(old_list: object, new_list: object) -> list[Change]:
    old, new = _by_id(old_list), _by_id(new_list)
    out: list[Change] = []
    for tid, trigger in old.items():
        if tid not in new:
            loss = _TRIGGER_LOSS.get(str(trigger.get("type")), "whatever used it stops working")
            out.append(
                Change(
                    "trigger-removed",
                    _trigger_path(tid),
                    "breaking",
                    f"trigger {tid} removed: {loss}",
                    old=_copy(trigger),
                )
            )
    for tid, trigger in new.items():
        if tid not in old:
            out.append(
                Change(
                    "trigger-added",
                    _trigger_path(tid),
                    "feature",
                    f"trigger {tid} ({trigger.get('type')}) added",
                    new=_copy(trigger),
                )
            )
    for tid, o in old.items():
        n = new.get(tid)
        if n is None or _same(o, n):
            continue
        if o.get("type") != n.get("type"):
            out.append(
                Change(
                    "trigger-retyped",
                    _trigger_path(tid, "type"),
                    "breaking",
                    f"trigger {tid} changed type from {o.get('type')} to {n.get('type')}: "
                    "whatever started runs through it stops working",
                    old=o.get("type"),
                    new=n.get("type"),
                )
            )
            continue
        for key in _union(o, n):
            if key != "id" and not _same(o.get(key), n.get(key)):
                out.append(
                    Change(
                        "trigger-changed",
                        _trigger_path(tid, key),
                        "fix",
                        f"trigger {tid}: {key} {_what_changed(o.get(key), n.get(key))}",
                        old=_copy(o.get(key)),
                        new=_copy(n.get(key)),
                    )
                )
    return out


# --------------------------------------------------------------------------- inputs

Verdict = Literal["narrowed", "widened", "same", "unordered"]
_ANNOTATIONS = frozenset({"description", "title", "examples", "$comment", "deprecated"})
_UPPER = ("maxLength", "maximum", "exclusiveMaximum", "maxItems", "maxProperties")
_LOWER = ("minLength", "minimum", "exclusiveMinimum", "minItems", "minProperties")
_ALL_TYPES = frozenset({"string", "number", "integer", "boolean", "object", "array", "null"})


def _types(value: object) -> frozenset[str] | None:
    """The accepted types; None accepts every type."""
    if value is None:
        return None
    if isinstance(value, str):
        return frozenset({value})
    if isinstance(value, list) and all(isinstance(t, str) for t in value):
        return frozenset(value)
    return None


def _covers(types: frozenset[str] | None, member: str) -> bool:
    return types is None or member in types or (member == "integer" and "number" in types)


def _type_text(value: object) -> str:
    return "any" if value is None else (_short(value) or "a long list")


def _compare_types(old: object, new: object) -> tuple[Verdict, str]:
    before, after = _types(old), _types(new)
    lost = sorted(t for t in (before or _ALL_TYPES) if not _covers(after, t))
    gained = sorted(t for t in (after or _ALL_TYPES) if not _covers(before, t))
    detail = f"type changed from {_type_text(old)} to {_type_text(new)}"
    if lost:
        return "narrowed", f"{detail}, no longer accepting {', '.join(lost)}"
    if gained:
        return "widened", f"{detail}, now also accepting {', '.join(gained)}"
    return "same", detail


def _values(value: object) -> dict[str, Any] | None:
    if not isinstance(value, list):
        return None
    return {json.dumps(v, sort_keys=True, default=str): v for v in value}


def _compare_enum(old: object, new: object) -> tuple[Verdict, str]:
    before, after = _values(old), _values(new)
    if after is not None and (before is None or set(before) - set(after)):
        if before is None:
            return "narrowed", "enum added, accepting only listed values"
        lost = [before[k] for k in before if k not in after]
        return "narrowed", f"enum lost {_short(lost) or f'{len(lost)} values'}"
    if before is not None and (after is None or set(after) - set(before)):
        if after is None:
            return "widened", "enum removed, accepting any value"
        gained = [after[k] for k in after if k not in before]
        return "widened", f"enum gained {_short(gained) or f'{len(gained)} values'}"
    return "same", "enum reordered or rewritten with the same values"


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _compare_bound(key: str, old: object, new: object) -> tuple[Verdict, str]:
    before, after = _number(old), _number(new)
    if (old is not None and before is None) or (new is not None and after is None):
        return "unordered", f"{key} {_what_changed(old, new)}"
    upper = key in _UPPER
    if after is not None and (before is None or (after < before if upper else after > before)):
        verb = "set" if before is None else ("lowered" if upper else "raised")
        return "narrowed", f"{key} {verb} to {_short(new)}" + _was(old)
    if before is not None and (after is None or (after > before if upper else after < before)):
        verb = "removed" if after is None else ("raised" if upper else "lowered")
        to = f" to {_short(new)}" if after is not None else ""
        return "widened", f"{key} {verb}{to}{_was(old)}"
    return "same", f"{key} written differently with the same value"


def _was(old: object) -> str:
    return f" (was {_short(old)})" if old is not None else ""


def _compare_additional(old: object, new: object) -> tuple[Verdict, str]:
    if new is False:
        return "narrowed", "additionalProperties became false, rejecting unknown keys"
    if old is False:
        return "widened", "additionalProperties is no longer false, accepting unknown keys"
    return "unordered", f"additionalProperties {_what_changed(old, new)}"


#: Assertion keywords whose change cannot be ordered cheaply: adding one or changing its
#: value can reject values the old schema accepted (a new `pattern` is not a superset of the
#: old), so both count as narrowed; removing one only accepts more.
_CONSTRAINTS = frozenset(
    {
        "const",
        "pattern",
        "format",
        "multipleOf",
        "uniqueItems",
        "contains",
        "minContains",
        "maxContains",
        "prefixItems",
        "patternProperties",
        "propertyNames",
        "dependentRequired",
        "dependentSchemas",
        "unevaluatedItems",
        "unevaluatedProperties",
        "allOf",
        "anyOf",
        "oneOf",
        "not",
        "if",
        "then",
        "else",
        "$ref",
    }
)


def _compare_constraint(key: str, old: object, new: object) -> tuple[Verdict, str]:
    if key == "uniqueItems":  # false asserts nothing, like an absent keyword
        old, new = old or None, new or None
    if old is None and new is None:
        return "same", f"{key} written out with its default"
    if new is None:
        return "widened", f"{key} removed{_was(old)}"
    quoted = f" ({_short(new)})" if _short(new) is not None else ""
    if old is None:
        return "narrowed", f"{key} added{quoted}"
    return "narrowed", f"{key} changed{quoted}{_was(old)}"


def _compare_required(old: object, new: object) -> tuple[Verdict, str]:
    before, after = _names(old), _names(new)
    gained = [n for n in after if n not in before]
    lost = [n for n in before if n not in after]
    if gained:
        return "narrowed", f"required gained {', '.join(gained)}"
    if lost:
        return "widened", f"required lost {', '.join(lost)}"
    return "same", "required reordered"


def _compare_keyword(key: str, old: object, new: object) -> tuple[Verdict, str]:
    if key == "type":
        return _compare_types(old, new)
    if key == "enum":
        return _compare_enum(old, new)
    if key in _UPPER or key in _LOWER:
        return _compare_bound(key, old, new)
    if key == "additionalProperties":
        return _compare_additional(old, new)
    if key == "required":
        return _compare_required(old, new)
    if key in _CONSTRAINTS:
        return _compare_constraint(key, old, new)
    return "unordered", f"{key} {_what_changed(old, new)}"


def _input_change(
    path: str, subject: str, verdict: Verdict, detail: str, old: Any, new: Any
) -> Change:
    if verdict == "narrowed":
        return Change(
            "input-type-narrowed",
            path,
            "breaking",
            f"{subject}: {detail}; runs started with values the old version accepted may fail",
            old=_copy(old),
            new=_copy(new),
        )
    if verdict == "widened":
        return Change(
            "input-type-widened", path, "feature", f"{subject}: {detail}", _copy(old), _copy(new)
        )
    cls: ChangeClass = "none" if verdict == "same" else "fix"
    suffix = ", which accepts the same values" if verdict == "same" else ""
    return Change(
        "input-changed", path, cls, f"{subject}: {detail}{suffix}", _copy(old), _copy(new)
    )


def _diff_property(name: str, old: Any, new: Any) -> list[Change]:
    return _diff_schema(_join("spec.inputs.properties", name), f"input {name}", old, new)


def _diff_schema(base: str, subject: str, old: Any, new: Any) -> list[Change]:
    """Keyword by keyword; `properties` and `items` are compared as schemas themselves, so a
    constraint added deep inside an object or array input is classified like a top-level one."""
    if _same(old, new):
        return []
    # Boolean schemas (2020-12): true accepts anything, false nothing.
    if old is False or new is False:
        verdict: Verdict = "narrowed" if new is False else "widened"
        detail = "schema became false, accepting nothing" if new is False else "schema relaxed"
        return [_input_change(base, subject, verdict, detail, old, new)]
    before = {} if old is True or old is None else old
    after = {} if new is True or new is None else new
    if not isinstance(before, Mapping) or not isinstance(after, Mapping):
        return [_input_change(base, subject, "unordered", "schema changed", old, new)]
    out: list[Change] = []
    for key in _union(before, after):
        o, n = before.get(key), after.get(key)
        if _same(o, n):
            continue
        path = _join(base, key)
        if key in _ANNOTATIONS:
            out.append(
                Change(
                    "description-changed",
                    path,
                    "none",
                    f"{subject}: {key} {_what_changed(o, n)} (text only)",
                    _copy(o),
                    _copy(n),
                )
            )
        elif key == "items" and not isinstance(o, list) and not isinstance(n, list):
            out.extend(_diff_schema(path, f"{subject} items", o, n))
        elif key == "properties" and isinstance(o or {}, Mapping) and isinstance(n or {}, Mapping):
            out.extend(_diff_nested_properties(base, subject, before, after))
        else:
            verdict, detail = _compare_keyword(key, o, n)
            out.append(_input_change(path, subject, verdict, detail, o, n))
    return out


def _diff_nested_properties(
    base: str, subject: str, old: Mapping[str, Any], new: Mapping[str, Any]
) -> list[Change]:
    """`properties` of an object-valued input: a property schema added constrains a key that
    was free (unless unknown keys were rejected before); one removed frees it."""
    old_props, new_props = _mapping(old.get("properties")), _mapping(new.get("properties"))
    out: list[Change] = []
    for name in _union(old_props, new_props):
        o, n = old_props.get(name), new_props.get(name)
        path = _join(base, "properties", name)
        inner = f"{subject}.{name}"
        if o is not None and n is not None:
            out.extend(_diff_schema(path, inner, o, n))
        elif n is not None:
            closed = old.get("additionalProperties") is False
            free = n is True or n == {}
            verdict: Verdict = "widened" if closed else ("same" if free else "narrowed")
            detail = f"property {name} added"
            out.append(_input_change(path, subject, verdict, detail, o, n))
        else:  # the key falls to additionalProperties, which may constrain it
            free = new.get("additionalProperties") in (None, True) or _same(
                new.get("additionalProperties"), {}
            )
            verdict = "widened" if free else "narrowed"
            out.append(_input_change(path, subject, verdict, f"property {name} removed", o, n))
    return out


def _names(value: object) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _diff_inputs(old_schema: object, new_schema: object) -> list[Change]:
    old, new = _mapping(old_schema), _mapping(new_schema)
    out: list[Change] = []
    for key in _union(old, new):
        o, n = old.get(key), new.get(key)
        if key == "type":  # run inputs are always an object; writing it out changes nothing
            o, n = o or "object", n or "object"
        if key in ("properties", "required") or _same(o, n):
            continue
        path = _join("spec.inputs", key)
        if key in _ANNOTATIONS:
            out.append(
                Change(
                    "description-changed",
                    path,
                    "none",
                    f"inputs: {key} {_what_changed(o, n)} (text only)",
                    _copy(o),
                    _copy(n),
                )
            )
        else:
            verdict, detail = _compare_keyword(key, o, n)
            out.append(_input_change(path, "inputs", verdict, detail, o, n))

    old_props, new_props = _mapping(old.get("properties")), _mapping(new.get("properties"))
    old_req, new_req = set(_names(old.get("required"))), set(_names(new.get("required")))
    names = _union(_union(old_props, new_props), _union(_names(old.get("required")), new_req))
    for name in names:
        required_path = f"spec.inputs.required[{name}]"
        if name in old_props and name not in new_props:
            out.append(
                Change(
                    "input-removed",
                    _join("spec.inputs.properties", name),
                    "breaking",
                    f"input {name} removed: callers and triggers that still pass it may be "
                    "rejected",
                    old=_copy(old_props[name]),
                )
            )
            continue
        if name in new_req and name not in old_req:
            out.append(
                Change(
                    "input-required-added",
                    required_path,
                    "breaking",
                    f"input {name} is now required: runs started without it fail",
                    new=name,
                )
            )
        elif name in old_req and name not in new_req:
            out.append(
                Change(
                    "input-made-optional",
                    required_path,
                    "feature",
                    f"input {name} is no longer required",
                    old=name,
                )
            )
        if name in new_props and name not in old_props:
            if name not in new_req:
                out.append(
                    Change(
                        "input-optional-added",
                        _join("spec.inputs.properties", name),
                        "feature",
                        f"optional input {name} added",
                        new=_copy(new_props[name]),
                    )
                )
        elif name in old_props:
            out.extend(_diff_property(name, old_props[name], new_props[name]))
    return out


# --------------------------------------------------------------------------- the rest


def _diff_flat(old: object, new: object, base: str, kind: str, what: str) -> list[Change]:
    """Key-by-key comparison of a small mapping (settings)."""
    if _same(old, new):
        return []
    if not isinstance(old, Mapping | None) or not isinstance(new, Mapping | None):
        detail = _what_changed(old, new)
        return [Change(kind, base, "fix", f"{what} {detail}", _copy(old), _copy(new))]
    before, after = _mapping(old), _mapping(new)
    return [
        Change(
            kind,
            _join(base, key),
            "fix",
            f"{what}.{key} {_what_changed(before.get(key), after.get(key))}",
            _copy(before.get(key)),
            _copy(after.get(key)),
        )
        for key in _union(before, after)
        if not _same(before.get(key), after.get(key))
    ]


def _migrations_by_range(value: object) -> dict[str, Mapping[str, Any]]:
    """Migration entries keyed by their `from` range, the only thing that names them."""
    out: dict[str, Mapping[str, Any]] = {}
    for entry in value if isinstance(value, list) else []:
        if not isinstance(entry, Mapping):
            continue
        base = str(entry.get("from"))
        key, n = base, 1
        while key in out:
            n += 1
            key = f"{base} #{n}"
        out[key] = entry
    return out


def _diff_migrations(old_list: object, new_list: object) -> list[Change]:
    old, new = _migrations_by_range(old_list), _migrations_by_range(new_list)
    out: list[Change] = []
    for key in _union(old, new):
        o, n = old.get(key), new.get(key)
        if _same(o, n):
            continue
        if o is None:
            detail = "added"
        elif n is None:
            detail = "removed"
        else:
            detail = _what_changed(o, n)
        out.append(
            Change(
                "migration-changed",
                f"spec.migrations[{key}]",
                "fix",
                f"migration for versions {key} {detail}: runs parked on those versions move "
                "differently",
                _copy(o),
                _copy(n),
            )
        )
    return out


_HANDLED = frozenset(
    {"version", "description", "inputs", "settings", "triggers", "steps", "migrations"}
)


def diff_specs(old: Mapping[str, Any], new: Mapping[str, Any]) -> WorkflowDiff:
    """Classify every difference between two Workflow specs (see the module docstring).

    `spec.version` is not compared: it is expected to differ, and checking the bump against the
    result is the caller's job (`required_bump`, `render_text`).
    """
    changes: list[Change] = []
    if not _same(old.get("description"), new.get("description")):
        changes.append(
            Change(
                "description-changed",
                "spec.description",
                "none",
                f"description {_what_changed(old.get('description'), new.get('description'))}"
                " (text only)",
                old.get("description"),
                new.get("description"),
            )
        )
    changes += _diff_inputs(old.get("inputs"), new.get("inputs"))
    changes += _diff_flat(
        old.get("settings"), new.get("settings"), "spec.settings", "settings-changed", "settings"
    )
    changes += _diff_triggers(old.get("triggers"), new.get("triggers"))
    changes += _diff_steps(old.get("steps"), new.get("steps"))
    changes += _diff_migrations(old.get("migrations"), new.get("migrations"))
    for key in _union(old, new):
        if key not in _HANDLED and not _same(old.get(key), new.get(key)):
            changes.append(
                Change(
                    "spec-changed",
                    _join("spec", key),
                    "fix",
                    f"{key} {_what_changed(old.get(key), new.get(key))}",
                    _copy(old.get(key)),
                    _copy(new.get(key)),
                )
            )
    return WorkflowDiff(tuple(changes))


# --------------------------------------------------------------------------- migrations


def _step_types(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {sid: step.get("type") for sid, step in _by_id(spec.get("steps")).items()}


def _old_step_type(change: Change, new_types: Mapping[str, Any]) -> Any:
    if change.kind == "step-removed":
        return _mapping(change.old).get("type")
    if change.kind == "step-retyped":
        return change.old
    return new_types.get(str(change.new))  # a rename keeps the type


def _applicable_maps(spec: Mapping[str, Any], old_version: str) -> Iterator[Mapping[str, Any]]:
    version = parse_version(old_version)
    entries = spec.get("migrations")
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, Mapping):
            continue
        try:
            selected = parse_range(str(entry.get("from"))).contains(version)
        except ValueError:
            continue  # validation reports the bad range; it covers nothing
        if selected:
            yield _mapping(entry.get("map"))


def unmapped_breaking_changes(
    diff: WorkflowDiff, new_spec: Mapping[str, Any], old_version: str
) -> list[Change]:
    """The breaking changes that no migration of `new_spec` answers for runs on `old_version`.

    Only a removed, retyped or renamed step can be answered: it is covered when *any* migration
    entry whose `from` range contains `old_version` (npm rules: a pre-release only matches a
    range that names one) maps the old step id to a step of `new_spec` with the old step's
    type. Every other breaking change (inputs, triggers, reachability) is never covered, so it
    is always listed: an empty result means the migrations make the upgrade safe for parked
    runs. Raises ValueError when `old_version` is not a semantic version.
    """
    new_types = _step_types(new_spec)
    maps = list(_applicable_maps(new_spec, old_version))
    out: list[Change] = []
    for change in diff.breaking:
        if change.kind in STEP_BREAKING_KINDS and change.step_id is not None:
            wanted = _old_step_type(change, new_types)
            if any(
                (target := m.get(change.step_id)) in new_types and new_types[target] == wanted
                for m in maps
            ):
                continue
        out.append(change)
    return out


# --------------------------------------------------------------------------- renderers

_RESET = "\x1b[0m"
_BOLD = "\x1b[1m"
_COLORS: dict[str, str] = {
    "breaking": "\x1b[31m",
    "feature": "\x1b[32m",
    "fix": "\x1b[33m",
    "none": "\x1b[2m",
}


def _summary(diff: WorkflowDiff, from_version: str, to_version: str) -> str:
    """`breaking: requires a major bump (1.4.0 → 2.0.0)`, saying so when the bump falls short."""
    bump = diff.required_bump
    needs = "no version bump required" if bump == "none" else f"requires a {bump} bump"
    span = f"{from_version} → {to_version}"
    try:
        actual = bump_kind(parse_version(from_version), parse_version(to_version))
    except ValueError:
        actual = None
    if actual is not None and _BUMP_RANK[actual] < _BUMP_RANK[bump]:
        if actual == "downgrade":
            span += " is a downgrade"
        elif actual == "none":
            span += " is no bump"
        else:
            span += f" is only a {actual} bump"
    elif actual is not None and bump != "none" and _BUMP_RANK[actual] > _BUMP_RANK[bump]:
        needs += " or more"
        span += f", a {actual} bump"
    return f"{diff.change_class}: {needs} ({span})"


def render_text(
    diff: WorkflowDiff, workflow: str, from_version: str, to_version: str, color: bool = False
) -> str:
    """For terminals: changes grouped by class, one `  ~ path: reason` line each."""

    def paint(text: str, cls: str) -> str:
        return f"{_BOLD}{_COLORS[cls]}{text}{_RESET}" if color else text

    lines = [f"{workflow} {from_version} → {to_version}"]
    if not diff.changes:
        lines.append("  no changes")
    for cls, changes in diff.by_class().items():
        if not changes:
            continue
        lines.append(paint(f"{cls} ({len(changes)})", cls))
        lines.extend(f"  {paint('~', cls)} {c.path}: {c.reason}" for c in changes)
    lines.append(paint(_summary(diff, from_version, to_version), diff.change_class))
    return "".join(line + "\n" for line in lines)


_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|$~&])")


def _md_text(text: str) -> str:
    # Backslash-escape what GitHub would read as markup: emphasis, links, HTML, math (`$`).
    return " ".join(_MD_SPECIAL.sub(r"\\\1", text).splitlines())


def _md_code(text: str) -> str:
    # Inside a table, `\|` is the only escape GFM honours in a code span.
    body = " ".join(text.replace("|", "\\|").splitlines())
    fence = "``" if "`" in body else "`"
    pad = " " if fence == "``" else ""
    return f"{fence}{pad}{body}{pad}{fence}"


def render_markdown(diff: WorkflowDiff, workflow: str, from_version: str, to_version: str) -> str:
    """For pull-request comments: heading, verdict, and a Class | Change | Where | Why table."""
    lines = [
        f"### {_md_text(workflow)} {_md_text(from_version)} → {_md_text(to_version)}",
        "",
        f"**{_md_text(_summary(diff, from_version, to_version))}**",
        "",
    ]
    if not diff.changes:
        lines.append("No changes.")
    else:
        lines += ["| Class | Change | Where | Why |", "| --- | --- | --- | --- |"]
        lines += [
            f"| {c.change_class} | {_md_code(c.kind)} | {_md_code(c.path)} | {_md_text(c.reason)} |"
            for c in diff.changes
        ]
    return "".join(line + "\n" for line in lines)


def render_json(diff: WorkflowDiff, workflow: str, from_version: str, to_version: str) -> str:
    """For tools: keys in a fixed order, changes in the diff's order."""
    document = {
        "workflow": workflow,
        "from": from_version,
        "to": to_version,
        "changeClass": diff.change_class,
        "requiredBump": diff.required_bump,
        "changes": [
            {
                "kind": c.kind,
                "class": c.change_class,
                "path": c.path,
                "stepId": c.step_id,
                "reason": c.reason,
                "old": c.old,
                "new": c.new,
            }
            for c in diff.changes
        ],
    }
    return json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n"
