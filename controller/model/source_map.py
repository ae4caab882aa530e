"""Load one YAML manifest into plain data plus a map from field paths to file positions.

Every problem with the input becomes a `Finding` (never an exception), because manifests
come from users' pull requests and a bad file must be reported with file:line, not crash a
sync. Guard rails run on PyYAML's event stream before anything recursive touches the
document: nesting depth, alias expansion (billion laughs), recursive aliases and the number
of documents.

API: `load_yaml(data, filename) -> LoadedDocument`. Check `.findings` (or `.ok`); `.data` is
the value `yaml.safe_load` would return, or None when there is an error finding.
`.position(path)` gives 1-based (line, column) for findings raised later (schema, graph).
"""

from __future__ import annotations

import codecs
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from controller.model.findings import Finding, PathElement, format_path

DEFAULT_MAX_BYTES = 1024 * 1024
DEFAULT_MAX_DEPTH = 64
DEFAULT_MAX_NODES = 100_000

# libyaml's parser is an iterative state machine (deep input cannot overflow a stack) and
# about ten times faster than PyYAML's Python one; events carry the same marks.
_EVENT_LOADER: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = getattr(
    yaml, "CSafeLoader", yaml.SafeLoader
)

_MERGE_TAG = "tag:yaml.org,2002:merge"
_NULL_TAG = "tag:yaml.org,2002:null"
_OTHER_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)


@dataclass(frozen=True, eq=False)
class LoadedDocument:
    filename: str
    data: Any
    findings: tuple[Finding, ...] = ()
    root: Node | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return not any(f.is_error for f in self.findings)

    def position(self, path: Sequence[PathElement]) -> tuple[int, int]:
        """1-based (line, column) of the value at `path`.

        For a path that does not exist, the position of the deepest existing part: the key
        that introduces it when there is one (`spec:` for a missing `spec.version`), so a
        "missing field" error points at the mapping it belongs in.
        """
        node = self.root
        if node is None:
            return (1, 1)
        key_node: Node | None = None
        for element in path:
            child, child_key = _child(node, element)
            if child is None:
                anchor = key_node if key_node is not None else node
                return _pos(anchor)
            node, key_node = child, child_key
        return _pos(node)

    def key_position(self, path: Sequence[PathElement]) -> tuple[int, int]:
        """1-based (line, column) of the key of the last element of `path` (for "unknown
        field" errors, which are about the key, whatever its value spans)."""
        node = self.root
        key_node: Node | None = None
        for element in path:
            if node is None:
                break
            child, key_node = _child(node, element)
            if child is None:
                return self.position(path)
            node = child
        return _pos(key_node) if key_node is not None else self.position(path)

    def finding(
        self,
        path: Sequence[PathElement],
        code: str,
        message: str,
        severity: str = "error",
        at_key: bool = False,
    ) -> Finding:
        """A finding located at `path` in this document (at its key with `at_key`)."""
        line, column = self.key_position(path) if at_key else self.position(path)
        return Finding(
            self.filename,
            line,
            column,
            code,
            message,
            format_path(path),
            "warning" if severity == "warning" else "error",
        )

    def key_findings(self) -> tuple[Finding, ...]:
        """One finding per mapping key that is not a string (`on:` is a boolean in YAML 1.1,
        `1:` a number, `~:` null): manifests become JSON objects, whose keys are strings."""
        if self.root is None:
            return ()
        found: list[Finding] = []
        for node, path in _walk(self.root):
            if not isinstance(node, MappingNode):
                continue
            for key, _value in node.value:
                if isinstance(key, ScalarNode) and key.tag == _MERGE_TAG:
                    continue
                problem = _key_problem(key)
                if problem is not None:
                    line, column = _pos(key)
                    where = format_path((*path, str(key.value))) if path else str(key.value)
                    found.append(
                        Finding(self.filename, line, column, "key-not-string", problem, where)
                    )
        return tuple(found)


