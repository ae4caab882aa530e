from __future__ import annotations

import datetime
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.model.source_map import LoadedDocument, load_yaml

WORKFLOW = """\
apiVersion: flowpin.dev/v1alpha1
kind: Workflow
metadata: {name: lead-nurture, labels: {team: growth}}
spec:
  version: 1.4.0
  triggers:
    - {id: signup, type: webhook}
  steps:
    - id: welcome
      type: http
      next: wait-2d
    - {id: wait-2d, type: wait, wait: {duration: 48h}}
"""


def codes(doc: LoadedDocument) -> list[str]:
    return [f.code for f in doc.findings]


def only(doc: LoadedDocument) -> tuple[int, int, str, str]:
    assert doc.data is None and not doc.ok
    (f,) = doc.findings
    return (f.line, f.column, f.code, f.message)


def test_valid_document_matches_safe_load() -> None:
    doc = load_yaml(WORKFLOW, "workflows/lead.yaml")
    assert doc.ok and doc.findings == ()
    assert doc.data == yaml.safe_load(WORKFLOW)
    assert doc.filename == "workflows/lead.yaml"


@pytest.mark.parametrize(
    "text",
    [
        "a: yes\nb: no\nc: on\nd: ~\ne: 0o17\nf: 0x1F\ng: 1_000\nh: 1.5e3\ni: .inf\n",
        "when: 2024-01-02\nat: 2024-01-02T03:04:05Z\n",
        "version: 1.10\nport: 08\nname: '1.0'\n",
        "base: &b {x: 1, y: 2}\nderived:\n  <<: *b\n  y: 3\n",
        "bin: !!binary aGk=\nset: !!set {a, b}\nstr: !!str 12\n",
        "list:\n- a\n- [b, c]\n- {d: e}\n",
        "'quoted key': \"v\\tx\"\nmulti: |\n  line1\n  line2\n",
        "- 1\n- 2\n",
        "just a scalar\n",
    ],
)
def test_yaml_1_1_scalars_as_safe_load(text: str) -> None:
    doc = load_yaml(text, "f.yaml")
    assert doc.ok, doc.findings
    assert doc.data == yaml.safe_load(text)


def test_timestamps_stay_dates() -> None:
    doc = load_yaml("when: 2024-01-02\n", "f.yaml")
    assert doc.data == {"when": datetime.date(2024, 1, 2)}


@pytest.mark.parametrize(
    ("path", "position"),
    [
        ((), (1, 1)),
        (("apiVersion",), (1, 13)),
        (("metadata", "name"), (3, 18)),
        (("metadata", "labels", "team"), (3, 47)),
        (("spec",), (5, 3)),  # a block mapping starts at its first key
        (("spec", "version"), (5, 12)),
        (("spec", "triggers", 0), (7, 7)),
        (("spec", "triggers", 0, "type"), (7, 26)),
        (("spec", "steps", 0, "next"), (11, 13)),
        (("spec", "steps", 1, "wait", "duration"), (12, 50)),
        # Missing parts: the key that introduces the deepest existing parent.
        (("spec", "inputs"), (4, 1)),
        (("spec", "steps", 7), (8, 3)),
        (("spec", "steps", 0, "retry", "limit"), (9, 7)),
        (("spec", "triggers", 0, "schedule"), (7, 7)),
        (("nope",), (1, 1)),
        (("spec", "version", "deeper"), (5, 3)),
        (("spec", "steps", "0"), (8, 3)),  # a string does not index a list
    ],
)
def test_position(path: tuple[str | int, ...], position: tuple[int, int]) -> None:
    assert load_yaml(WORKFLOW, "f.yaml").position(path) == position


def test_position_of_merged_key_points_at_its_source() -> None:
    doc = load_yaml("base: &b {x: 1, y: 2}\nd:\n  <<: *b\n  y: 3\n", "f.yaml")
    assert doc.position(("d", "x")) == (1, 14)
    assert doc.position(("d", "y")) == (4, 6)


