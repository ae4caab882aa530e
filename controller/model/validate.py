"""Validation of Workflow and Environment manifests.

The JSON Schemas in `controller/api/schemas/` come first; the semantic rules a schema cannot
express follow, per file (`check_workflow`, `check_environment`) and across the repository
(`check_repository`: names, pins, promotion graph, migration maps). Every problem becomes a
`Finding` with file, line, column and field path. Pure: callers pass file contents, and what
git history knows through the small `History` protocol.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import jsonschema
from jsonschema.exceptions import ValidationError

from controller.api.schemas import load_schema
from controller.model import cel
from controller.model.durations import parse_duration
from controller.model.findings import Finding, PathElement, format_path
from controller.model.graph import END, adjacency, cycles, reachable, step_edges
from controller.model.schedule import validate_cron, validate_timezone
from controller.model.semver import parse_range, parse_version
from controller.model.source_map import LoadedDocument, load_yaml
from controller.model.templates import TemplateSyntaxError, find_templates

KINDS = ("Workflow", "Environment")
LATEST = "latest"
Path = tuple[PathElement, ...]


@dataclass(frozen=True)
class Manifest:
    """A schema-valid manifest file."""

    path: str
    kind: str
    name: str
    data: dict[str, Any]
    document: LoadedDocument

    @property
    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.data["spec"]
        return spec

    def at(self, path: Path, code: str, message: str, severity: str = "error") -> Finding:
        return self.document.finding(path, code, message, severity)


class History(Protocol):
    """What git history knows about versions (beyond the files in the tree)."""

    def versions(self, workflow: str) -> Mapping[str, Mapping[str, Any]]:
        """Version → spec of every version of `workflow` in history (may be empty)."""
        ...

    def has_version(self, workflow: str, version: str) -> bool:
        """Whether `version` of `workflow` is in history (may answer faster than versions)."""
        ...


class NoHistory:
    """Outside a git repository: only the versions in the tree exist."""

    def versions(self, workflow: str) -> Mapping[str, Mapping[str, Any]]:
        return {}

    def has_version(self, workflow: str, version: str) -> bool:
        return False


# --------------------------------------------------------------------------- parsing


@functools.cache
def _validator(kind: str) -> jsonschema.Draft202012Validator:
    schema = load_schema("workflow" if kind == "Workflow" else "environment")
    return jsonschema.Draft202012Validator(schema)


def parse_manifest(content: bytes | str, path: str) -> tuple[Manifest | None, list[Finding]]:
    """Load and schema-check one file. The manifest is None when it has errors."""
    document = load_yaml(content, path)
    if not document.ok:
        return None, list(document.findings)
    keys = document.key_findings()
    if keys:
        return None, list(keys)
    data = document.data
    if not isinstance(data, dict):
        return None, [document.finding((), "not-a-manifest", "expected a mapping with kind")]
    kind = data.get("kind")
    if kind is None:
        return None, [document.finding(("kind",), "schema", "missing required field 'kind'")]
    if kind not in KINDS:
        hint = _did_you_mean(str(kind), KINDS)
        return None, [
            document.finding(
                ("kind",),
                "unknown-kind",
                f"kind must be Workflow or Environment, got {kind!r}{hint}",
            )
        ]
    findings = sorted(_schema_findings(document, data, _validator(kind)))
    if findings:
        return None, findings
    expected_dir = "workflows" if kind == "Workflow" else "environments"
    if expected_dir not in path.split("/")[:-1]:
        findings.append(
            document.finding(
                ("kind",),
                "misplaced-manifest",
                f"a {kind} belongs under {expected_dir}/; flowpin reads {kind}s only there",
                "warning",
            )
        )
    return Manifest(path, kind, data["metadata"]["name"], data, document), findings


def _schema_findings(
    document: LoadedDocument, data: Any, validator: jsonschema.Draft202012Validator
) -> Iterator[Finding]:
    seen: set[tuple[str, str]] = set()
    for error in validator.iter_errors(data):
        for path, message, at_key in _describe(error):
            key = (format_path(path), message)
            if key not in seen:
                seen.add(key)
                yield document.finding(path, "schema", message, at_key=at_key)


def _describe(error: ValidationError) -> Iterator[tuple[Path, str, bool]]:
    """Messages for people: name the field, say what is expected, suggest a spelling."""
    path: Path = tuple(error.absolute_path)
    instance = error.instance
    schema = error.schema if isinstance(error.schema, dict) else {}
    kind = error.validator
    if kind == "required" and isinstance(instance, dict):
        for name in error.validator_value:
            if name not in instance:
                yield (*path, name), f"missing required field {name!r}", False
        return
    if kind == "additionalProperties" and isinstance(instance, dict):
        allowed = list(schema.get("properties", {}))
        for name in instance:
            if name not in allowed:
                yield (*path, name), f"unknown field {name!r}{_did_you_mean(name, allowed)}", True
        return
    if kind == "enum":
        options = ", ".join(str(v) for v in error.validator_value)
        hint = _did_you_mean(str(instance), [str(v) for v in error.validator_value])
        yield path, f"must be one of {options}; got {instance!r}{hint}", False
        return
    if kind == "type":
        expected = error.validator_value
        names = " or ".join(expected) if isinstance(expected, list) else expected
        yield (
            path,
            f"must be {_article(str(names))}, got {_json_type(instance)} {instance!r}",
            False,
        )
        return
    if kind == "oneOf" and all(
        isinstance(branch, dict) and set(branch) == {"required"} for branch in error.validator_value
    ):
        names = [branch["required"][0] for branch in error.validator_value]
        yield path, f"set exactly one of {', '.join(names)}", False
        return
    description = str(schema.get("description", "")).split(". ")[0].rstrip(".")
    if kind in {"pattern", "anyOf", "oneOf"} and description:
        yield path, f"invalid value {instance!r}: expected {_lower_first(description)}", False
        return
    yield path, error.message, False


def _article(name: str) -> str:
    return f"an {name}" if name[:1] in "aeiou" else f"a {name}"


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _did_you_mean(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


# --------------------------------------------------------------------------- workflows

_DASHED_STEP_REF = re.compile(r"\bsteps\.([a-z0-9_]+(?:-[a-z0-9_]+)+)")


def check_workflow(manifest: Manifest) -> list[Finding]:
    spec = manifest.spec
    steps: list[dict[str, Any]] = spec["steps"]
    findings: list[Finding] = []
    findings += _unique_ids(manifest, steps, ("spec", "steps"), "step")
    findings += _unique_ids(manifest, spec.get("triggers", []), ("spec", "triggers"), "trigger")
    findings += _check_edges(manifest, steps)
    findings += _check_graph(manifest, steps)
    ids = {step["id"] for step in steps}
    scope = CelScope.of_workflow(spec)
    for index, step in enumerate(steps):
        findings += _check_step(manifest, step, ("spec", "steps", index), scope)
    for index, trigger in enumerate(spec.get("triggers", [])):
        findings += _check_trigger(manifest, trigger, ("spec", "triggers", index))
    if "inputs" in spec:
        findings += _check_inputs_schema(manifest, spec["inputs"])
    if "settings" in spec and "timeout" in spec["settings"]:
        findings += _check_duration(manifest, spec["settings"]["timeout"], ("spec", "settings"))
    for index, migration in enumerate(spec.get("migrations", [])):
        findings += _check_migration_entry(manifest, migration, ("spec", "migrations", index), ids)
    return findings


def _unique_ids(
    manifest: Manifest, items: Sequence[Mapping[str, Any]], base: Path, what: str
) -> Iterator[Finding]:
    first: dict[str, int] = {}
    for index, item in enumerate(items):
        item_id = item["id"]
        if item_id in first:
            where = format_path((*base, first[item_id]))
            yield manifest.at(
                (*base, index, "id"),
                f"duplicate-{what}-id",
                f"{what} id {item_id!r} is already used by {where}",
            )
        else:
            first[item_id] = index


def _check_edges(manifest: Manifest, steps: list[dict[str, Any]]) -> Iterator[Finding]:
    ids = [step["id"] for step in steps]
    for index, step in enumerate(steps):
        for edge in step_edges(step):
            if edge.target != END and edge.target not in ids:
                hint = _did_you_mean(edge.target, ids)
                yield manifest.at(
                    ("spec", "steps", index, *edge.field),
                    "unknown-step",
                    f"no step {edge.target!r}{hint}; name a step of this workflow or `end`",
                )


def _check_graph(manifest: Manifest, steps: list[dict[str, Any]]) -> Iterator[Finding]:
    graph = adjacency(steps)
    index_of = {step["id"]: i for i, step in reversed(list(enumerate(steps)))}
    entry = steps[0]["id"]
    seen = reachable(graph, entry)
    for step_id, index in sorted(index_of.items(), key=lambda item: item[1]):
        if step_id not in seen:
            yield manifest.at(
                ("spec", "steps", index, "id"),
                "unreachable-step",
                f"step {step_id!r} cannot be reached from the entry step {entry!r}; "
                "point a next, then, else or onError at it, or remove it",
            )
    types = {step["id"]: step["type"] for step in steps}
    for component in cycles(graph):
        if not any(types[member] == "wait" for member in component):
            loop = " → ".join([*component, component[0]])
            yield manifest.at(
                ("spec", "steps", index_of[component[0]], "id"),
                "cycle-without-wait",
                f"steps loop without a wait step ({loop}); a run would spin forever. "
                "Add a wait step to the loop",
            )


def _check_step(
    manifest: Manifest, step: dict[str, Any], path: Path, scope: CelScope
) -> Iterator[Finding]:
    kind = step["type"]
    if "timeout" in step:
        yield from _check_duration(manifest, step["timeout"], (*path, "timeout"))
    retry = step.get("retry", {})
    for field in ("initialDelay", "maxDelay"):
        if field in retry:
            yield from _check_duration(manifest, retry[field], (*path, "retry", field))
    if kind == "condition":
        when = step["condition"]["when"]
        yield from _check_cel(manifest, when, (*path, "condition", "when"), scope)
        yield from _check_boolean(manifest, when, (*path, "condition", "when"))
        if "next" in step:
            yield manifest.at(
                (*path, "next"),
                "ignored-field",
                "a condition step continues with condition.then or condition.else; next is ignored",
                "warning",
            )
    elif kind == "set":
        for name, expression in step["set"].items():
            yield from _check_cel(manifest, expression, (*path, "set", name), scope)
    elif kind == "wait":
        wait = step["wait"]
        if "duration" in wait:
            yield from _check_duration(manifest, wait["duration"], (*path, "wait", "duration"))
        if "until" in wait:
            yield from _check_until(manifest, wait["until"], (*path, "wait", "until"), scope)
    elif kind == "fail" and "next" in step:
        yield manifest.at(
            (*path, "next"), "ignored-field", "a fail step ends the run; next is ignored", "warning"
        )
    for field_path, text in _template_strings(step, path):
        yield from _check_templates(manifest, text, field_path, scope)
    wrong = [
        other
        for other in ("http", "wait", "condition", "set", "fail", "log", "n8n")
        if other in step and other != kind
    ]
    for other in wrong:
        yield manifest.at(
            (*path, other),
            "ignored-field",
            f"a {kind} step does not use {other!r}; remove it or change the type",
        )


def _template_strings(step: Mapping[str, Any], path: Path) -> Iterator[tuple[Path, str]]:
    """Strings that may hold `${ }` templates: request fields and messages."""
    http = step.get("http")
    if step.get("type") == "http" and isinstance(http, Mapping):
        yield (*path, "http", "url"), http["url"]
        for name, value in http.get("headers", {}).items():
            yield (*path, "http", "headers", name), value
        if "body" in http:
            yield from _strings_in(http["body"], (*path, "http", "body"))
    for kind in ("fail", "log"):
        block = step.get(kind)
        if step.get("type") == kind and isinstance(block, Mapping) and "message" in block:
            yield (*path, kind, "message"), block["message"]


def _strings_in(value: Any, path: Path) -> Iterator[tuple[Path, str]]:
    todo: list[tuple[Any, Path]] = [(value, path)]
    while todo:
        item, where = todo.pop()
        if isinstance(item, str):
            yield where, item
        elif isinstance(item, Mapping):
            todo.extend((sub, (*where, str(key))) for key, sub in item.items())
        elif isinstance(item, list):
            todo.extend((sub, (*where, i)) for i, sub in enumerate(item))


def _check_templates(
    manifest: Manifest, text: str, path: Path, scope: CelScope
) -> Iterator[Finding]:
    try:
        templates = find_templates(text)
    except TemplateSyntaxError as error:
        yield manifest.at(path, "template-syntax", f"at character {error.offset + 1}: {error}")
        return
    for template in templates:
        yield from _check_cel(manifest, template.expression, path, scope)


def _check_until(manifest: Manifest, text: str, path: Path, scope: CelScope) -> Iterator[Finding]:
    if "${" in text:
        yield from _check_templates(manifest, text, path, scope)
        return
    import datetime

    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        yield manifest.at(
            path, "invalid-time", f"{text!r} is not an RFC 3339 time such as 2026-01-31T09:00:00Z"
        )
        return
    if moment.tzinfo is None:
        yield manifest.at(
            path, "invalid-time", f"{text!r} has no time zone; add Z or an offset such as +01:00"
        )


@dataclass(frozen=True)
class CelScope:
    """What an expression can read: the variables the engine binds (`roots`;
    controller/engine/steps.py `activation`, a migration's `_activation` in
    controller/model/migration.py; docs/cel.md lists their fields) and, of those, the fields
    this workflow declares. None: no field list to check against."""

    roots: tuple[str, ...]
    where: str  # "expressions" or "a migration's set expressions", for messages
    steps: frozenset[str] | None = None  # step ids
    inputs: frozenset[str] | None = None  # the properties the `inputs` schema names
    inputs_closed: bool = False  # and no other input can arrive
    vars: frozenset[str] | None = None  # what `set` steps and migrations assign

    @classmethod
    def of_workflow(cls, spec: Mapping[str, Any]) -> CelScope:
        # str(): YAML allows `1:` as a key; runs see it as "1" after the JSON round trip.
        assigned = {str(name) for step in spec["steps"] for name in step.get("set") or {}}
        assigned |= {
            str(name) for entry in spec.get("migrations", []) for name in entry.get("set", {})
        }
        inputs, closed = _declared_inputs(spec.get("inputs"))
        return cls(
            roots=("inputs", "run", "steps", "vars"),
            where="expressions",
            steps=frozenset(step["id"] for step in spec["steps"]),
            inputs=inputs,
            inputs_closed=closed,
            vars=frozenset(assigned),
        )


#: A migration's `set` runs against a run of an older version: its inputs and variables are
#: that version's, and it has no `steps`.
MIGRATION_SCOPE = CelScope(roots=("inputs", "run", "vars"), where="a migration's set expressions")

#: Schema keywords that let properties other than `properties` through in ways this check
#: does not follow; with any of them at the top, the inputs are not checked by name.
_OPEN_ENDED = frozenset(
    {"patternProperties", "allOf", "anyOf", "oneOf", "$ref", "if", "dependentSchemas"}
)


def _declared_inputs(schema: Any) -> tuple[frozenset[str] | None, bool]:
    """The input names the `inputs` schema declares, and whether no other can arrive.
    None where the schema does not say, or says other inputs are welcome
    (`additionalProperties: {type: string}`)."""
    if not isinstance(schema, Mapping) or _OPEN_ENDED & schema.keys():
        return None, False
    closed = False in (schema.get("additionalProperties"), schema.get("unevaluatedProperties"))
    if not closed and ("additionalProperties" in schema or "unevaluatedProperties" in schema):
        return None, False
    properties = schema.get("properties")
    if isinstance(properties, Mapping):
        return frozenset(str(name) for name in properties), closed
    return (frozenset(), True) if closed else (None, False)


def _check_cel(
    manifest: Manifest, expression: str, path: Path, scope: CelScope
) -> Iterator[Finding]:
    issue = cel.issue(expression)
    if issue is not None:
        yield manifest.at(
            path,
            "cel-syntax",
            f"invalid CEL expression {expression!r}: {issue.message} "
            f"(at character {issue.column} of the expression)",
        )
        return
    # `steps.send-mail` reads `steps.send` minus `mail`: one finding says so.
    matches = list(_DASHED_STEP_REF.finditer(expression))
    dashed = [m[1] for m in matches]
    for step_id in dashed if scope.steps is not None else []:
        yield manifest.at(
            path,
            "cel-step-reference",
            f"`steps.{step_id}` reads as a subtraction in CEL; "
            f'write steps["{step_id}"] for step ids that contain "-"',
        )
    parts = {part for step_id in dashed for part in step_id.split("-")}
    dashed_at = {m.start() + 1 for m in matches}
    for free in cel.free_names(expression):
        if free.name in scope.roots or free.name in parts:
            continue
        hint = _did_you_mean(free.name, scope.roots)
        if free.name == "steps":
            hint = " (not available in migrations)"
        yield manifest.at(
            path,
            "cel-unknown-name",
            f"unknown name {free.name!r}{hint} at character {free.offset} of CEL expression "
            f"{expression!r}; {scope.where} can read {', '.join(scope.roots)}",
        )
    reads = [read for read in cel.fields_read(expression) if read.offset not in dashed_at]
    tested = {(read.root, read.field) for read in reads if read.tested}
    first: dict[tuple[str, str], cel.FieldRead] = {}
    for read in reads:
        first.setdefault((read.root, read.field), read)
    for key, read in first.items():
        if key not in tested or read.root == "steps":  # has(): the author expects it missing
            yield from _check_field(manifest, expression, path, scope, read)


def _check_field(
    manifest: Manifest, expression: str, path: Path, scope: CelScope, read: cel.FieldRead
) -> Iterator[Finding]:
    """A field of `steps`, `inputs` or `vars` that this workflow never provides fails every
    run that evaluates it."""
    where = f"at character {read.offset} of CEL expression {expression!r}"
    if read.root == "steps" and scope.steps is not None:
        if read.field not in scope.steps:
            yield manifest.at(
                path,
                "unknown-step",
                f"expression reads steps.{read.field}, but there is no step {read.field!r}"
                f"{_did_you_mean(read.field, scope.steps)}",
            )
    elif read.root == "inputs" and scope.inputs is not None and read.field not in scope.inputs:
        hint = _did_you_mean(read.field, scope.inputs)
        if scope.inputs_closed:
            yield manifest.at(
                path,
                "cel-unknown-input",
                f"inputs.{read.field}{hint} {where}: spec.inputs allows no such property "
                "(additionalProperties: false), so no run has it",
            )
        else:
            yield manifest.at(
                path,
                "cel-unknown-input",
                f"inputs.{read.field}{hint} {where} is not declared in spec.inputs.properties; "
                "a run without it fails here. Declare it",
                "warning",
            )
    elif read.root == "vars" and scope.vars is not None and read.field not in scope.vars:
        yield manifest.at(
            path,
            "cel-unknown-var",
            f"vars.{read.field}{_did_you_mean(read.field, scope.vars)} {where} is set by no "
            "`set` step or migration of this workflow; a run fails here unless it started on "
            "an older version that set it",
            "warning",
        )


def _check_boolean(manifest: Manifest, expression: str, path: Path) -> Iterator[Finding]:
    known, value = cel.constant(expression)
    if known and not isinstance(value, bool):
        yield manifest.at(
            path,
            "cel-not-boolean",
            f"condition.when must give true or false, but {expression!r} always gives "
            f"{_short_json(value)}; compare it, e.g. `... == ...`",
        )


def _short_json(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_duration(manifest: Manifest, text: str, path: Path) -> Iterator[Finding]:
    try:
        if parse_duration(text).total_seconds() <= 0:
            yield manifest.at(path, "invalid-duration", f"duration {text!r} must be positive")
    except ValueError as error:
        yield manifest.at(path, "invalid-duration", str(error))


def _check_trigger(manifest: Manifest, trigger: dict[str, Any], path: Path) -> Iterator[Finding]:
    kind = trigger["type"]
    if kind == "schedule":
        problem = validate_cron(trigger["schedule"])
        if problem:
            yield manifest.at((*path, "schedule"), "invalid-schedule", problem)
        if "startingDeadline" in trigger:
            yield from _check_duration(
                manifest, trigger["startingDeadline"], (*path, "startingDeadline")
            )
    else:
        for field in ("schedule", "timezone", "startingDeadline"):
            if field in trigger:
                yield manifest.at(
                    (*path, field),
                    "ignored-field",
                    f"{field} applies to schedule triggers only",
                    "warning",
                )
    if "timezone" in trigger:
        problem = validate_timezone(trigger["timezone"])
        if problem:
            yield manifest.at((*path, "timezone"), "invalid-timezone", problem)


def _check_inputs_schema(manifest: Manifest, inputs: Mapping[str, Any]) -> Iterator[Finding]:
    """The meta-schema, then what it cannot see but every run would trip over: a `$ref`
    that points nowhere and a `pattern` that is not a regular expression."""
    for error in _meta_validator().iter_errors(inputs):
        yield manifest.at(
            ("spec", "inputs", *error.absolute_path),
            "invalid-inputs-schema",
            f"inputs is not a valid JSON Schema: {_meta_schema_message(error)}",
        )
    resolver = _inputs_resolver(inputs)
    for where, schema in _subschemas(inputs, ("spec", "inputs")):
        ref = schema.get("$ref")
        if isinstance(ref, str) and resolver is not None:
            problem = _ref_problem(resolver, ref)
            if problem:
                yield manifest.at(
                    (*where, "$ref"),
                    "invalid-inputs-schema",
                    f"inputs is not a valid JSON Schema: $ref {ref!r} {problem}",
                )
        for field, regex, at_key in _regexes(schema):
            problem = _regex_problem(regex)
            if problem:
                yield manifest.document.finding(
                    (*where, *field),
                    "invalid-inputs-schema",
                    f"inputs is not a valid JSON Schema: {field[0]} "
                    f"{'key ' if at_key else ''}{regex!r} {problem}",
                    at_key=at_key,
                )


def _regexes(schema: Mapping[str, Any]) -> Iterator[tuple[Path, str, bool]]:
    """(field, regex, whether the regex is the key) of `pattern` and `patternProperties`."""
    pattern = schema.get("pattern")
    if isinstance(pattern, str):
        yield ("pattern",), pattern, False
    pattern_properties = schema.get("patternProperties")
    for key in pattern_properties if isinstance(pattern_properties, Mapping) else ():
        yield ("patternProperties", key), str(key), True


#: Keywords whose value is a schema, a list of schemas or a name → schema mapping (2020-12,
#: plus the older `definitions`, `dependencies` and list-valued `items`).
_SCHEMA_KEYWORDS = frozenset(
    {"additionalProperties", "contains", "else", "if", "items", "not", "propertyNames"}
    | {"then", "unevaluatedItems", "unevaluatedProperties", "additionalItems"}
)
_SCHEMA_LISTS = frozenset({"allOf", "anyOf", "oneOf", "prefixItems", "items"})
_SCHEMA_MAPS = frozenset(
    {"$defs", "definitions", "dependentSchemas", "patternProperties", "properties"}
)


def _subschemas(schema: Any, path: Path) -> Iterator[tuple[Path, Mapping[str, Any]]]:
    """Every schema object inside `schema` with its path, skipping data (`enum`, `const`,
    `default`, `examples`) so a property named `pattern` is not taken for the keyword, and
    subtrees with their own `$id` (their refs resolve against another base)."""
    todo: list[tuple[Any, Path]] = [(schema, path)]
    while todo:
        node, where = todo.pop()
        if not isinstance(node, Mapping) or (where != path and "$id" in node):
            continue
        yield where, node
        for key, value in node.items():
            if key in _SCHEMA_KEYWORDS and isinstance(value, Mapping):
                todo.append((value, (*where, key)))
            elif key in _SCHEMA_LISTS and isinstance(value, list):
                todo.extend((item, (*where, key, i)) for i, item in enumerate(value))
            elif key in _SCHEMA_MAPS and isinstance(value, Mapping):
                todo.extend((item, (*where, key, str(name))) for name, item in value.items())


_INPUTS_URI = "urn:flowpin:inputs"


def _inputs_resolver(inputs: Mapping[str, Any]) -> Any:
    """A resolver that knows `inputs` and the published meta-schemas, and fetches nothing
    (neither does the engine when it validates a run's inputs)."""
    from jsonschema_specifications import REGISTRY  # type: ignore[import-untyped]
    from referencing.jsonschema import DRAFT202012

    if "$id" in inputs:
        return None  # refs resolve against the author's own base; leave those to the engine
    resource = DRAFT202012.create_resource(dict(inputs))
    return REGISTRY.with_resource(_INPUTS_URI, resource).resolver(base_uri=_INPUTS_URI)


def _ref_problem(resolver: Any, ref: str) -> str | None:
    from referencing.exceptions import Unresolvable

    try:
        target = resolver.lookup(ref).contents
    except Unresolvable:
        if ref.startswith("#"):
            return "points at nothing in inputs (a local ref looks like #/$defs/name)"
        return "cannot be resolved: flowpin fetches no remote schemas; copy it into $defs"
    except Exception as error:  # a malformed reference; a finding beats a crash
        return f"cannot be resolved: {error}"
    if not isinstance(target, Mapping | bool):
        return f"points at {_json_type(target)} {_short_json(target)}, not a schema"
    return None


def _regex_problem(pattern: str) -> str | None:
    try:
        re.compile(pattern)
    except re.error as error:
        where = f" at character {error.pos + 1}" if error.pos is not None else ""
        return f"is not a valid regular expression: {error.msg}{where}"
    return None


@functools.cache
def _meta_validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(jsonschema.Draft202012Validator.META_SCHEMA)


_JSON_TYPES = ("array", "boolean", "integer", "null", "number", "object", "string")


def _meta_schema_message(error: ValidationError) -> str:
    """jsonschema words meta-schema errors for schema authors ("not valid under any of the
    given schemas"); say which keyword and what it accepts."""
    where = list(error.absolute_path)
    if "type" in where[-2:]:
        value = error.instance
        if isinstance(value, str):
            return (
                f"unknown type {value!r}{_did_you_mean(value, _JSON_TYPES)}; "
                f"use one of {', '.join(_JSON_TYPES)}"
            )
    if error.validator in {"anyOf", "oneOf"} and error.context:
        return str(min(error.context, key=lambda sub: len(sub.message)).message)
    return str(error.message)


def _check_migration_entry(
    manifest: Manifest, migration: Mapping[str, Any], path: Path, ids: set[str]
) -> Iterator[Finding]:
    try:
        parse_range(migration["from"])
    except ValueError as error:
        yield manifest.at((*path, "from"), "invalid-range", str(error))
    for old, new in migration.get("map", {}).items():
        if new not in ids:
            yield manifest.at(
                (*path, "map", old),
                "unknown-step",
                f"maps {old!r} to {new!r}, which is not a step of this version"
                f"{_did_you_mean(new, ids)}",
            )
    for name, expression in migration.get("set", {}).items():
        yield from _check_cel(manifest, expression, (*path, "set", name), MIGRATION_SCOPE)


# --------------------------------------------------------------------------- environments


def check_environment(manifest: Manifest) -> list[Finding]:
    spec = manifest.spec
    findings: list[Finding] = []
    promotion = spec.get("promotion", {})
    if "soak" in promotion:
        findings += _check_duration(manifest, promotion["soak"], ("spec", "promotion", "soak"))
    for index, window in enumerate(promotion.get("windows", [])):
        path: Path = ("spec", "promotion", "windows", index)
        problem = validate_cron(window["schedule"])
        if problem:
            findings.append(manifest.at((*path, "schedule"), "invalid-schedule", problem))
        findings += _check_duration(manifest, window["duration"], (*path, "duration"))
        if "timezone" in window:
            problem = validate_timezone(window["timezone"])
            if problem:
                findings.append(manifest.at((*path, "timezone"), "invalid-timezone", problem))
    rollout = spec.get("rollout", {})
    steps = rollout.get("steps", [])
    if rollout.get("strategy") == "canary" and not steps:
        findings.append(
            manifest.at(
                ("spec", "rollout", "steps"),
                "canary-without-steps",
                "a canary rollout needs steps, such as [{weight: 10, pause: 10m}]",
            )
        )
    if rollout.get("strategy", "immediate") == "immediate" and steps:
        findings.append(
            manifest.at(
                ("spec", "rollout", "steps"),
                "ignored-field",
                "steps apply to canary rollouts only",
                "warning",
            )
        )
    weights = [step["weight"] for step in steps]
    for index in range(1, len(weights)):
        if weights[index] <= weights[index - 1]:
            findings.append(
                manifest.at(
                    ("spec", "rollout", "steps", index, "weight"),
                    "canary-weights",
                    f"canary weights must increase: {weights[index]} follows {weights[index - 1]}",
                )
            )
    for index, step in enumerate(steps):
        if "pause" in step:
            findings += _check_duration(
                manifest, step["pause"], ("spec", "rollout", "steps", index, "pause")
            )
    if "window" in rollout.get("analysis", {}):
        findings += _check_duration(
            manifest, rollout["analysis"]["window"], ("spec", "rollout", "analysis", "window")
        )
    if "interval" in spec.get("migration", {}):
        findings += _check_duration(
            manifest, spec["migration"]["interval"], ("spec", "migration", "interval")
        )
    return findings


# --------------------------------------------------------------------------- repository


def check_repository(
    manifests: Sequence[Manifest],
    history: History,
    changed: set[str] | None = None,
    unchanged_migrations: set[str] | None = None,
    base_pins: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Finding]:
    """Rules across files: unique names, pins, the promotion graph, migration maps.

    With `changed` (paths), the rules that read git history run only for those files: the
    others were checked when they were merged, and reading history for them would make a
    pull request's check cost follow the length of history instead of the change. For the
    same reason, workflows named in `unchanged_migrations` (their `migrations` equal the
    base's) skip the migration checks against history, and a pin whose value equals the
    base's (`base_pins`: environment → pins) is not looked up again."""
    findings: list[Finding] = []
    workflows = _unique_names([m for m in manifests if m.kind == "Workflow"], "workflow", findings)
    environments = _unique_names(
        [m for m in manifests if m.kind == "Environment"], "environment", findings
    )

    def in_scope(manifest: Manifest) -> bool:
        return changed is None or manifest.path in changed

    for environment in environments.values():
        findings += _check_pins(
            environment,
            workflows,
            history,
            in_scope(environment),
            (base_pins or {}).get(environment.name, {}),
        )
        source = environment.spec.get("promotion", {}).get("from")
        if source is not None and source not in environments:
            findings.append(
                environment.at(
                    ("spec", "promotion", "from"),
                    "unknown-environment",
                    f"promotes from {source!r}, but there is no such environment"
                    f"{_did_you_mean(source, environments)}",
                )
            )
    findings += _check_promotion_cycles(environments)
    for workflow in workflows.values():
        if in_scope(workflow) and workflow.name not in (unchanged_migrations or set()):
            findings += _check_migration_sources(workflow, history)
    return findings


def _unique_names(
    manifests: Sequence[Manifest], what: str, findings: list[Finding]
) -> dict[str, Manifest]:
    by_name: dict[str, Manifest] = {}
    for manifest in sorted(manifests, key=lambda m: m.path):
        if manifest.name in by_name:
            findings.append(
                manifest.at(
                    ("metadata", "name"),
                    f"duplicate-{what}",
                    f"{what} {manifest.name!r} is already defined in {by_name[manifest.name].path}",
                )
            )
        else:
            by_name[manifest.name] = manifest
    return by_name


def _check_pins(
    environment: Manifest,
    workflows: Mapping[str, Manifest],
    history: History,
    read_history: bool = True,
    base_pins: Mapping[str, Any] | None = None,
) -> Iterator[Finding]:
    """Pins name workflows, and versions in history; a pin equal to its base value was
    looked up when it merged."""
    for workflow, pin in environment.spec.get("pins", {}).items():
        path: Path = ("spec", "pins", workflow)
        if workflow not in workflows:
            yield environment.at(
                path,
                "unknown-workflow",
                f"pins {workflow!r}, but no workflow has that name"
                f"{_did_you_mean(workflow, workflows)}",
            )
            continue
        if pin == LATEST:
            continue
        current = workflows[workflow].spec["version"]
        looked_up = read_history and (base_pins or {}).get(workflow) != pin
        if pin != current and looked_up and not history.has_version(workflow, pin):
            yield environment.at(
                path,
                "unknown-version",
                f"pins {workflow} {pin}, but that version is not in git history "
                f"(the workflow is at {current})",
            )


def _check_promotion_cycles(environments: Mapping[str, Manifest]) -> Iterator[Finding]:
    graph = {
        name: [m.spec["promotion"]["from"]]
        if m.spec.get("promotion", {}).get("from") in environments
        else []
        for name, m in environments.items()
    }
    for component in cycles(graph):
        loop = " ← ".join([*component, component[0]])
        for member in component:  # each file of the loop, so a hook on any one fails
            yield environments[member].at(
                ("spec", "promotion", "from"),
                "promotion-cycle",
                f"environments promote from each other in a loop ({loop}); "
                "a version could never be verified upstream",
            )


def _check_migration_sources(workflow: Manifest, history: History) -> Iterator[Finding]:
    known = {**history.versions(workflow.name)}
    known.pop(workflow.spec["version"], None)
    if not known:
        return  # nothing older to check against (a new workflow, or no git history)
    new_types = {step["id"]: step["type"] for step in workflow.spec["steps"]}
    for index, migration in enumerate(workflow.spec.get("migrations", [])):
        path: Path = ("spec", "migrations", index)
        try:
            version_range = parse_range(migration["from"])
        except ValueError:
            continue  # reported by check_workflow
        matching = {
            version: spec for version, spec in known.items() if _in_range(version_range, version)
        }
        if not matching:
            yield workflow.at(
                (*path, "from"),
                "migration-range-empty",
                f"no version in history matches {migration['from']!r}",
                "warning",
            )
            continue
        for old, new in migration.get("map", {}).items():
            old_types = {
                step["type"]
                for spec in matching.values()
                for step in spec.get("steps", [])
                if step.get("id") == old
            }
            if not old_types:
                yield workflow.at(
                    (*path, "map", old),
                    "unknown-step",
                    f"maps step {old!r}, which no version matching {migration['from']!r} has",
                )
            elif new in new_types and new_types[new] not in old_types:
                yield workflow.at(
                    (*path, "map", old),
                    "migration-type-change",
                    f"maps {old!r} ({'/'.join(sorted(old_types))}) to {new!r} "
                    f"({new_types[new]}); a migrated run keeps its step type",
                )


def _in_range(version_range: Any, version: str) -> bool:
    try:
        return bool(version_range.contains(parse_version(version)))
    except ValueError:
        return False


# --------------------------------------------------------------------------- files


def check_files(files: Mapping[str, bytes | str]) -> tuple[list[Manifest], list[Finding]]:
    """Schema and per-file rules for a set of files (path → content)."""
    manifests: list[Manifest] = []
    findings: list[Finding] = []
    for path in sorted(files):
        manifest, problems = parse_manifest(files[path], path)
        findings += problems
        if manifest is None:
            continue
        manifests.append(manifest)
        if manifest.kind == "Workflow":
            findings += check_workflow(manifest)
        else:
            findings += check_environment(manifest)
    return manifests, findings


def validate_manifests(
    files: Mapping[str, bytes | str], history: History | None = None
) -> tuple[list[Manifest], list[Finding]]:
    """Every rule: schema, per-file, and across the repository."""
    manifests, findings = check_files(files)
    findings += check_repository(manifests, history or NoHistory())
    return manifests, sorted(findings)
