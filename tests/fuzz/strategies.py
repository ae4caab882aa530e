"""Hypothesis strategies of the fuzz suite: seeds, byte-level mutations, JSON/YAML values
placed at random paths of valid documents, n8n node mutations, tar/gzip bundles.

Seeds: examples/ (flowpin YAML), tests/fuzz/seeds/ (a workflow with every step type, the
older formats, an n8n workflow with every node type flowpin translates and JavaScript
expressions) and the n8n samples in ../shared/n8n-samples beside the clone (required: CI
has them there). More seeds go into tests/fuzz/seeds/ (small files only) and are named
below (old-*.yaml by pattern).

Used by the test_*_fuzz.py files; a longer campaign of all of them: `make fuzz` (see
conftest.py for FUZZ_EXAMPLES, FUZZ_SEED and FUZZ_SHRINK).
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

from tests.fuzz.harness import EXAMPLES, N8N_SAMPLES

SEEDS_DIR = Path(__file__).resolve().parent / "seeds"


class Seeds(dict[str, bytes]):
    """File name → content; printed as its names only (hypothesis prints the arguments of
    the strategies of a failing case, and the n8n samples are 100 kB)."""

    def __repr__(self) -> str:
        return f"Seeds({sorted(self)})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


def _read_all(paths: list[Path], what: str) -> Seeds:
    found = Seeds({p.name: p.read_bytes() for p in sorted(paths)})
    if not found:
        raise FileNotFoundError(f"no {what} seeds found (looked at {paths!r})")
    return found


def _n8n_samples() -> Seeds:
    if not N8N_SAMPLES.is_dir():  # never skipped: CI has shared/ beside the clone
        raise FileNotFoundError(f"the n8n samples are missing: {N8N_SAMPLES}")
    return _read_all(list(N8N_SAMPLES.glob("*.json")), "n8n")


WORKFLOW_SEEDS = _read_all(
    [*(EXAMPLES / "workflows").glob("*.yaml"), SEEDS_DIR / "everything.yaml"], "workflow"
)
ENVIRONMENT_SEEDS = _read_all(list((EXAMPLES / "environments").glob("*.yaml")), "environment")
OLD_FORMAT_SEEDS = _read_all(list(SEEDS_DIR.glob("old-*.yaml")), "old format")
N8N_SEEDS = Seeds(
    {
        **_n8n_samples(),
        "expressions.n8n.json": (SEEDS_DIR / "expressions.n8n.json").read_bytes(),
    }
)
YAML_SEEDS = Seeds({**WORKFLOW_SEEDS, **ENVIRONMENT_SEEDS, **OLD_FORMAT_SEEDS})
ALL_TEXT_SEEDS = Seeds({**YAML_SEEDS, **N8N_SEEDS})


def seed_values(seeds: dict[str, bytes]) -> st.SearchStrategy[bytes]:
    """One seed, unmutated (drawn by name: a strategy over the bytes themselves would
    print them whole in its repr)."""
    return st.sampled_from(sorted(seeds)).map(seeds.__getitem__)


# ----------------------------------------------------------------------------- tokens

YAML_TOKENS: list[bytes] = [
    b"on:",
    b"~:",
    b"1:",
    b"yes:",
    b"no:",
    b"null:",
    b"<<:",
    b"? ",
    b"- ",
    b": ",
    b"&a ",
    b"*a",
    b"&a [1, 2]",
    b"<<: *a",
    b"!!python/object:os.system",
    b"!!python/object/apply:os.system ['x']",
    b"!!binary aGVsbG8=",
    b"!!set {a, b}",
    b"!!omap [a: 1]",
    b"!!timestamp 2001-12-14",
    b"!!float",
    b"!!int",
    b"!!str",
    b"!!map",
    b"!custom",
    b"!<tag:yaml.org,2002:str>",
    b"---\n",
    b"...\n",
    b"--- !!map\n",
    b"%YAML 1.1\n",
    b"%YAML 2.0\n",
    b"%TAG ! tag:x,2000:\n",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b"|",
    b"|-",
    b">",
    b">+",
    b"#",
    b"'",
    b'"',
    b"`",
    b"@",
    b"\t",
    b"\x00",
    b"\x01",
    b"\x7f",
    b"\r",
    b"\r\n",
    b"\n\n",
    b"\xef\xbb\xbf",
    b"\xff\xfe",
    b"\xfe\xff",
    b"\xc3",
    b"\x80",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\xc2\x85",
    "\u2028".encode(),
    "\ufeff".encode(),
    "é".encode(),
    "\U0001d518".encode(),
    b"\\ud800",
    b"\\x00",
    b".nan",
    b".inf",
    b"-.inf",
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"1e999",
    b"-1e999",
    b"0x1F",
    b"0o17",
    b"0b101",
    b"1_000",
    b"190:20:30",
    b"2001-12-14t21:59:43.10-05:00",
    b"9" * 400,
    b"9" * 5000,
    b"-0",
    b"1.",
    b".5",
    b"1e",
    b"true",
    b"True",
    b"NO",
    b"~",
    b"null",
    b"${ inputs.email }",
    b"${",
    b'${ steps["a"].output }',
    b"={{ $json.a }}",
    b"{{",
    b"}}",
    b"end",
    b"next: end",
    b"next: ",
    b"id: ",
    b"type: n8n",
    b"version: ",
    b"1.4.0",
    b"99.0.0",
    b"version: 1.4.0-rc.1+build",
    b"latest",
    b"apiVersion: flowpin.dev/v0\n",
    b"apiVersion: flowpin.dev/v1alpha0\n",
    b"kind: Environment\n",
    b"kind: Workflow\n",
]
JSON_TOKENS: list[bytes] = [
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b'"',
    b"\\",
    b"\\u",
    b"\\ud800",
    b"\\udfff",
    b"\\u0000",
    b'"\\ud83d"',
    b"null",
    b"true",
    b"false",
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"1e999",
    b"-0",
    b"1E400",
    b"0.0000000000000000000000000000001e-400",
    b"9" * 4301,
    b"1" * 20000,
    b'"nodes"',
    b'"connections"',
    b'"kind"',
    b'"name"',
    b'"type"',
    b'"parameters"',
    b'"typeVersion"',
    b'"main"',
    b'"node"',
    b'"index"',
    b'"={{ $json.a }}"',
    b"{}",
    b"[]",
    b'{"a":',
    b"\x00",
    b"\t",
    b"\xef\xbb\xbf",
    b"\xff",
    b"\xc3",
    b"\xed\xa0\x80",
    b"//",
    b"/*",
]
SPECIAL_KEYS: list[Any] = [
    "on",
    "off",
    "yes",
    "no",
    "y",
    "n",
    "~",
    "1",
    "<<",
    "",
    " ",
    "kind",
    "apiVersion",
    "spec",
    "metadata",
    "name",
    "id",
    "next",
    "type",
    "nodes",
    "connections",
    "__proto__",
    "constructor",
    "$json",
    "a.b",
    "a b",
    "é",
    "\u0000",
    "\ud800",
    "x" * 300,
]

# ----------------------------------------------------------------------------- values

_surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, categories=["Cs"])
any_text = st.one_of(
    st.text(max_size=20),
    st.text(st.characters(codec=None), max_size=20),
    st.text(
        st.one_of(_surrogates, st.sampled_from("ab:{}[]#&*!|>'\"\\\t\n\r\x00$.=")), max_size=12
    ),
    st.sampled_from([k for k in SPECIAL_KEYS if isinstance(k, str)]),
    st.builds(lambda n, c: c * n, st.integers(1000, 70_000), st.sampled_from("ax[{\n ")),
)
huge_numbers = st.sampled_from(
    [10**30, -(10**30), 2**63, 2**63 - 1, -(2**63) - 1, 2**64, 10**400, 1e308, 5e-324, -0.0]
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    huge_numbers,
    st.floats(allow_nan=True, allow_infinity=True),
    any_text,
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(any_text, st.sampled_from(SPECIAL_KEYS)), children, max_size=4),
    ),
    max_leaves=12,
)


def nested(depth: int, kind: str) -> Any:
    """A value `depth` containers deep, built iteratively."""
    value: Any = 1
    for _ in range(depth):
        value = [value] if kind == "list" else {"a": value}
    return value


deep_values = st.builds(
    nested, st.sampled_from([20, 63, 64, 65, 100, 300, 900]), st.sampled_from(["list", "dict"])
)
# A YAML value: what JSON can hold and what YAML adds (non-string keys, sets, dates).
yaml_values = st.one_of(
    json_values,
    deep_values,
    st.dictionaries(
        st.one_of(st.integers(), st.none(), st.booleans(), st.floats()), json_scalars, max_size=3
    ),
    st.dates(),
    st.datetimes(),
    st.binary(max_size=8),
)

# ----------------------------------------------------------------------------- byte mutations


def _apply(data: bytes, op: tuple[Any, ...], other: bytes) -> bytes:
    kind, a, b, token = op
    n = len(data)
    i = a % (n + 1)
    j = min(n, i + b % 64)
    if kind == "flip" and n:
        i = a % n
        return data[:i] + bytes([data[i] ^ (1 << (b % 8))]) + data[i + 1 :]
    if kind == "byte" and n:
        i = a % n
        return data[:i] + bytes([b % 256]) + data[i + 1 :]
    if kind == "delete":
        return data[:i] + data[j:]
    if kind == "insert":
        return data[:i] + token + data[i:]
    if kind == "insert-at-line":
        starts = [0] + [k + 1 for k in range(n) if data[k : k + 1] == b"\n"]
        k = starts[a % len(starts)]
        return data[:k] + token + data[k:]
    if kind == "after-colon":
        colons = [k + 1 for k in range(n) if data[k : k + 1] == b":"] or [n]
        k = colons[a % len(colons)]
        return data[:k] + b" " + token + data[k:]
    if kind == "replace":
        return data[:i] + token + data[j:]
    if kind == "repeat":
        return data[:i] + token * (1 + b % 2000) + data[i:]
    if kind == "truncate":
        return data[:i]
    if kind == "splice":
        start = a % (len(other) + 1)
        return data[:i] + other[start : start + 1 + b % 400] + data[i:]
    if kind == "duplicate":
        return data[:j] + data[i:j] + data[j:]
    if kind == "long-line":
        return data[:i] + b"x" * (1000 + b * 37 % 200_000) + data[i:]
    if kind == "indent-bomb":
        lines = b"".join(b"  " * d + b"a:\n" for d in range(1 + b % 300))
        return data[:i] + b"\n" + lines + data[i:]
    if kind == "brackets":
        depth = 1 + b % 3000
        return data[:i] + b"[" * depth + b"]" * depth + data[i:]
    if kind == "alias-bomb":
        layers = [b"a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
        for level in range(1, 2 + b % 9):
            refs = b", ".join([b"*a%d" % (level - 1)] * 10)
            layers.append(b"a%d: &a%d [%s]" % (level, level, refs))
        return data[:i] + b"\n" + b"\n".join(layers) + b"\n" + data[i:]
    return data


MUTATION_KINDS = [
    "flip",
    "byte",
    "delete",
    "insert",
    "insert-at-line",
    "after-colon",
    "replace",
    "repeat",
    "truncate",
    "splice",
    "duplicate",
    "long-line",
    "indent-bomb",
    "brackets",
    "alias-bomb",
]


@st.composite
def mutated(draw: st.DrawFn, seeds: dict[str, bytes], tokens: list[bytes]) -> bytes:
    """A seed after 1-6 byte-level mutations (flips, truncation, splicing with another seed,
    special tokens, long lines, deep nesting)."""
    names = sorted(seeds)
    data = seeds[draw(st.sampled_from(names), label="seed")]
    other = seeds[draw(st.sampled_from(names), label="splice from")]
    ops = draw(
        st.lists(
            st.tuples(
                st.sampled_from(MUTATION_KINDS),
                st.integers(0, 2**20),
                st.integers(0, 2**16),
                st.sampled_from(tokens),
            ),
            min_size=1,
            max_size=6,
        ),
        label="mutations",
    )
    for op in ops:
        data = _apply(data, op, other)
    return data


# ----------------------------------------------------------------------------- structure


def paths_of(value: Any, limit: int = 4000) -> list[tuple[Any, ...]]:
    """Every path into a JSON-like value (containers and leaves), breadth first."""
    found: list[tuple[Any, ...]] = [()]
    queue: list[tuple[tuple[Any, ...], Any]] = [((), value)]
    while queue and len(found) < limit:
        path, item = queue.pop(0)
        children = (
            list(item.items())
            if isinstance(item, dict)
            else list(enumerate(item))
            if isinstance(item, list)
            else []
        )
        for key, child in children:
            found.append((*path, key))
            queue.append(((*path, key), child))
    return found


def _at(value: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        value = value[key]
    return value


@st.composite
def edited(draw: st.DrawFn, document: Any, values: st.SearchStrategy[Any] = json_values) -> Any:
    """`document` with 1-4 edits at random paths: a value replaced, a key added (special
    keys too), an item appended or inserted, an entry deleted, a container emptied."""
    document = copy.deepcopy(document)
    for _ in range(draw(st.integers(1, 4), label="edits")):
        paths = paths_of(document)
        path = draw(st.sampled_from(paths), label="path")
        action = draw(st.sampled_from(["replace", "add", "delete", "empty", "retype"]))
        value = draw(values, label="value")
        if path == ():
            if action == "replace":
                document = value
            continue
        parent = _at(document, path[:-1])
        key = path[-1]
        target = parent[key]
        if action == "replace":
            parent[key] = value
        elif action == "delete":
            del parent[key]
        elif action == "empty":
            parent[key] = type(target)() if isinstance(target, dict | list | str) else None
        elif action == "retype":
            parent[key] = (
                str(target)
                if not isinstance(target, str)
                else [target]
                if draw(st.booleans())
                else {"value": target}
            )
        elif isinstance(target, dict):
            new_key = draw(st.one_of(st.sampled_from(SPECIAL_KEYS), any_text), label="key")
            target[new_key] = value
        elif isinstance(target, list):
            target.insert(draw(st.integers(0, len(target))), value)
        else:
            parent[key] = value
    return document


def dump_json(document: Any, style: int) -> bytes:
    """JSON text as editors and n8n write it, or with NaN/Infinity, or ASCII-escaped."""
    try:
        text = json.dumps(
            document,
            indent=[None, 2, 1, "\t"][style % 4],
            ensure_ascii=style % 3 == 0,
            allow_nan=True,
        )
    except (ValueError, RecursionError, TypeError):
        text = repr(document)
    return text.encode("utf-8", "surrogatepass")


def dump_yaml(document: Any, style: int) -> bytes:
    try:
        text = yaml.safe_dump(
            document,
            default_flow_style=[False, True, None][style % 3],
            allow_unicode=style % 2 == 0,
            sort_keys=False,
            width=[80, 10**6, 20][style % 3],
        )
    except (yaml.YAMLError, RecursionError, TypeError, ValueError):
        return dump_json(document, style)
    return text.encode("utf-8", "surrogatepass")


def _load_yaml(data: bytes) -> Any:
    return yaml.safe_load(data)


def _load_json(data: bytes) -> Any:
    return json.loads(data)


PARSED_YAML = {name: _load_yaml(data) for name, data in YAML_SEEDS.items()}
PARSED_N8N = {name: _load_json(data) for name, data in N8N_SEEDS.items()}


@st.composite
def structured_manifest(draw: st.DrawFn) -> tuple[bytes, str]:
    """A flowpin manifest (current or older format) with values at random paths, written
    as YAML or JSON; (content, suffix)."""
    name = draw(st.sampled_from(sorted(PARSED_YAML)), label="seed")
    document = draw(edited(PARSED_YAML[name], st.one_of(json_values, yaml_values)))
    style = draw(st.integers(0, 11), label="style")
    if draw(st.booleans(), label="as json"):
        return dump_json(document, style), ".json"
    return dump_yaml(document, style), ".yaml"


# ----------------------------------------------------------------------------- n8n

_JS_ATOMS = [
    "$json",
    "$json.body",
    "$json.body.email",
    '$json["a b"]',
    "$json.a.b.c",
    "$input.item.json.x",
    "$('Fetch Lead').item.json.body",
    "$('Nope').first().json.x",
    '$node["Fetch Lead"].json.x',
    "$now",
    "Math.max(1, 2)",
    "1",
    "0",
    "-1",
    "1.5",
    "1e309",
    "NaN",
    "'str'",
    '"dq"',
    "`tpl`",
    "true",
    "null",
    "undefined",
    "[1, 2]",
    "{a: 1}",
    "$json.items.length",
    "$json.a.toUpperCase()",
    "'\\u0000'",
    "'\\ud800'",
    "$vars.x",
    "$env.HOME",
    "$('Lead Hook').item.json.body.count",
]
_JS_OPS = [
    "==",
    "!=",
    "===",
    "!==",
    "<",
    "<=",
    ">",
    ">=",
    "+",
    "-",
    "*",
    "/",
    "%",
    "&&",
    "||",
    "??",
]


@st.composite
def js_expression(draw: st.DrawFn) -> str:
    """An n8n parameter expression: `={{ … }}` mixing the translatable subset with what is
    not, plus broken braces and text around it."""
    atoms = draw(st.lists(st.sampled_from(_JS_ATOMS), min_size=1, max_size=5))
    ops = draw(st.lists(st.sampled_from(_JS_OPS), min_size=len(atoms) - 1, max_size=len(atoms) - 1))
    parts = [atoms[0]]
    for op, atom in zip(ops, atoms[1:], strict=True):
        parts += [op, atom]
    if draw(st.booleans()):
        parts = ["!", "(", *parts, ")", "?", "1", ":", "2"]
    inner = " ".join(parts)
    prefix = draw(st.sampled_from(["", "text ", "{{ ", "}} ", "${ ", "a{{b}}"]))
    suffix = draw(st.sampled_from(["", " tail", " }}", "{{", " {{ $json.x }}", "}"]))
    return "=" + prefix + "{{ " + inner + " }}" + suffix


_NODE_FIELDS = [
    "name",
    "type",
    "typeVersion",
    "parameters",
    "position",
    "id",
    "disabled",
    "credentials",
    "onError",
    "retryOnFail",
    "notes",
    "webhookId",
    "maxTries",
]
_NODE_TYPES = [
    "n8n-nodes-base.webhook",
    "n8n-nodes-base.scheduleTrigger",
    "n8n-nodes-base.cron",
    "n8n-nodes-base.manualTrigger",
    "n8n-nodes-base.httpRequest",
    "n8n-nodes-base.wait",
    "n8n-nodes-base.if",
    "n8n-nodes-base.switch",
    "n8n-nodes-base.set",
    "n8n-nodes-base.noOp",
    "n8n-nodes-base.stopAndError",
    "n8n-nodes-base.stickyNote",
    "n8n-nodes-base.code",
    "n8n-nodes-base.merge",
    "@n8n/n8n-nodes-langchain.agent",
    "",
    "x",
]


@st.composite
def n8n_node_edit(draw: st.DrawFn, workflow: dict[str, Any]) -> dict[str, Any]:
    """One n8n-aware change: node fields, types and versions swapped, names duplicated,
    connections dangling or malformed, expressions placed in parameters."""
    workflow = copy.deepcopy(workflow)
    nodes = workflow.get("nodes")
    if not isinstance(nodes, list) or not nodes:
        return workflow
    index = draw(st.integers(0, len(nodes) - 1))
    node = nodes[index]
    if not isinstance(node, dict):
        return workflow
    action = draw(
        st.sampled_from(
            [
                "type",
                "version",
                "duplicate-name",
                "drop-field",
                "expression",
                "connect",
                "disable",
                "field",
                "swap-params",
                "remove-node",
            ]
        )
    )
    names = [n.get("name") for n in nodes if isinstance(n, dict)]
    connections = workflow.setdefault("connections", {})
    if action == "type":
        node["type"] = draw(st.sampled_from(_NODE_TYPES))
    elif action == "version":
        node["typeVersion"] = draw(
            st.one_of(
                st.sampled_from([0, 1, 1.1, 2, 2.2, 3, 3.2, 3.3, 3.4, 4, 4.2, 99, -1]), json_scalars
            )
        )
    elif action == "duplicate-name" and len(nodes) > 1:
        node["name"] = nodes[(index + 1) % len(nodes)].get("name")
    elif action == "drop-field":
        node.pop(draw(st.sampled_from(_NODE_FIELDS)), None)
    elif action == "expression":
        params = node.setdefault("parameters", {})
        if isinstance(params, dict):
            keys = [
                *params.keys(),
                "url",
                "value",
                "leftValue",
                "errorMessage",
                "jsonBody",
                "amount",
            ]
            params[draw(st.sampled_from(keys))] = draw(js_expression())
        else:
            node["parameters"] = {"url": draw(js_expression())}
    elif action == "connect" and isinstance(connections, dict):
        source = draw(st.sampled_from([*names, "Nowhere", ""]))
        target = draw(st.sampled_from([*names, "Ghost", None, 7]))
        kind = draw(st.sampled_from(["main", "ai_tool", "ai_languageModel", "weird", ""]))
        output = draw(st.integers(0, 3))
        entry = {
            "node": target,
            "type": kind,
            "index": draw(st.sampled_from([0, 1, -1, "0", None])),
        }
        if not isinstance(source, str):
            source = str(source)
        outputs = connections.setdefault(source, {})
        if isinstance(outputs, dict):
            lanes = outputs.setdefault(kind, [])
            if isinstance(lanes, list):
                while len(lanes) <= output:
                    lanes.append([])
                if isinstance(lanes[output], list):
                    lanes[output].append(entry)
                else:
                    lanes[output] = [entry]
    elif action == "disable":
        node["disabled"] = draw(st.one_of(st.booleans(), json_scalars))
    elif action == "field":
        node[draw(st.sampled_from(_NODE_FIELDS))] = draw(json_values)
    elif action == "swap-params" and len(nodes) > 1:
        other = nodes[draw(st.integers(0, len(nodes) - 1))]
        if isinstance(other, dict):
            node["parameters"], other["parameters"] = (
                other.get("parameters"),
                node.get("parameters"),
            )
    elif action == "remove-node":
        nodes.pop(index)
    return workflow


@st.composite
def structured_n8n(draw: st.DrawFn) -> bytes:
    """An n8n workflow after node-aware edits and values at random paths, as JSON (or a
    list of workflows, as `n8n export:workflow --all` writes, or YAML)."""
    name = draw(st.sampled_from(sorted(PARSED_N8N)), label="seed")
    workflow = PARSED_N8N[name]
    for _ in range(draw(st.integers(0, 4), label="node edits")):
        workflow = draw(n8n_node_edit(workflow))
    if draw(st.booleans(), label="path edits"):
        workflow = draw(edited(workflow))
    style = draw(st.integers(0, 11), label="style")
    shape = draw(st.sampled_from(["object", "object", "object", "list", "yaml"]), label="shape")
    if shape == "list":
        other = PARSED_N8N[draw(st.sampled_from(sorted(PARSED_N8N)))]
        return dump_json([workflow, other], style)
    if shape == "yaml":
        return dump_yaml(workflow, style)
    return dump_json(workflow, style)


# ----------------------------------------------------------------------------- bundles


def tar_header(
    name: bytes,
    size: bytes | int,
    kind: bytes = b"0",
    *,
    prefix: bytes = b"",
    linkname: bytes = b"",
    magic: bytes = b"ustar\x0000",
    checksum: Callable[[int], bytes] | None = None,
) -> bytes:
    """One raw 512-byte tar header; `size` as given (any bytes) or an octal number."""
    field = size if isinstance(size, bytes) else b"%011o\x00" % size
    header = bytearray(512)
    header[0:100] = name[:100].ljust(100, b"\x00")
    header[100:108] = b"0000644\x00"
    header[108:116] = b"0000000\x00"
    header[116:124] = b"0000000\x00"
    header[124:136] = field[:12].ljust(12, b"\x00")
    header[136:148] = b"00000000000\x00"
    header[148:156] = b" " * 8
    header[156:157] = kind[:1] or b"\x00"
    header[157:257] = linkname[:100].ljust(100, b"\x00")
    header[257:265] = magic[:8].ljust(8, b"\x00")
    header[345:500] = prefix[:155].ljust(155, b"\x00")
    total = sum(header)
    header[148:156] = checksum(total) if checksum else b"%06o\x00 " % total
    return bytes(header)


def pax_payload(records: list[tuple[bytes, bytes]], lie: int = 0) -> bytes:
    out = b""
    for key, value in records:
        body = b" " + key + b"=" + value + b"\n"
        length = len(body) + 1
        while len(str(length).encode()) + len(body) != length:
            length += 1
        out += str(length + lie).encode() + body
    return out


def padded(data: bytes) -> bytes:
    return data + b"\x00" * (-len(data) % 512)


_TAR_NAMES = [
    b"manifest.json",
    b"workflows/lead-nurture/1.4.0.yaml",
    b"../evil.yaml",
    b"/etc/passwd",
    b"./manifest.json",
    b"workflows/../manifest.json",
    b"a\\b.yaml",
    b"x\x00y",
    b"\xff\xfe.yaml",
    b"",
    b".",
    b"workflows/",
    b"workflows//x.yaml",
    "é/ü.yaml".encode(),
    b"a" * 100,
]
_PAX_KEYS = [
    b"path",
    b"size",
    b"linkpath",
    b"GNU.sparse.map",
    b"mtime",
    b"uname",
    b"comment",
    b"\xff",
]
_PAX_VALUES = [
    b"manifest.json",
    b"../../x",
    b"12",
    b"\xc2\xb2",
    "١٢".encode(),
    b"-1",
    b"99999999999999999999",
    b"",
    b"1.5",
    b" 7",
    b"\xff",
    b"x" * 300,
    b"a=b",
]
_SIZE_FIELDS = [
    b"00000000000\x00",
    b"77777777777\x00",
    b"\x80" + b"\x00" * 10 + b"\x10",
    b"\xff" * 12,
    b"\x80" + b"\xff" * 11,
    b"   12   \x00",
    b"9\x00",
    b"0x10",
    b"-1",
    b"",
    b"1e3",
    b"\x00" * 12,
]


@st.composite
def raw_tar_member(draw: st.DrawFn) -> bytes:
    """One member of a hand-made tar: maybe pax/GNU long-name headers before it, odd
    types, sizes (octal, base-256, garbage), names, checksums; content shorter or longer
    than declared."""
    out = b""
    for _ in range(draw(st.integers(0, 3))):
        ext = draw(st.sampled_from([b"x", b"g", b"L", b"K"]))
        if ext in (b"x", b"g"):
            records = draw(
                st.lists(
                    st.tuples(st.sampled_from(_PAX_KEYS), st.sampled_from(_PAX_VALUES)), max_size=3
                )
            )
            payload = pax_payload(records, lie=draw(st.sampled_from([0, 0, 0, 1, -1, 1000])))
            if draw(st.integers(0, 9)) == 0:
                payload = draw(st.binary(max_size=64))
        else:
            payload = draw(st.sampled_from(_TAR_NAMES)) + b"\x00"
        declared: bytes | int = len(payload)
        if draw(st.integers(0, 5)) == 0:
            declared = draw(st.sampled_from([*_SIZE_FIELDS, 10**9, 65 * 1024]))
        out += tar_header(b"././@LongLink", declared, ext) + padded(payload)
    name = draw(st.sampled_from(_TAR_NAMES))
    kind = draw(
        st.sampled_from([b"0", b"\x00", b"7", b"5", b"1", b"2", b"3", b"4", b"6", b"S", b"V", b"Z"])
    )
    content = draw(st.one_of(st.binary(max_size=300), seed_values(YAML_SEEDS)))
    declared = len(content)
    if draw(st.integers(0, 3)) == 0:
        declared = draw(st.sampled_from([*_SIZE_FIELDS, 0, 17 * 2**20, 2**40, len(content) + 513]))
    checksum = None
    if draw(st.integers(0, 7)) == 0:
        checksum = draw(
            st.sampled_from(
                [
                    lambda t: b"%06o\x00 " % (t + 1),
                    lambda t: b"\x00" * 8,
                    lambda t: b"zzzzzzzz",
                    lambda t: b"%06o\x00 " % (t - 256 * 3),
                ]
            )
        )
    magic = draw(st.sampled_from([b"ustar\x0000", b"ustar  \x00", b"\x00" * 8, b"ustar\x00"]))
    prefix = draw(st.sampled_from([b"", b"workflows", b"..", b"\xff"]))
    out += tar_header(name, declared, kind, prefix=prefix, magic=magic, checksum=checksum)
    body = padded(content)
    cut = draw(st.sampled_from([None, None, None, 0, 100, 511]))
    return out + (body if cut is None else body[:cut])


def _gzip(data: bytes, how: int) -> bytes:
    if how == 1:  # two gzip members
        half = len(data) // 2
        return gzip.compress(data[:half], mtime=0) + gzip.compress(data[half:], mtime=0)
    if how == 2:  # trailing garbage
        return gzip.compress(data, mtime=0) + b"\x00garbage"
    if how == 3:  # truncated stream
        packed = gzip.compress(data, mtime=0)
        return packed[: max(2, len(packed) // 2)]
    return gzip.compress(data, compresslevel=1, mtime=0)


@st.composite
def raw_bundle(draw: st.DrawFn) -> bytes:
    """A gzip stream of hand-made tar members (sometimes a real manifest first)."""
    out = b""
    for _ in range(draw(st.integers(1, 4))):
        out += draw(raw_tar_member())
    if draw(st.booleans()):
        out += b"\x00" * 1024
    return _gzip(out, draw(st.integers(0, 5)))


def tar_of(members: list[tuple[str, bytes, bytes]]) -> bytes:
    """A tar made with `tarfile` of (name, type, content): regular files, directories,
    links, devices, FIFOs."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, kind, content in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.REGTYPE:
                info.size = len(content)
                archive.addfile(info, io.BytesIO(content))
            else:
                info.linkname = content.decode("utf-8", "replace")
                archive.addfile(info)
    return raw.getvalue()


