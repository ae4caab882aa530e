"""Which format a file is in, and writing manifests as YAML people can review. Pure.

`detect` looks at content, not at the file name, since exports get renamed: gzip → a
bundle; JSON with `kind` → a flowpin manifest; JSON with `nodes` (or a list of such
objects, as `n8n export:workflow --all` writes) → n8n; YAML with `kind` → a flowpin
manifest. Anything else is refused with the reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from controller.model import jsonsafe
from controller.model.findings import Finding, PathElement, format_path
from controller.model.source_map import load_yaml

Format = Literal["flowpin-yaml", "flowpin-json", "bundle", "n8n", "unknown"]
GZIP_MAGIC = b"\x1f\x8b"
MAX_TEXT_BYTES = 16 * 1024 * 1024  # a JSON or YAML file; its manifest may hold 1 MiB
MAX_BUNDLE_BYTES = 64 * 1024 * 1024  # a .tar.gz, compressed (bundle.py bounds the rest)


@dataclass
class Detected:
    format: Format
    documents: list[Any] = field(default_factory=list)  # parsed content (several for n8n lists)
    reason: str = ""  # why the format is unknown
    findings: list[Finding] = field(default_factory=list)


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f}".removesuffix(".0")


def detect(name: str, content: bytes) -> Detected:
    if content.startswith(GZIP_MAGIC):
        if len(content) > MAX_BUNDLE_BYTES:
            return Detected(
                "unknown",
                reason=f"{_mib(len(content))} MiB: larger than the {_mib(MAX_BUNDLE_BYTES)} MiB "
                "a bundle may have",
            )
        return Detected("bundle")
    if len(content) > MAX_TEXT_BYTES:
        return Detected(
            "unknown",
            reason=f"{_mib(len(content))} MiB: larger than the {_mib(MAX_TEXT_BYTES)} MiB a JSON "
            "or YAML file may have",
        )
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = content.count(b"\n", 0, error.start) + 1
        return Detected("unknown", reason=f"not UTF-8 text (line {line}), and not a .tar.gz bundle")
    stripped = text.lstrip()
    if not stripped:
        return Detected("unknown", reason="the file is empty")
    if stripped[0] in "{[":
        try:
            data = jsonsafe.loads(text)
        except jsonsafe.JSONInputError as error:
            if not error.syntax or name.endswith(".json") or not _yaml_mapping(content, name):
                return Detected(
                    "unknown",
                    reason=f"invalid JSON at line {error.line}, column {error.column}: "
                    f"{error.message}",
                )
        else:
            return _classify_json(data)
    document = load_yaml(content, name)
    if not document.ok:
        return Detected("unknown", reason="invalid YAML", findings=list(document.findings))
    data = document.data
    if isinstance(data, dict) and "kind" in data:
        return Detected("flowpin-yaml", [data])
    if isinstance(data, dict) and "nodes" in data:
        problem = not_json(data)
        if problem is not None:
            path, what = problem
            line, column = _yaml_position(document, path)
            return Detected(
                "unknown",
                reason=f"an n8n workflow holds JSON values only; at line {line}, column "
                f"{column} ({format_path(path) or 'the top'}) this YAML has {what}",
            )
        return Detected("n8n", [data])
    return Detected(
        "unknown",
        reason="not a flowpin manifest (no `kind`), an n8n workflow (no `nodes`) or a bundle",
    )


def _yaml_position(document: Any, path: tuple[PathElement, ...]) -> tuple[int, int]:
    try:
        position: tuple[int, int] = document.position(path)
    except Exception:  # a position is a courtesy; never fail a report over it
        return (1, 1)
    return position


_YAML_TYPES = {"date": "a date", "datetime": "a timestamp", "bytes": "binary data", "set": "a set"}


def not_json(data: Any) -> tuple[tuple[PathElement, ...], str] | None:
    """The path of the first value (or key: the path of its mapping) JSON cannot hold, and
    what it is, as YAML may give: a date, bytes, a set, a number as a key. Iterative."""
    work: list[tuple[tuple[PathElement, ...], Any]] = [((), data)]
    while work:
        path, value = work.pop()
        if isinstance(value, dict):
            for key in value:
                if not isinstance(key, str):
                    return path, f"the key {key!r}, which is not a string"
            work.extend(((*path, key), item) for key, item in reversed(value.items()))
        elif isinstance(value, list):
            work.extend(((*path, index), item) for index, item in reversed(list(enumerate(value))))
        elif not isinstance(value, str | int | float | bool) and value is not None:
            shown = jsonsafe.printable(str(value))[:60]
            what = _YAML_TYPES.get(type(value).__name__, f"a {type(value).__name__}")
            return path, f"{what} ({shown}; quote it to make it a string)"
    return None


def _yaml_mapping(content: bytes, name: str) -> bool:
    document = load_yaml(content, name)
    return document.ok and isinstance(document.data, dict)


def _classify_json(data: Any) -> Detected:
    if isinstance(data, dict) and "kind" in data:
        return Detected("flowpin-json", [data])
    if isinstance(data, dict) and ("nodes" in data or "connections" in data):
        return Detected("n8n", [data])
    if isinstance(data, list) and data and all(isinstance(d, dict) and "nodes" in d for d in data):
        return Detected("n8n", list(data))
    what = "a JSON list" if isinstance(data, list) else f"JSON {type(data).__name__}"
    if isinstance(data, dict):
        what = "a JSON object without `kind`, `nodes` or `connections`"
    return Detected(
        "unknown", reason=f"{what}: not a flowpin manifest, an n8n workflow or a bundle"
    )


def locate(
    content: bytes, filename: str, paths: Iterable[tuple[PathElement, ...]]
) -> dict[tuple[PathElement, ...], tuple[int, int]]:
    """Line and column of each path (or of its nearest ancestor) in a JSON or YAML file,
    (1, 1) when unknown: positions for findings. JSON is scanned with a tokenizer that
    stops once every path is found; a YAML parse of a large n8n export costs ten times as
    much."""
    wanted = set(paths)
    text = content.decode("utf-8-sig", "replace")
    if text.lstrip()[:1] in ("{", "["):
        prefixes = {p[:n] for p in wanted for n in range(len(p) + 1)}
        found = jsonsafe.positions(text, prefixes)
    else:
        document = load_yaml(content, filename, max_bytes=len(content) + 1, max_nodes=10**7)
        found = {}
        for path in wanted:
            found[path] = _yaml_position(document, path) if document.ok else (1, 1)
    located: dict[tuple[PathElement, ...], tuple[int, int]] = {}
    for path in wanted:
        nearest = path
        while nearest and nearest not in found:
            nearest = nearest[:-1]
        located[path] = found.get(nearest, (1, 1))
    return located


# --------------------------------------------------------------------------- YAML out


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """Block style; multi-line strings as literal blocks, so annotations and code read
    (and diff) line by line."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _represent_str)


def dump_yaml(data: Any) -> bytes:
    text = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100, indent=2)
    return text.encode()


def dump_json(data: Any) -> bytes:
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode()