def _key_problem(key: Node) -> str | None:
    if not isinstance(key, ScalarNode):
        shape = "a list" if isinstance(key, SequenceNode) else "a mapping"
        return f"a key must be a string, not {shape}"
    value = _key_value(key)
    if isinstance(value, str):
        return None
    raw = key.value
    if isinstance(value, bool):
        read = f"the boolean {str(value).lower()}"
    elif value is None:
        read = "null"
    elif isinstance(value, int | float):
        read = f"the number {value!r}"
    else:
        read = f"a {type(value).__name__}"
    quoted = f'"{raw}"' if raw and "'" in raw else f"'{raw}'"
    return f"key `{raw or '~'}` is not a string (YAML reads it as {read}; quote it: {quoted})"


def _pos(node: Node) -> tuple[int, int]:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def _key_value(node: Node) -> Any:
    """The Python value of a scalar key, as safe_load constructs it (`yes` -> True)."""
    if not isinstance(node, ScalarNode):
        return _Unmatchable
    try:
        return SafeConstructor().construct_object(node, deep=True)
    except Exception:
        return _Unmatchable


class _Unmatchable:
    """Stands for a key that no path element can name."""


def _same_key(a: Any, b: Any) -> bool:
    # bool is an int in Python; a path element 1 must not select a `true:` key.
    return type(a) is type(b) and a == b


def _child(node: Node, element: PathElement) -> tuple[Node | None, Node | None]:
    if isinstance(node, SequenceNode) and isinstance(element, int):
        if not isinstance(element, bool) and 0 <= element < len(node.value):
            return node.value[element], None
        return None, None
    if isinstance(node, MappingNode):
        found: tuple[Node | None, Node | None] = (None, None)
        for key, value in node.value:  # the last one wins, as in the constructed dict
            if _same_key(_key_value(key), element):
                found = (value, key)
        return found
    return None, None


def load_yaml(
    data: bytes | str,
    filename: str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_nodes: int = DEFAULT_MAX_NODES,
) -> LoadedDocument:
    """Load a single-document YAML file; every problem is returned as a finding."""
    try:
        return _load(data, filename, max_bytes, max_depth, max_nodes)
    except Exception as exc:  # last line of defence: a finding, never a traceback
        return _failed(filename, 1, 1, "yaml-syntax", f"cannot read YAML: {exc}")


def _failed(filename: str, line: int, column: int, code: str, message: str) -> LoadedDocument:
    return LoadedDocument(filename, None, (Finding(filename, line, column, code, message),))


def _load(
    data: bytes | str, filename: str, max_bytes: int, max_depth: int, max_nodes: int
) -> LoadedDocument:
    # A character is at least one byte, so the cheap length check comes first.
    if len(data) > max_bytes or (
        isinstance(data, str) and len(data.encode("utf-8", "surrogatepass")) > max_bytes
    ):
        return _failed(
            filename, 1, 1, "file-too-large", f"file is larger than the limit of {max_bytes} bytes"
        )
    if isinstance(data, bytes):
        decoded = _decode(data, filename)
        if isinstance(decoded, LoadedDocument):
            return decoded
        text = decoded
    else:
        text = data

    events: list[yaml.Event] = []
    problem = _scan(text, filename, max_depth, max_nodes, events)
    if problem is not None:
        return LoadedDocument(filename, None, (problem,))

    loader = _ReplayLoader(events)
    try:
        try:
            root = loader.get_single_node()
        except yaml.YAMLError as exc:
            return LoadedDocument(filename, None, (_yaml_finding(exc, text, filename),))
        if root is None or (isinstance(root, ScalarNode) and root.tag == _NULL_TAG):
            return _failed(filename, 1, 1, "empty-document", "file has no YAML document")
        duplicates = tuple(_duplicate_keys(root, filename))
        if duplicates:
            return LoadedDocument(filename, None, duplicates, root)
        try:
            value = loader.construct_document(root)
        except yaml.YAMLError as exc:
            return LoadedDocument(filename, None, (_yaml_finding(exc, text, filename),), root)
        except Exception as exc:  # e.g. ValueError for `2024-13-45` or `!!int abc`
            line, column = _failing_scalar(root)
            finding = Finding(filename, line, column, "yaml-syntax", f"invalid value: {exc}")
            return LoadedDocument(filename, None, (finding,), root)
    finally:
        loader.dispose()
    return LoadedDocument(filename, value, (), root)


