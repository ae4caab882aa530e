"""Bad and hostile input for `flowpin import`, the pure parts: bounded JSON, bounded tar
headers, malformed n8n connections, shapes that used to raise, branch names, and one file's
failure staying that file's."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import tracemalloc
from typing import Any

import pytest

from controller.interop import imports
from controller.interop.bundle import BundleError, build_manifest, pack, unpack
from controller.interop.expressions import Untranslatable, translate, translate_value
from controller.interop.formats import MAX_TEXT_BYTES, detect, dump_yaml, locate
from controller.interop.gitio import branch_name_problem
from controller.interop.imports import load_file, plan_import
from controller.interop.migrations import migrate
from controller.interop.n8n import MAX_NODES, from_n8n, to_n8n
from controller.model import jsonsafe, validate
from controller.model.validate import NoHistory
from tests.unit.interop.n8nfixtures import link, node, workflow


def n8n(connections: dict[str, Any], **top: Any) -> dict[str, Any]:
    nodes = [node("Start", "manualTrigger"), node("Next", "noOp", position=[200, 0])]
    return workflow(nodes, connections, **top)


def plan(files: dict[str, bytes], head: dict[str, bytes] | None = None) -> Any:
    results = [load_file(name, content) for name, content in files.items()]
    return plan_import(results, head or {}, NoHistory(), "new")


# --------------------------------------------------------------------------- JSON


def test_deep_json_is_refused_by_a_scan_before_parsing() -> None:
    with pytest.raises(jsonsafe.JSONInputError) as caught:
        jsonsafe.loads("[" * 100_000)
    assert (caught.value.line, caught.value.column) == (1, 65)
    assert caught.value.message == "nested deeper than 64 levels"
    assert not caught.value.syntax
    nested = "[" * 64 + "]" * 64
    assert jsonsafe.loads(nested) is not None
    # Brackets inside strings are text, not nesting.
    assert jsonsafe.loads(json.dumps({"a": "[" * 1000})) == {"a": "[" * 1000}
    assert jsonsafe.too_deep('{"a": "\\"[[[["}', 1) is None
    assert jsonsafe.too_deep('{"a": {"b": 1}}', 1) == 6


@pytest.mark.parametrize(
    ("text", "where", "line"),
    [
        ('{"nodes": [{"name": "A"},\n {"name": "B\\ud800"}]}', "nodes[1].name", 2),
        ('{"a": "\\udc00x"}', "a", 1),
        ('{"a": "x\\ud83d"}', "a", 1),
        ('{"k\\ud800": 1}', "the top", 1),
    ],
)
def test_lone_surrogates_are_refused_naming_the_field(text: str, where: str, line: int) -> None:
    with pytest.raises(jsonsafe.JSONInputError, match="lone UTF-16 surrogate") as caught:
        jsonsafe.loads(text)
    assert where in caught.value.message
    assert caught.value.line == line
    str(caught.value).encode("utf-8")  # printable


def test_numbers_python_cannot_read_are_refused_with_their_position() -> None:
    with pytest.raises(jsonsafe.JSONInputError) as caught:
        jsonsafe.loads('{"a":\n [' + "1" * 5000 + "]}")
    assert (
        str(caught.value) == "line 2, column 3: the number 11111111111111111111... is out of range"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[NaN]", "line 1, column 2: NaN is not a JSON number"),
        ('{"a": -Infinity}', "line 1, column 7: -Infinity is not a JSON number"),
        ("[1,\n 1e999]", "line 2, column 2: the number 1e999 is out of range"),
    ],
)
def test_numbers_the_api_server_refuses_are_refused_here(text: str, message: str) -> None:
    with pytest.raises(jsonsafe.JSONInputError) as caught:
        jsonsafe.loads(text)
    assert str(caught.value) == message


def test_surrogate_pairs_and_escaped_backslashes_are_fine() -> None:
    assert jsonsafe.loads('"\\ud83d\\ude00"') == "\U0001f600"
    assert jsonsafe.loads('"\\\\ud800"') == "\\ud800"


def test_detect_refuses_oversized_deep_and_surrogate_json() -> None:
    big = b'{"nodes": [], "name": "' + b"a" * MAX_TEXT_BYTES + b'"}'
    assert "larger than the 16 MiB a JSON or YAML file may have" in detect("x.json", big).reason
    deep = detect("x.json", b"[" * 100_000)
    assert deep.reason == "invalid JSON at line 1, column 65: nested deeper than 64 levels"
    # not retried as YAML when the file name is not .json either
    assert detect("x.txt", b"[" * 100_000).reason == deep.reason
    surrogate = detect("x.json", b'{"nodes": [{"name": "\\ud800"}]}')
    assert surrogate.reason.startswith("invalid JSON at line 1, column 21: a string at")


def test_n8n_as_yaml_must_hold_json_values() -> None:
    text = (
        b"name: Y\nnodes:\n  - {name: A, type: n8n-nodes-base.noOp, parameters: {when: 2020-01-01}}"
        b"\nconnections: {}\n"
    )
    detected = detect("w.yaml", text)
    assert detected.format == "unknown"
    assert "line 3" in detected.reason and "nodes[0].parameters.when" in detected.reason
    assert "a date (2020-01-01" in detected.reason


def test_positions_scan_a_large_string_in_linear_memory() -> None:
    text = json.dumps({"name": "a" * (4 * 2**20), "nodes": [{"x": 1}, {"y": 2}]})
    tracemalloc.start()
    try:
        found = jsonsafe.positions(text, [("nodes", 1)])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert found == {("nodes", 1): (1, len(text) - 9)}
    assert peak < 3 * len(text)  # the old tokenizer's regex took ~130 bytes a character


def test_positions_count_lines_once() -> None:
    data = {"nodes": [{"name": f"n{i}"} for i in range(3000)]}
    text = json.dumps(data, indent=1)
    wanted = [("nodes", i, "name") for i in range(3000)]
    found = locate(text.encode(), "x.json", wanted)
    assert found[("nodes", 0, "name")] == (4, 12)
    assert found[("nodes", 2999, "name")] == (4 + 3 * 2999, 12)


# --------------------------------------------------------------------------- bundles


FILES = {"workflows/a/1.0.0.yaml": b"kind: Workflow\n"}


def bundle(files: dict[str, bytes] = FILES, manifest: bytes | None = None) -> bytes:
    built = build_manifest(
        files,
        exported_at="2025-01-01T00:00:00+00:00",
        source_commit="abc",
        generator="flowpin test",
        workflows={"a": {"versions": ["1.0.0"]}},
        environments=[],
    )
    data = pack(files, built, mtime=1_700_000_000)
    if manifest is None:
        return data
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for name, content in {"manifest.json": manifest, **files}.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return gzip.compress(raw.getvalue())


def header_bomb(kind: bytes, claimed: int, present: int = 4096) -> bytes:
    info = tarfile.TarInfo("././@LongLink" if kind == tarfile.GNUTYPE_LONGNAME else "pax")
    info.type = kind
    info.size = claimed
    return gzip.compress(info.tobuf(format=tarfile.GNU_FORMAT) + bytes(present))


@pytest.mark.parametrize(
    ("kind", "what"),
    [
        (tarfile.XHDTYPE, "a pax header"),
        (tarfile.XGLTYPE, "a global pax header"),
        (tarfile.GNUTYPE_LONGNAME, "a GNU long name"),
        (tarfile.GNUTYPE_LONGLINK, "a GNU long name"),
    ],
)
def test_extension_headers_are_bounded_before_they_are_read(kind: bytes, what: str) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(BundleError) as caught:
            unpack(header_bomb(kind, int(1.2 * 2**30)))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(caught.value) == (
        f"{what} at byte 0 claims 1.2 GiB, more than the 64 KiB a header may have; refused"
    )
    assert peak < 2**20


def test_long_names_in_pax_and_gnu_tars_are_read() -> None:
    name = "workflows/" + "n" * 150 + "/1.0.0.yaml"
    files = {name: b"kind: Workflow\n"}
    manifest = json.dumps(
        {"formatVersion": 1, "files": {name: __import__("hashlib").sha256(files[name]).hexdigest()}}
    ).encode()
    for fmt in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT):
        raw = io.BytesIO()
        short = fmt == tarfile.USTAR_FORMAT
        entries = {"manifest.json": manifest, **({"w/" + "x" * 150 + "/a": b"x"} if short else {})}
        with tarfile.open(fileobj=raw, mode="w", format=fmt) as archive:
            for member, content in {**entries, **({} if short else files)}.items():
                info = tarfile.TarInfo(member)
                info.size = len(content)
                archive.addfile(info, io.BytesIO(content))
            directory = tarfile.TarInfo("workflows")
            directory.type = tarfile.DIRTYPE
            archive.addfile(directory)
        if short:  # ustar splits a long name into prefix and name
            with pytest.raises(BundleError, match=r"w/x{150}/a: in the bundle but not listed"):
                unpack(gzip.compress(raw.getvalue()))
        else:
            assert unpack(gzip.compress(raw.getvalue()))[1] == files


def test_chains_of_extension_headers_are_bounded() -> None:
    raw = b""
    for _ in range(50):
        info = tarfile.TarInfo("././@LongLink")
        info.type = tarfile.GNUTYPE_LONGNAME
        info.size = 10
        raw += info.tobuf(format=tarfile.GNU_FORMAT) + b"x" * 10 + bytes(502)
    with pytest.raises(BundleError, match="more than 8 extension headers before one file"):
        unpack(gzip.compress(raw))


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        (tarfile.SYMTYPE, "a.yaml: not a regular file (a symbolic link); refused"),
        (tarfile.LNKTYPE, "a.yaml: not a regular file (a hard link); refused"),
        (tarfile.CHRTYPE, "a.yaml: not a regular file (a character device); refused"),
        (tarfile.FIFOTYPE, "a.yaml: not a regular file (a FIFO); refused"),
        (tarfile.GNUTYPE_SPARSE, "a.yaml: not a regular file (a sparse file); refused"),
    ],
)
def test_only_regular_files_and_directories(kind: bytes, message: str) -> None:
    info = tarfile.TarInfo("a.yaml")
    info.type = kind
    info.linkname = "/etc/passwd"
    with pytest.raises(BundleError) as caught:
        unpack(gzip.compress(info.tobuf(format=tarfile.GNU_FORMAT) + bytes(1024)))
    assert str(caught.value) == message


def test_member_sizes_are_checked_from_the_header() -> None:
    info = tarfile.TarInfo("workflows/big.yaml")
    info.size = 2**34
    with pytest.raises(BundleError, match=r"workflows/big.yaml: 16.0 GiB, larger than 16 MiB"):
        unpack(gzip.compress(info.tobuf(format=tarfile.GNU_FORMAT)))
    directory = tarfile.TarInfo("workflows")
    directory.type = tarfile.DIRTYPE
    directory.size = 2**30
    with pytest.raises(BundleError, match="workflows: a directory with content; refused"):
        unpack(gzip.compress(directory.tobuf(format=tarfile.GNU_FORMAT)))


def test_malformed_tars() -> None:
    header = bytearray(tarfile.TarInfo("a").tobuf(format=tarfile.GNU_FORMAT))
    header[0] = ord("b")  # the checksum no longer matches
    with pytest.raises(BundleError, match="a bad header checksum at byte 0"):
        unpack(gzip.compress(bytes(header)))
    with pytest.raises(BundleError, match=r"not a readable \.tar\.gz"):
        unpack(gzip.compress(bytes(300)))
    with pytest.raises(BundleError, match=r"not a readable \.tar\.gz"):
        unpack(bundle()[:-40])
    name = tarfile.TarInfo("a")
    name.name = "caf\udce9.yaml"  # not UTF-8 in the tar
    data = name.tobuf(format=tarfile.GNU_FORMAT, encoding="utf-8", errors="surrogateescape")
    with pytest.raises(BundleError, match=r"caf\\xe9.yaml: a file name is not UTF-8"):
        unpack(gzip.compress(data))


def test_pax_sizes_are_bounded_too() -> None:
    for size, message in (("9" * 5000, "a malformed size"), (str(2**40), "1024.0 GiB, larger")):
        info = tarfile.TarInfo("workflows/a.yaml")
        info.pax_headers = {"size": size}
        data = info.tobuf(format=tarfile.PAX_FORMAT)
        with pytest.raises(BundleError, match=f"workflows/a.yaml: {message}"):
            unpack(gzip.compress(data))


def test_a_deep_manifest_json_is_refused_not_a_recursion_error() -> None:
    with pytest.raises(BundleError) as caught:
        unpack(bundle(manifest=b"[" * 100_000))
    assert str(caught.value) == (
        "manifest.json: not JSON (line 1, column 65: nested deeper than 64 levels)"
    )


# --------------------------------------------------------------------------- n8n


@pytest.mark.parametrize(
    ("main", "path", "message"),
    [
        ([5], ("connections", "Start", "main", 0), "output 0 of 'Start' (main) must be a list"),
        ("x", ("connections", "Start", "main"), "must be a list"),
        ([[5]], ("connections", "Start", "main", 0, 0), "a connection needs a node"),
        ([[{"node": {"x": 1}}]], ("connections", "Start", "main", 0, 0), "needs a node"),
        ([[{"node": 7, "index": "x"}]], ("connections", "Start", "main", 0, 0), "needs a node"),
        ([{"a": 1}], ("connections", "Start", "main", 0), "must be a list of connections"),
    ],
)
def test_malformed_connections_are_warnings_kept_as_they_are(
    main: Any, path: tuple[Any, ...], message: str
) -> None:
    document = n8n({"Start": {"main": main}})
    conversion = from_n8n(document, "w")
    assert conversion.manifest is not None
    warning = next(n for n in conversion.notes if n.code == "n8n-schema")
    assert warning.path == path and message in warning.message and warning.severity == "warning"
    exported = to_n8n(conversion.manifest)
    assert exported.workflow["connections"]["Start"]["main"] == main


def test_malformed_connections_import_with_the_warning_located() -> None:
    text = json.dumps(n8n({"Start": {"main": [5]}}), indent=1).encode()
    result = plan({"w.json": text}).results[0]
    assert result.status == "imported", result.reasons
    warning = next(f for f in result.findings if f.code == "n8n-schema")
    assert (warning.file, warning.path) == ("w.json", "connections.Start.main[0]")
    assert warning.line > 1


def test_too_many_nodes() -> None:
    nodes = [node(f"N{i}", "noOp") for i in range(MAX_NODES + 1)]
    conversion = from_n8n(workflow(nodes, {}), "w")
    assert conversion.manifest is None
    assert (
        conversion.notes[0].message
        == f"{MAX_NODES + 1} nodes: more than the 2000 a workflow may have"
    )


def test_many_loops_convert_in_linear_passes() -> None:
    nodes = [node("T", "manualTrigger")] + [node(f"N{i}", "noOp") for i in range(1500)]
    connections: dict[str, Any] = {"T": {"main": [link("N0")]}}
    for i in range(0, 1500, 2):
        connections[f"N{i}"] = {"main": [link(f"N{i + 1}")]}
        connections[f"N{i + 1}"] = {"main": [link(f"N{i}")]}
    conversion = from_n8n(workflow(nodes, connections), "w")  # was quadratic: minutes at 30k
    assert conversion.manifest is not None


@pytest.mark.parametrize(
    "source",
    [
        "(" * 5000 + "1" + ")" * 5000,
        "!" * 5000 + "true",
        "1 == 1 ? 1 : " * 700 + "2",
        "-" * 3000 + "1",
        '"' + "a" * 200_000 + '"',
    ],
)
def test_deep_or_long_expressions_stay_n8n_steps(source: str) -> None:
    with pytest.raises(Untranslatable, match=r"nested more than 32 levels|longer than 10000"):
        translate(source, lambda node, path: "inputs.x")
    with pytest.raises(Untranslatable):
        translate_value("={{ " + source + " }}", lambda node, path: "inputs.x")


def test_a_template_without_an_end_is_scanned_only_so_far() -> None:
    with pytest.raises(Untranslatable, match="longer than 10000 characters"):
        translate_value("={{ " + "a" * 2**20, lambda node, path: "inputs.x")


# --------------------------------------------------------------------------- shapes


def test_an_environment_whose_spec_is_a_string_fails_naming_the_file() -> None:
    text = (
        b"apiVersion: flowpin.dev/v1alpha1\nkind: Environment\nmetadata: {name: prod}\nspec: hi\n"
    )
    result = plan({"env.yaml": text}).results[0]
    assert result.status == "failed"
    error = next(f for f in result.findings if f.is_error)
    assert (error.file, error.line, error.path) == ("env.yaml", 4, "spec")
    assert result.reasons == ["env.yaml → environments/prod.yaml (prod) does not validate"]


@pytest.mark.parametrize("steps", [5, True, "x", {"a": 1}])
def test_old_formats_with_odd_shapes_migrate_without_raising(steps: Any) -> None:
    document = {"apiVersion": "flowpin.dev/v0", "kind": "Workflow", "name": "a", "steps": steps}
    migrated, _ = migrate({**document, "triggers": steps})
    assert migrated["spec"]["steps"] == steps


def test_one_file_failing_inside_flowpin_fails_only_that_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = validate.check_files

    def check_files(files: dict[str, bytes]) -> Any:
        if "broken" in next(iter(files)):
            raise RuntimeError("boom")
        return real(files)

    monkeypatch.setattr(imports, "check_files", check_files)
    good = dump_yaml(
        {
            "apiVersion": "flowpin.dev/v1alpha1",
            "kind": "Workflow",
            "metadata": {"name": "fine"},
            "spec": {"version": "1.0.0", "steps": [{"id": "a", "type": "noop"}]},
        }
    )
    broken = good.replace(b"name: fine", b"name: broken")
    result = plan({"good.yaml": good, "broken.yaml": broken})
    assert [r.status for r in result.results] == ["imported", "failed"]
    assert result.results[1].reasons == [
        "flowpin failed on this file (RuntimeError: boom); please report it as a bug"
    ]
    assert [sorted(files) for _, files in result.commits] == [["workflows/fine.yaml"]]


def test_load_file_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*_: Any) -> Any:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(imports, "detect", explode)
    result = load_file("x.json", b"{}")
    assert result.failed
    assert "RecursionError" in result.reasons[0]


# --------------------------------------------------------------------------- branches


@pytest.mark.parametrize(
    ("branch", "why"),
    [
        ("../x", "it contains `..`"),
        ("a..b", "it contains `..`"),
        ("HEAD", "HEAD is reserved"),
        ("@", "@ is reserved"),
        ("-x", "it starts with `-`"),
        ("x.lock", "a part ends with `.lock`"),
        ("a b", "it contains a space or a control character"),
        ("a\tb", "it contains a space or a control character"),
        ("a~b", "it contains `~`"),
        ("a:b", "it contains `:`"),
        ("a@{1}", "it contains `@{`"),
        ("/a", "it has an empty part"),
        ("a//b", "it has an empty part"),
        ("a/.b", "a part starts with `.`"),
        ("a.", "it ends with `.`"),
        ("", "it is empty"),
        ("refs/heads/y", "it starts with `refs/`"),  # made refs/heads/refs/heads/y (fuzz)
    ],
)
def test_branch_names_git_refuses(branch: str, why: str) -> None:
    problem = branch_name_problem(branch)
    assert problem is not None and why in problem and problem.startswith(repr(branch))


def test_branch_name_length_and_good_names() -> None:
    problem = branch_name_problem("x" * 300)
    assert (
        problem
        == "'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'… (300 characters) is longer than 200 bytes"
    )
    for good in ("import", "feature/n8n-import", "x" * 200, "é-import", "v1.2"):
        assert branch_name_problem(good) is None