def test_position_keys_are_typed() -> None:
    doc = load_yaml("1: int\n'1': str\nfalse: bool\n", "f.yaml")
    assert doc.data == {1: "int", "1": "str", False: "bool"}
    assert doc.position((1,)) == (1, 4)
    assert doc.position(("1",)) == (2, 6)
    assert doc.position((0,)) == (1, 1)  # 0 does not select the `false:` key


def test_finding_helper_uses_position_and_path() -> None:
    doc = load_yaml(WORKFLOW, "w.yaml")
    f = doc.finding(("spec", "steps", 0, "next"), "unknown-step", "no step 'wait-2d'")
    assert (f.file, f.line, f.column, f.path) == ("w.yaml", 11, 13, "spec.steps[0].next")
    assert f.severity == "error"
    assert doc.finding((), "schema", "m", "warning").severity == "warning"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: b\n  c: d\n", (2, 4, "yaml-syntax", "mapping values are not allowed here")),
        (
            "a: [1, 2\nb: 3\n",
            (
                2,
                2,
                "yaml-syntax",
                "expected ',' or ']', but got ':' "
                "(while parsing a flow sequence started at line 1)",
            ),
        ),
        (
            "a: 'open\n",
            (
                2,
                1,
                "yaml-syntax",
                "found unexpected end of stream (while scanning a quoted scalar started at line 1)",
            ),
        ),
        (
            "\tkey: value\n",
            (
                1,
                1,
                "yaml-syntax",
                "found character '\\t' that cannot start any token "
                "(while scanning for the next token)",
            ),
        ),
        ("a: *nope\n", (1, 4, "yaml-syntax", "found undefined alias 'nope'")),
        (
            "a: !custom 1\n",
            (1, 4, "yaml-syntax", "could not determine a constructor for the tag '!custom'"),
        ),
        (
            "? [a]\n: b\n",
            (1, 3, "yaml-syntax", "found unhashable key (while constructing a mapping)"),
        ),
        ("a: 1\nb: 2024-13-45\n", (2, 4, "yaml-syntax", "invalid value: month must be in 1..12")),
        (
            "a: !!int abc\n",
            (1, 4, "yaml-syntax", "invalid value: invalid literal for int() with base 10: 'abc'"),
        ),
        (
            "a: \x00\n",
            (
                1,
                4,
                "yaml-syntax",
                "character U+0000 is not allowed in YAML (control characters are not allowed)",
            ),
        ),
        ("", (1, 1, "empty-document", "file has no YAML document")),
        ("# only a comment\n", (1, 1, "empty-document", "file has no YAML document")),
        ("---\n", (1, 1, "empty-document", "file has no YAML document")),
        ("~\n", (1, 1, "empty-document", "file has no YAML document")),
        ("null\n", (1, 1, "empty-document", "file has no YAML document")),
        (
            "a: 1\n---\nb: 2\n",
            (
                2,
                1,
                "multiple-documents",
                "file has more than one YAML document; put one manifest per file",
            ),
        ),
        (
            "a: &x [1, *x]\n",
            (1, 11, "yaml-recursive-alias", "alias *x refers to a node that contains it"),
        ),
        (
            "&a x: 1\n&a y: 2\n",
            (
                2,
                1,
                "yaml-syntax",
                "duplicate anchor &a: first at line 1, again at line 2",
            ),
        ),
    ],
)
def test_bad_input_becomes_one_finding(text: str, expected: tuple[int, int, str, str]) -> None:
    assert only(load_yaml(text, "f.yaml")) == expected


def test_duplicate_keys_name_both_lines() -> None:
    doc = load_yaml("spec:\n  version: 1.0.0\n  steps: []\n  version: 1.1.0\n", "f.yaml")
    (f,) = doc.findings
    assert (f.line, f.column, f.code, f.path) == (4, 3, "duplicate-key", "spec.version")
    assert f.message == "duplicate key 'version': first at line 2, again at line 4"
    assert doc.data is None