def _decode(data: bytes, filename: str) -> str | LoadedDocument:
    for bom, name in _OTHER_BOMS:
        if data.startswith(bom):
            return _failed(filename, 1, 1, "encoding", f"file is {name}; save it as UTF-8")
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        line_start = before.rfind(b"\n") + 1
        column = len(before[line_start:].decode("utf-8")) + 1
        return _failed(
            filename,
            line,
            column,
            "encoding",
            f"file is not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})",
        )


def _yaml_finding(exc: yaml.YAMLError, text: str, filename: str) -> Finding:
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        char = exc.character
        shown = f"U+{char:04X}" if isinstance(char, int) else repr(char)
        message = f"character {shown} is not allowed in YAML ({exc.reason})"
        return Finding(filename, line, column, "yaml-syntax", message)
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        message = exc.problem or "invalid YAML"
        if message == "second occurrence" and exc.context and exc.context_mark is not None:
            # PyYAML words a duplicate anchor back to front; say it plainly.
            name = exc.context.split("'")[1] if exc.context.count("'") >= 2 else "?"
            first = exc.context_mark.line + 1
            return Finding(
                filename,
                mark.line + 1,
                mark.column + 1,
                "yaml-syntax",
                f"duplicate anchor &{name}: first at line {first}, again at line {mark.line + 1}",
            )
        if exc.context:
            where = ""
            if exc.context_mark is not None and exc.context_mark.line != mark.line:
                where = f" started at line {exc.context_mark.line + 1}"
            message = f"{message} ({exc.context}{where})"
        return Finding(filename, mark.line + 1, mark.column + 1, "yaml-syntax", message)
    return Finding(filename, 1, 1, "yaml-syntax", str(exc) or "invalid YAML")


class _ReplayLoader(yaml.SafeLoader):
    """SafeLoader fed from the events `_scan` already parsed: pure-Python PyYAML is slow,
    and parsing twice would double the cost."""

    def __init__(self, events: list[yaml.Event]) -> None:
        super().__init__("")
        self._replay = deque(events)

    def check_event(self, *choices: Any) -> bool:
        if not self._replay:
            return False
        return not choices or isinstance(self._replay[0], choices)

    def peek_event(self) -> yaml.Event | None:
        return self._replay[0] if self._replay else None

    def get_event(self) -> yaml.Event | None:
        return self._replay.popleft() if self._replay else None


@dataclass
class _Open:
    anchor: str | None
    count: int = 1
    height: int = 0


