"""The import plan over plain data: formats, modes, validation, all-or-nothing per file."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest
import yaml

from controller.interop.bundle import build_manifest, pack
from controller.interop.formats import dump_yaml
from controller.interop.imports import load_file, plan_import
from controller.model.validate import NoHistory
from tests.unit.interop.n8nfixtures import intake


def workflow(name: str, version: str = "1.0.0", url: str = "https://x.example") -> bytes:
    return dump_yaml(
        {
            "apiVersion": "flowpin.dev/v1alpha1",
            "kind": "Workflow",
            "metadata": {"name": name},
            "spec": {
                "version": version,
                "steps": [{"id": "call", "type": "http", "http": {"url": url}}],
            },
        }
    )


def environment(name: str, pins: dict[str, str]) -> bytes:
    return dump_yaml(
        {
            "apiVersion": "flowpin.dev/v1alpha1",
            "kind": "Environment",
            "metadata": {"name": name},
            "spec": {"pins": pins},
        }
    )


HEAD = {
    "workflows/lead.yaml": workflow("lead"),
    "environments/dev.yaml": environment("dev", {"lead": "latest"}),
}


def plan(files: dict[str, bytes], mode: str = "new", head: dict[str, bytes] | None = None) -> Any:
    results = [load_file(name, content) for name, content in files.items()]
    return plan_import(results, HEAD if head is None else head, NoHistory(), mode)  # type: ignore[arg-type]


def written(result: Any) -> dict[str, Any]:
    return {i.path: yaml.safe_load(i.content) for i in result.items if i.path}


def test_flowpin_yaml_is_written_as_it_is() -> None:
    content = b"# keep this comment\n" + workflow("fresh")
    result = plan({"fresh.yaml": content}).results[0]
    assert (result.format, result.status) == ("flowpin-yaml", "imported")
    assert result.items[0].content == content


@pytest.mark.parametrize(
    ("mode", "status", "path", "name"),
    [
        ("new", "failed", None, None),
        ("rename", "renamed", "workflows/lead-2.yaml", "lead-2"),
        ("overwrite", "overwritten", "workflows/lead.yaml", "lead"),
        ("skip", "skipped", None, None),
    ],
)
def test_modes(mode: str, status: str, path: str | None, name: str | None) -> None:
    result = plan(
        {"lead.json": json.dumps(yaml.safe_load(workflow("lead", "2.0.0"))).encode()}, mode
    ).results[0]
    assert result.status == status
    if path is None:
        assert written(result) == {}
    else:
        assert written(result)[path]["metadata"]["name"] == name


def test_pins_follow_a_rename_within_a_bundle() -> None:
    files = {
        "workflows/lead/1.0.0.yaml": workflow("lead"),
        "environments/qa.yaml": environment("qa", {"lead": "1.0.0"}),
    }
    manifest = build_manifest(
        files, exported_at="t", source_commit="c", generator="g", workflows={}, environments=["qa"]
    )
    result = plan({"b.tar.gz": pack(files, manifest, 0)}, "rename").results[0]
    assert result.status == "renamed", result.reasons
    assert written(result)["environments/qa.yaml"]["spec"]["pins"] == {"lead-2": "1.0.0"}


def test_older_bundle_versions_are_committed_first() -> None:
    files = {
        f"workflows/new/{v}.yaml": workflow("new", v, f"https://x.example/{v}")
        for v in ("1.0.0", "1.2.0", "1.10.0")
    }
    files["environments/qa.yaml"] = environment("qa", {"new": "1.2.0"})
    manifest = build_manifest(
        files, exported_at="t", source_commit="c", generator="g", workflows={}, environments=[]
    )
    result = plan({"b.tar.gz": pack(files, manifest, 0)})
    assert [r.status for r in result.results] == ["imported"], result.results[0].reasons
    assert [sorted(files) for _, files in result.commits] == [
        ["workflows/new.yaml"],
        ["workflows/new.yaml"],
        ["environments/qa.yaml", "workflows/new.yaml"],
    ]
    versions = [
        yaml.safe_load(f["workflows/new.yaml"])["spec"]["version"] for _, f in result.commits
    ]
    assert versions == ["1.0.0", "1.2.0", "1.10.0"]


def test_a_file_that_fails_is_left_out_whole_and_others_go_ahead() -> None:
    bad = environment("qa", {"ghost": "1.0.0"})
    result = plan({"good.yaml": workflow("good"), "bad.yaml": bad})
    good, failed = result.results
    assert (good.status, failed.status) == ("imported", "failed")
    assert failed.reasons == ["environments/qa.yaml: pins 'ghost', but no workflow has that name"]
    assert [sorted(f) for _, f in result.commits] == [["workflows/good.yaml"]]


def test_dependent_files_fail_together() -> None:
    broken = (
        b"apiVersion: flowpin.dev/v1alpha1\nkind: Workflow\nmetadata: {name: w}\n"
        b"spec: {version: 1.0.0, steps: []}\n"
    )
    result = plan({"w.yaml": broken, "env.yaml": environment("qa", {"w": "1.0.0"})})
    assert [r.status for r in result.results] == ["failed", "failed"]
    assert result.commits == []


def test_unknown_and_tampered_inputs_fail_with_reasons() -> None:
    files = {"workflows/a/1.0.0.yaml": workflow("a")}
    data = pack(
        files,
        build_manifest(
            files, exported_at="t", source_commit="c", generator="g", workflows={}, environments=[]
        ),
        0,
    )
    tampered = gzip.compress(
        gzip.decompress(data).replace(b"https://x.example", b"https://evil.example")
    )
    results = plan(
        {
            "x.json": b'{"a": 1}',
            "t.tar.gz": tampered,
            "v9.yaml": b"apiVersion: x/v9\nkind: Workflow\n",
        }
    ).results
    assert [r.status for r in results] == ["failed"] * 3
    assert "not a flowpin manifest" in results[0].reasons[0]
    assert results[1].reasons == [
        "bundle refused: workflows/a/1.0.0.yaml: content differs from its sha256 in "
        "manifest.json (tampered)"
    ]
    assert "'x/v9' is not a flowpin format" in results[2].reasons[0]


def test_migrations_are_listed() -> None:
    result = plan(
        {
            "old.yaml": b"kind: Workflow\nname: old\nversion: 1.0.0\n"
            b"steps: [{id: a, type: noop, goto: end}]\n"
        }
    ).results[0]
    assert result.status == "imported", result.reasons
    assert result.migrations == [
        "old.yaml: flowpin.dev/v0 → flowpin.dev/v1alpha0: name → metadata.name; "
        "version → spec.version; steps → spec.steps",
        "old.yaml: flowpin.dev/v1alpha0 → flowpin.dev/v1alpha1: spec.steps[0].goto → next",
    ]


def test_n8n_imports_round_trip_and_bump_on_overwrite() -> None:
    source = json.dumps(intake(), indent=2).encode()
    first = plan({"intake.json": source}, head={}).results[0]
    assert first.status == "imported"
    assert not [f for f in first.findings if f.code == "round-trip-difference"]
    fetch = next(f for f in first.findings if "'Tell sales'" in f.message)
    assert (fetch.line, fetch.path) > (1, "")  # located in the JSON file
    head = {"workflows/lead-intake.yaml": first.items[0].content}
    again = plan({"intake.json": source}, "overwrite", head).results[0]
    assert again.status == "unchanged"
    changed = intake()
    changed["nodes"][1]["parameters"]["url"] = "https://crm.example/v2"
    bumped = plan({"intake.json": json.dumps(changed).encode()}, "overwrite", head).results[0]
    assert bumped.status == "overwritten"
    assert written(bumped)["workflows/lead-intake.yaml"]["spec"]["version"] == "1.0.1"


def test_refused_n8n_file_names_the_reason() -> None:
    result = plan(
        {"n.json": b'{"nodes": [{"name": "A", "type": "x"}, {"name": "A", "type": "y"}]}'}
    ).results[0]
    assert result.status == "failed"
    assert "two nodes are named 'A'" in result.reasons[0]
    assert result.findings[0].line == 1 and result.findings[0].path == "nodes[1].name"


def test_overwriting_without_a_bump_is_flagged_for_ci() -> None:
    result = plan(
        {"lead.yaml": workflow("lead", "1.0.0", "https://other.example")}, "overwrite"
    ).results[0]
    assert result.status == "overwritten"
    warning = next(f for f in result.findings if f.code == "version-not-bumped")
    assert warning.severity == "warning"
    assert warning.message.startswith("`flowpin validate --against` will refuse this: lead changed")
