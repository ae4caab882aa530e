"""Which format a file is in, and writing manifests as YAML people can review. Pure.

`detect` looks at content, not at the file name, since exports get renamed: gzip → a
bundle; JSON with `kind` → a flowpin manifest; JSON with `nodes` (or a list of such
objects, as `n8n export:workflow --all` writes) → n8n; YAML with `kind` → a flowpin
manifest. Anything else is refused with the reason.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from controller.model.findings import Finding, PathElement
from controller.model.source_map import load_yaml

Format = Literal["flowpin-yaml", "flowpin-json", "bundle", "n8n", "unknown"]
GZIP_MAGIC = b"\x1f\x8b"
MAX_JSON_BYTES = 64 * 1024 * 1024


@dataclass
class Detected:
    format: Format
    documents: list[Any] = field(default_factory=list)  # parsed content (several for n8n lists)
    reason: str = ""  # why the format is unknown
    findings: list[Finding] = field(default_factory=list)


def detect(name: str, content: bytes) -> Detected:
    if content.startswith(GZIP_MAGIC):
        return Detected("bundle")
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        return Detected("unknown", reason="not UTF-8 text, and not a .tar.gz bundle")
    stripped = text.lstrip()
    if not stripped:
        return Detected("unknown", reason="the file is empty")
    if stripped[0] in "{[":
        if len(content) > MAX_JSON_BYTES:
            return Detected("unknown", reason=f"larger than {MAX_JSON_BYTES // 2**20} MiB")
        try:
            data = json.loads(text)
        except RecursionError:
            return Detected("unknown", reason="JSON nested too deeply")
        except ValueError as error:
            if name.endswith(".json") or not _yaml_mapping(content, name):
                message = getattr(error, "msg", str(error))
                line, column = getattr(error, "lineno", 1), getattr(error, "colno", 1)
                return Detected(
                    "unknown",
                    reason=f"invalid JSON at line {line}, column {column}: {message}",
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
        return Detected("n8n", [data])
    return Detected(
        "unknown",
        reason="not a flowpin manifest (no `kind`), an n8n workflow (no `nodes`) or a bundle",
    )


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
    (1, 1) when unknown: positions for findings. JSON is scanned with a regex tokenizer that
    stops once every path is found; a YAML parse of a large n8n export costs ten times as
    much."""
    wanted = set(paths)
    text = content.decode("utf-8-sig", "replace")
    if text.lstrip()[:1] in ("{", "["):
        prefixes = {p[:n] for p in wanted for n in range(len(p) + 1)}
        found = _json_positions(text, prefixes)
    else:
        document = load_yaml(content, filename, max_bytes=len(content) + 1, max_nodes=10**7)
        found = {}
        for path in wanted:
            try:
                found[path] = document.position(path) if document.ok else (1, 1)
            except Exception:  # a position is a courtesy; never fail a report over it
                found[path] = (1, 1)
    located: dict[tuple[PathElement, ...], tuple[int, int]] = {}
    for path in wanted:
        nearest = path
        while nearest and nearest not in found:
            nearest = nearest[:-1]
        located[path] = found.get(nearest, (1, 1))
    return located


_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\]:,]|[^\s{}\[\]:,"]+')


def _json_positions(
    text: str, wanted: set[tuple[PathElement, ...]]
) -> dict[tuple[PathElement, ...], tuple[int, int]]:
    """Path → (line, column) of the values at `wanted` paths."""
    positions: dict[tuple[PathElement, ...], tuple[int, int]] = {}
    path: list[PathElement] = []
    frames: list[list[Any]] = []  # [kind, index, expecting a key]
    for match in _JSON_TOKEN.finditer(text):
        token = match.group(0)
        frame = frames[-1] if frames else None
        if frame is not None and frame[0] == "{" and frame[2]:
            if token == "}":  # an empty object
                frames.pop()
                continue
            if not token.startswith('"'):
                break  # not JSON after all: what was found so far
            frame[2] = False
            path.append(json.loads(token) if "\\" in token else token[1:-1])
            continue
        if token == ":":
            continue
        if token == ",":
            if frame is not None:
                path.pop()
                if frame[0] == "[":
                    frame[1] += 1
                    path.append(frame[1])
                else:
                    frame[2] = True
            continue
        if token in ("}", "]"):
            if frames:
                frames.pop()
                path.pop()
            continue
        key = tuple(path)
        if key in wanted and key not in positions:
            offset = match.start()
            line = text.count("\n", 0, offset) + 1
            positions[key] = (line, offset - (text.rfind("\n", 0, offset) + 1) + 1)
            if len(positions) == len(wanted):
                break
        if token == "{":
            frames.append(["{", None, True])
        elif token == "[":
            frames.append(["[", 0, False])
            path.append(0)
    return positions


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