def _scan(
    text: str, filename: str, max_depth: int, max_nodes: int, recorded: list[yaml.Event]
) -> Finding | None:
    """Walk the event stream (no recursion), recording it, up to the first problem."""
    stack: list[_Open] = []
    sizes: dict[str, tuple[int, int]] = {}  # anchor -> (expanded nodes, height)
    documents = 0
    total = 0

    def close(size: int, height: int, anchor: str | None) -> None:
        if anchor is not None:
            sizes[anchor] = (size, height)
        if stack:
            stack[-1].count += size
            stack[-1].height = max(stack[-1].height, height)

    def at(event: yaml.Event, code: str, message: str) -> Finding:
        mark = event.start_mark
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        return Finding(filename, line, column, code, message)

    events: Iterator[yaml.Event] = yaml.parse(text, Loader=_EVENT_LOADER)
    extra_start: yaml.Event | None = None  # start of a document after the first
    extra_index = 0
    try:
        for event in events:
            recorded.append(event)
            if extra_start is not None:
                # A later document may only be empty (a trailing `---`, as kubectl allows).
                if isinstance(event, yaml.DocumentEndEvent):
                    del recorded[extra_index:]
                    extra_start = None
                    continue
                if not (
                    isinstance(event, yaml.ScalarEvent)
                    and event.value == ""
                    and event.tag is None
                    and event.anchor is None
                ):
                    return at(
                        extra_start,
                        "multiple-documents",
                        "file has more than one YAML document; put one manifest per file",
                    )
            if isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    extra_start, extra_index = event, len(recorded) - 1
            elif isinstance(event, yaml.AliasEvent):
                if any(o.anchor == event.anchor for o in stack):
                    return at(
                        event,
                        "yaml-recursive-alias",
                        f"alias *{event.anchor} refers to a node that contains it",
                    )
                size, height = sizes.get(event.anchor or "", (1, 1))
                total += size
                if len(stack) + height > max_depth:
                    return at(
                        event,
                        "nesting-too-deep",
                        f"alias *{event.anchor} nests the document deeper than {max_depth} levels",
                    )
                if total > max_nodes:
                    return at(event, "too-many-nodes", _too_many(max_nodes))
                close(size, height, None)
            elif isinstance(event, yaml.ScalarEvent):
                total += 1
                if total > max_nodes:
                    return at(event, "too-many-nodes", _too_many(max_nodes))
                close(1, 1, event.anchor)
            elif isinstance(event, yaml.CollectionStartEvent):
                total += 1
                if len(stack) >= max_depth:
                    return at(
                        event, "nesting-too-deep", f"nesting is deeper than {max_depth} levels"
                    )
                if total > max_nodes:
                    return at(event, "too-many-nodes", _too_many(max_nodes))
                stack.append(_Open(event.anchor))
            elif isinstance(event, yaml.CollectionEndEvent):
                done = stack.pop()
                close(done.count, done.height + 1, done.anchor)
    except yaml.YAMLError as exc:
        if _LIBYAML_DEPTH in str(getattr(exc, "problem", "")):
            # libyaml's own nesting limit: word it as ours, at the first level past ours.
            return _too_deep_at(text, recorded, len(stack), max_depth, filename, exc)
        return _yaml_finding(_reworded(exc, text), text, filename)
    finally:
        events.close()  # type: ignore[attr-defined]
    return None


class _Mark(Protocol):
    """PyYAML's and libyaml's marks: two classes with the same fields."""

    index: int
    line: int
    column: int


_LIBYAML_DEPTH = "exceeded maximum nesting depth"
_LIBYAML_PHRASES = {
    # libyaml's terser phrases, in the words PyYAML's Python parser uses (and our docs show).
    "mapping values are not allowed in this context": "mapping values are not allowed here",
}


def _reworded(exc: yaml.YAMLError, text: str) -> yaml.YAMLError:
    """libyaml's error, worded as a person needs it: the offending character named.

    The text is never parsed again: PyYAML's Python parser words errors better, but it is
    quadratic on some inputs (deep flow nesting) and would turn a bad file into a stall.
    """
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return exc
    problem = exc.problem or ""
    shown = _shown_char(text, exc.problem_mark)
    if shown is None:  # the position cannot be checked (other line breaks): libyaml's words
        return exc
    if problem == "found character that cannot start any token":
        problem = f"found character {shown} that cannot start any token"
    elif problem == "did not find expected '-' indicator":
        problem = f"bad indentation: expected a new list item ('- ') here, but got {shown}"
    elif problem == "did not find expected key":
        problem = f"bad indentation: expected a key here, but got {shown}"
    elif problem.startswith("did not find expected "):
        problem = f"expected {problem.removeprefix('did not find expected ')}, but got {shown}"
    problem = _LIBYAML_PHRASES.get(problem, problem)
    return yaml.MarkedYAMLError(exc.context, exc.context_mark, problem, exc.problem_mark, exc.note)


def _shown_char(text: str, mark: _Mark) -> str | None:
    """The character at a libyaml mark, quoted; None when the mark cannot be checked."""
    index = _index_of(text, mark)
    if index is None:
        return None
    return "the end of the file" if index >= len(text) else repr(text[index])


def _index_of(text: str, mark: _Mark) -> int | None:
    """The character index of a libyaml mark, checked against its line and column."""
    index = mark.index
    if not 0 <= index <= len(text):
        return None
    line_start = text.rfind("\n", 0, index) + 1
    if text.count("\n", 0, index) != mark.line or index - line_start != mark.column:
        return None
    return index