def test_duplicate_keys_in_flow_mapping_and_by_value() -> None:
    flow = load_yaml("x: {a: 1, a: 2}\n", "f.yaml")
    assert [(f.line, f.column, f.message) for f in flow.findings] == [
        (1, 11, "duplicate key 'a': first at line 1 column 5, again at column 11")
    ]
    # `yes` and `true` are the same key once YAML 1.1 resolves them.
    same = load_yaml("yes: 1\ntrue: 2\n", "f.yaml")
    assert codes(same) == ["duplicate-key"]
    assert same.findings[0].path == "true"


def test_every_duplicate_is_reported_and_merge_keys_are_not_duplicates() -> None:
    doc = load_yaml("a: 1\na: 2\nb: {c: 1, c: 2}\na: 3\n", "f.yaml")
    assert sorted((f.line, f.path) for f in doc.findings) == [(2, "a"), (3, "b.c"), (4, "a")]
    assert load_yaml("b: &b {x: 1}\nc:\n  <<: *b\n  <<: *b\n  x: 2\n", "f.yaml").ok


def test_bytes_input() -> None:
    assert load_yaml(b"a: 1\n", "f.yaml").data == {"a": 1}
    assert load_yaml(b"\xef\xbb\xbfa: 1\n", "f.yaml").data == {"a": 1}  # UTF-8 BOM
    assert load_yaml("a: caf\u00e9\n".encode(), "f.yaml").data == {"a": "caf\u00e9"}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"a: 1\nb: \xff\n", (2, 4, "encoding", "file is not valid UTF-8 (byte 0xff at offset 8)")),
        (
            b"a: \xc3\xa9\xc3(\n",
            (1, 5, "encoding", "file is not valid UTF-8 (byte 0xc3 at offset 5)"),
        ),
        (b"\xff\xfea\x00:\x00", (1, 1, "encoding", "file is UTF-16; save it as UTF-8")),
        (b"\x00\x00\xfe\xff", (1, 1, "encoding", "file is UTF-32; save it as UTF-8")),
    ],
)
def test_encoding_errors(data: bytes, expected: tuple[int, int, str, str]) -> None:
    assert only(load_yaml(data, "f.yaml")) == expected


@pytest.mark.parametrize(
    "data",
    ["a: " + "x" * 2000, ("a: " + "x" * 2000).encode(), "a: " + "\u00e9" * 600],
)
def test_size_limit(data: str | bytes) -> None:
    assert codes(load_yaml(data, "f.yaml", max_bytes=1000)) == ["file-too-large"]


def test_size_limit_default_is_one_mib() -> None:
    assert load_yaml("a: " + "x" * (1024 * 1024 - 10), "f.yaml").ok
    assert codes(load_yaml("a: " + "x" * (1024 * 1024), "f.yaml")) == ["file-too-large"]


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000,
        "{" * 100_000,
        "[" * 100_000 + "]" * 100_000,
        "a:\n" + "".join(" " * (i + 1) + "- \n" for i in range(200)),
        "".join(" " * i + f"k{i}:\n" for i in range(200)) + " " * 200 + "v\n",
    ],
)
def test_deep_nesting_is_a_finding_not_a_recursion_error(text: str) -> None:
    doc = load_yaml(text, "deep.yaml")
    assert codes(doc) == ["nesting-too-deep"]
    assert "deeper than 64 levels" in doc.findings[0].message


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("[" * 100_000, (1, 65)),
        ("a: " + "{" * 5_000, (1, 3 + 64)),
        ('a: [\'[[[\', "[{\\"", ' + "[" * 2_000, (1, 19 + 63)),
        ("a:\n  b: # [[[[\n    " + "[" * 3_000, (3, 5 + 62)),
    ],
)
def test_nesting_past_libyamls_own_limit_is_placed_at_ours(
    text: str, position: tuple[int, int]
) -> None:
    """Newer libyaml refuses flow nesting past 1,000 levels before it emits the events that
    reach our limit of 64; the finding still names the first level past 64, found by one
    linear walk (never by a re-parse with PyYAML's quadratic Python scanner)."""
    doc = load_yaml(text, "deep.yaml")
    assert codes(doc) == ["nesting-too-deep"]
    assert (doc.findings[0].line, doc.findings[0].column) == position


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: @x\n", "found character '@' that cannot start any token"),
        ("a: [1, 2\n", "expected ',' or ']', but got the end of the file"),
        ("- a\n b: c\n", "mapping values are not allowed here"),
        ("a:\n  - x\n y: 1\n", "bad indentation"),
    ],
)
def test_libyaml_errors_are_worded_for_people(text: str, message: str) -> None:
    doc = load_yaml(text, "f.yaml")
    assert codes(doc) == ["yaml-syntax"]
    assert message in doc.findings[0].message


