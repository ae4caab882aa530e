"""Format detection and the YAML flowpin writes."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.interop.formats import detect, dump_yaml, locate


@pytest.mark.parametrize(
    ("name", "content", "fmt", "reason"),
    [
        ("b.tar.gz", gzip.compress(b"x"), "bundle", ""),
        ("w.json", b'{"kind": "Workflow"}', "flowpin-json", ""),
        ("w.yaml", b"kind: Workflow\nmetadata: {name: a}\n", "flowpin-yaml", ""),
        ("n.json", b'{"nodes": [], "connections": {}}', "n8n", ""),
        ("n.json", b'[{"nodes": []}, {"nodes": []}]', "n8n", ""),
        ("n.yaml", b"nodes: []\n", "n8n", ""),
        ("x.json", b'{"hello": 1}', "unknown", "without `kind`, `nodes` or `connections`"),
        ("x.json", b'{"nodes": [', "unknown", "invalid JSON at line 1"),
        ("x.yaml", b"a: [", "unknown", "invalid YAML"),
        ("x.yaml", b"just text\n", "unknown", "not a flowpin manifest"),
        ("x.json", b"", "unknown", "empty"),
        ("x.bin", b"\xff\xfe\x00", "unknown", "not UTF-8"),
        ("x.json", b"[1, 2]", "unknown", "a JSON list"),
    ],
)
def test_detect(name: str, content: bytes, fmt: str, reason: str) -> None:
    detected = detect(name, content)
    assert detected.format == fmt
    assert reason in detected.reason


def test_n8n_lists_give_each_workflow() -> None:
    assert len(detect("all.json", b'[{"nodes": []}, {"nodes": [], "name": "b"}]').documents) == 2


def test_locate_finds_json_and_yaml_positions() -> None:
    content = json.dumps({"nodes": [{"name": "a"}, {"name": "b", "type": "x"}]}, indent=2).encode()
    found = locate(content, "f.json", [("nodes", 1, "type"), ("nodes", 1, "gone"), ("nope",)])
    assert found == {("nodes", 1, "type"): (8, 15), ("nodes", 1, "gone"): (6, 5), ("nope",): (1, 1)}
    assert locate(b"a:\n  b: [1, 2]\n", "f.yaml", [("a", "b", 1)]) == {("a", "b", 1): (2, 10)}


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.text() | st.integers() | st.booleans() | st.none(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
        max_leaves=20,
    )
)
def test_dump_yaml_reads_back_the_same(value: object) -> None:
    assert yaml.safe_load(dump_yaml({"v": value})) == {"v": value}


def test_multi_line_strings_are_literal_blocks() -> None:
    assert dump_yaml({"a": "one\ntwo\n"}) == b"a: |\n  one\n  two\n"


json_values = st.recursive(
    st.text(max_size=8)
    | st.integers()
    | st.booleans()
    | st.none()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4),
    max_leaves=25,
)


@settings(max_examples=200, deadline=None)
@given(json_values, st.sampled_from([None, 1, 2]))
def test_json_positions_agree_with_the_yaml_source_map(value: object, indent: int | None) -> None:
    from controller.model.source_map import load_yaml

    text = json.dumps({"root": value}, indent=indent)
    document = load_yaml(text.encode(), "x.json")
    if not document.ok:  # a few JSON spellings are not YAML 1.1; nothing to compare with
        return
    paths = list(_paths(document.data))
    for path, position in locate(text.encode(), "x.json", paths).items():
        assert document.position(path) == position, path


def _paths(value: object, prefix: tuple[object, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))