def _too_deep_at(
    text: str,
    recorded: list[yaml.Event],
    depth: int,
    limit: int,
    filename: str,
    exc: yaml.YAMLError,
) -> Finding:
    """The first flow bracket past `limit`, found by one linear walk from the last event
    libyaml delivered (its scanner reads far ahead in flow context, so the events stop short
    of the deep part). Falls back to libyaml's own mark."""
    start = recorded[-1].end_mark if recorded else None
    index = _index_of(text, start) if start is not None else 0
    found = _bracket_past(text, index, depth, limit) if index is not None else None
    if found is None:
        mark = getattr(exc, "problem_mark", None)
        found = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    message = f"nesting is deeper than {limit} levels"
    return Finding(filename, found[0], found[1], "nesting-too-deep", message)


def _bracket_past(text: str, index: int, depth: int, limit: int) -> tuple[int, int] | None:
    """1-based (line, column) of the `[` or `{` that opens level `limit + 1`, skipping quoted
    scalars and comments; None when the walk does not get there."""
    quote = ""
    position = index
    end = len(text)
    while position < end:
        char = text[position]
        if quote == "'":
            if char == "'":
                if text.startswith("''", position):
                    position += 1
                else:
                    quote = ""
        elif quote == '"':
            if char == "\\":
                position += 1
            elif char == '"':
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "#" and (position == 0 or text[position - 1] in " \t\n"):
            newline = text.find("\n", position)
            position = end if newline < 0 else newline
            continue
        elif char in "[{":
            depth += 1
            if depth > limit:
                line_start = text.rfind("\n", 0, position) + 1
                return text.count("\n", 0, position) + 1, position - line_start + 1
        elif char in "]}":
            depth -= 1
        position += 1
    return None


def _too_many(limit: int) -> str:
    return f"document has more than {limit} nodes (an alias counts as a copy of its anchor)"


def _path_element(name: Any, key: Node) -> PathElement:
    if isinstance(name, str) or (isinstance(name, int) and not isinstance(name, bool)):
        return name
    return str(key.value)


def _walk(root: Node) -> Iterator[tuple[Node, tuple[PathElement, ...]]]:
    """Every node once (aliases share nodes), depth-first in document order, with its path."""
    seen: set[int] = set()
    todo: list[tuple[Node, tuple[PathElement, ...]]] = [(root, ())]
    while todo:
        node, path = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        yield node, path
        children: list[tuple[Node, tuple[PathElement, ...]]] = []
        if isinstance(node, SequenceNode):
            children = [(child, (*path, i)) for i, child in enumerate(node.value)]
        elif isinstance(node, MappingNode):
            for key, value in node.value:
                name = _key_value(key)
                element = _path_element(name, key)
                children.append((key, path))
                children.append((value, (*path, element)))
        todo.extend(reversed(children))


def _duplicate_keys(root: Node, filename: str) -> Iterator[Finding]:
    for node, path in _walk(root):
        if not isinstance(node, MappingNode):
            continue
        seen: dict[tuple[type, Any], Node] = {}
        for key, _value in node.value:
            if not isinstance(key, ScalarNode) or key.tag == _MERGE_TAG:
                continue
            name = _key_value(key)
            marker = (type(name), name)
            if name is _Unmatchable:
                continue
            try:
                first = seen.setdefault(marker, key)
            except TypeError:  # unhashable key value; the constructor reports it
                continue
            if first is key:
                continue
            a, b = _pos(first), _pos(key)
            where = (f"line {a[0]}", f"line {b[0]}")
            if a[0] == b[0]:
                where = (f"line {a[0]} column {a[1]}", f"column {b[1]}")
            element = _path_element(name, key)
            yield Finding(
                filename,
                b[0],
                b[1],
                "duplicate-key",
                f"duplicate key {key.value!r}: first at {where[0]}, again at {where[1]}",
                format_path((*path, element)),
            )


def _failing_scalar(root: Node) -> tuple[int, int]:
    """Position of the first scalar that safe_load cannot construct."""
    for node, _path in _walk(root):
        if isinstance(node, ScalarNode):
            try:
                SafeConstructor().construct_object(node, deep=True)
            except Exception:
                return _pos(node)
    return _pos(root)