@st.composite
def edited_bundle(draw: st.DrawFn, bundles: dict[str, dict[str, bytes]]) -> bytes:
    """A real exported bundle, unpacked, edited (manifest values at random paths, content
    changed with or without a fixed sha256, files added, removed, renamed, linked) and
    packed again."""
    name = draw(st.sampled_from(sorted(bundles)))
    files = dict(bundles[name])
    manifest = json.loads(files["manifest.json"])
    members: list[tuple[str, bytes, bytes]] = []
    for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2, 3, 4]), label="bundle edits")):
        action = draw(
            st.sampled_from(
                [
                    "manifest",
                    "content",
                    "content-resigned",
                    "structured-resigned",
                    "structured-resigned",
                    "add",
                    "remove",
                    "rename",
                    "link",
                    "dir",
                    "fifo",
                    "duplicate",
                ]
            )
        )
        paths = sorted(p for p in files if p != "manifest.json")
        path = draw(st.sampled_from(paths)) if paths else "manifest.json"
        if action == "manifest":
            manifest = draw(edited(manifest))
        elif action in ("content", "content-resigned") and path in files:
            files[path] = draw(mutated(YAML_SEEDS, YAML_TOKENS))
            if action == "content-resigned" and isinstance(manifest, dict):
                listed = manifest.get("files")
                if isinstance(listed, dict):
                    listed[path] = hashlib.sha256(files[path]).hexdigest()
        elif action == "structured-resigned" and path in files:
            # Valid YAML with values at random paths, listed with its sha256: the bundle
            # passes verification and its content reaches the checks.
            try:
                document = yaml.safe_load(files[path])
            except yaml.YAMLError:
                document = {}
            files[path] = dump_yaml(draw(edited(document)), draw(st.integers(0, 11)))
            if isinstance(manifest, dict) and isinstance(manifest.get("files"), dict):
                manifest["files"][path] = hashlib.sha256(files[path]).hexdigest()
        elif action == "add":
            new = draw(
                st.sampled_from([n.decode("utf-8", "replace") for n in _TAR_NAMES] + ["extra.yaml"])
            )
            files[new or "x"] = draw(st.binary(max_size=50))
        elif action == "remove" and path != "manifest.json":
            files.pop(path, None)
        elif action == "rename" and path != "manifest.json":
            files[path + draw(st.sampled_from(["~", "/x", ".bak"]))] = files.pop(path)
        elif action == "link":
            members.append((path, tarfile.SYMTYPE, b"/etc/passwd"))
        elif action == "dir":
            members.append(("workflows", tarfile.DIRTYPE, b""))
        elif action == "fifo":
            members.append(("workflows/pipe.yaml", tarfile.FIFOTYPE, b""))
        elif action == "duplicate" and path in files:
            members.append((path, tarfile.REGTYPE, files[path]))
    files["manifest.json"] = dump_json(manifest, draw(st.integers(0, 11)))
    ordered = [("manifest.json", tarfile.REGTYPE, files.pop("manifest.json"))]
    ordered += [(p, tarfile.REGTYPE, files[p]) for p in sorted(files)]
    ordered += members
    order = draw(st.sampled_from(["as is", "reversed"]))
    if order == "reversed":
        ordered.reverse()
    return _gzip(tar_of(ordered), draw(st.sampled_from([0, 0, 0, 1, 2, 3])))