def test_nesting_limit_is_a_parameter() -> None:
    assert load_yaml("a: [[[1]]]\n", "f.yaml", max_depth=4).ok
    assert codes(load_yaml("a: [[[1]]]\n", "f.yaml", max_depth=3)) == ["nesting-too-deep"]


def test_alias_cannot_smuggle_in_depth() -> None:
    text = "a: &a " + "[" * 40 + "]" * 40 + "\nb: " + "[" * 30 + "*a" + "]" * 30 + "\n"
    doc = load_yaml(text, "f.yaml")
    assert codes(doc) == ["nesting-too-deep"]
    assert doc.findings[0].line == 2


BILLION_LAUGHS = "\n".join(
    [
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
        "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]",
        "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]",
        "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]",
        "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]",
        "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]",
        "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]",
        "h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]",
        "i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]",
        "",
    ]
)


def test_billion_laughs() -> None:
    doc = load_yaml(BILLION_LAUGHS, "bomb.yaml")
    assert codes(doc) == ["too-many-nodes"]
    assert doc.findings[0].line <= 6


def test_node_limit_is_a_parameter_and_counts_aliases() -> None:
    text = "a: &a [1, 2, 3]\nb: [*a, *a]\n"  # 1 + (4) + (1 + 4 + 4) + 2 keys = 16
    assert load_yaml(text, "f.yaml", max_nodes=16).ok
    assert codes(load_yaml(text, "f.yaml", max_nodes=15)) == ["too-many-nodes"]


def test_findings_carry_the_filename() -> None:
    doc = load_yaml("a: [", "environments/prod.yaml")
    assert doc.findings[0].file == "environments/prod.yaml"


YAMLISH = st.text(
    alphabet=st.sampled_from(list("ab:-[]{},&*!|>'\"#?%@`\n\t ~01.\\\x00\u00e9")), max_size=60
)


@settings(max_examples=300, deadline=None)
@given(YAMLISH)
def test_never_raises_on_yamlish_text(text: str) -> None:
    doc = load_yaml(text, "f.yaml")
    _check_result(doc)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_never_raises_on_arbitrary_text(text: str) -> None:
    _check_result(load_yaml(text, "f.yaml"))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=80))
def test_never_raises_on_arbitrary_bytes(data: bytes) -> None:
    _check_result(load_yaml(data, "f.yaml"))


def _check_result(doc: LoadedDocument) -> None:
    assert isinstance(doc, LoadedDocument)
    if doc.ok:
        assert doc.findings == ()
        assert doc.position(()) >= (1, 1)
    else:
        assert doc.data is None and doc.findings
        for f in doc.findings:
            assert f.line >= 1 and f.column >= 1 and f.file == "f.yaml"
        # Known guard-rail and parser codes only, never the last-resort catch-all message.
        assert not any(f.message.startswith("cannot read YAML") for f in doc.findings)


@settings(max_examples=100, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=6), children, max_size=4)
        ),
        max_leaves=20,
    )
)
def test_round_trip_of_dumped_data(value: Any) -> None:
    text = yaml.safe_dump({"root": value})
    doc = load_yaml(text, "f.yaml")
    assert doc.ok
    assert doc.data == {"root": value}
