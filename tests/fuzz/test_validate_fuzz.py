"""Fuzzing `flowpin validate` in process (click's CliRunner).

Each case is a copy of examples/ (workflows/ and environments/) in a fresh directory, one
manifest replaced by fuzzed bytes — a seed after byte-level mutations (flips, truncation,
splices, YAML special tokens such as `on:`, `~:`, `&a`/`*a`, `!!python/object`, `[` N times,
tabs, NUL, lone surrogates, huge numbers, NaN, deep nesting, long lines, alias bombs) or a
valid manifest with random values at random paths, written as YAML or JSON — or extra
files with odd names and kinds (links, directories, empty, over 1 MiB). Every case must
hold: no exception but SystemExit, exit status 0, 1 or 2 (docs/ci.md), no traceback in the
output, `--format json|sarif` one strict JSON document whose findings have a line and
column ≥ 1 within the file and counts that agree with the exit status, and nothing written
anywhere (the case directory is fingerprinted before and after; HOME and TMPDIR stay
empty). `--against` runs on a git repository with the fuzzed file in the working tree.

A longer campaign: `make fuzz`, or for this file only
`FUZZ_EXAMPLES=2000 FUZZ_SEED=random FUZZ_SHRINK=1 .venv/bin/python -m pytest \
    tests/fuzz/test_validate_fuzz.py`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pygit2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.testing.gitrepo import commit_all
from tests.fuzz.conftest import fuzz
from tests.fuzz.harness import (
    EXAMPLES,
    Case,
    changes,
    check_json_output,
    check_outcome,
    check_scratch_empty,
    fingerprint,
    invoke,
    new_case,
)
from tests.fuzz.strategies import (
    ENVIRONMENT_SEEDS,
    JSON_TOKENS,
    WORKFLOW_SEEDS,
    YAML_SEEDS,
    YAML_TOKENS,
    mutated,
    seed_values,
    structured_manifest,
)

VALIDATE_CODES = (0, 1, 2)
FORMATS = ["text", "json", "github", "sarif"]
LINE_BREAKS = ("\r\n", "\n", "\r", "\x85", "\u2028", "\u2029")

fuzzed_bytes = st.one_of(
    mutated(YAML_SEEDS, YAML_TOKENS),
    mutated(YAML_SEEDS, JSON_TOKENS),
    structured_manifest().map(lambda made: made[0]),
)
# Which file of the repository gets the fuzzed bytes.
targets = st.sampled_from(
    [
        f"workflows/{name}"
        for name in sorted(WORKFLOW_SEEDS)
        if name in os.listdir(EXAMPLES / "workflows")
    ]
    + [f"environments/{name}" for name in sorted(ENVIRONMENT_SEEDS)]
    + ["workflows/new.yaml", "workflows/deep/er/new.yml", "environments/new.yaml"]
)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-validate")


def copy_examples(root: Path) -> None:
    for folder in ("workflows", "environments"):
        shutil.copytree(EXAMPLES / folder, root / folder)


def line_count(content: bytes) -> int:
    text = content.decode("utf-8", "replace")
    for brk in LINE_BREAKS[1:]:
        text = text.replace("\r\n", "\n").replace(brk, "\n")
    return text.count("\n") + 1


def check_report(report: Any, exit_code: int, files: dict[str, bytes], what: str) -> None:
    """What docs/ci.md promises of `--format json`: findings with file, line, column, code;
    a summary that counts them; exit 1 exactly when there are errors."""
    assert isinstance(report, dict) and isinstance(report.get("findings"), list), what
    findings = report["findings"]
    errors = 0
    for finding in findings:
        assert isinstance(finding, dict), (what, finding)
        line, column = finding.get("line"), finding.get("column")
        assert isinstance(line, int) and line >= 1, (what, finding)
        assert isinstance(column, int) and column >= 1, (what, finding)
        assert finding.get("code") and finding.get("severity") in ("error", "warning"), (
            what,
            finding,
        )
        content = files.get(str(finding.get("file")))
        if content is not None:
            assert line <= line_count(content) + 1, (
                f"{what}: finding past the end of its file ({line_count(content)} lines): {finding}"
            )
        errors += finding["severity"] == "error"
    summary = report.get("summary") or {}
    assert summary.get("errors") == errors and summary.get("total") == len(findings), (
        what,
        summary,
    )
    assert exit_code == (1 if errors else 0), (what, exit_code, summary)


def check_sarif(report: Any, what: str) -> None:
    assert isinstance(report, dict) and report.get("version") == "2.1.0", what
    for run in report.get("runs", []):
        for result in run.get("results", []):
            for location in result.get("locations", []):
                region = location.get("physicalLocation", {}).get("region", {})
                assert region.get("startLine", 1) >= 1, (what, result)
                assert region.get("startColumn", 1) >= 1, (what, result)


def run_validate(case: Case, args: list[str], files: dict[str, bytes], what: str) -> None:
    before = fingerprint(case.root)
    outcome = invoke(case, args)
    check_outcome(outcome, args, VALIDATE_CODES, what)
    assert changes(before, fingerprint(case.root)) == [], f"validate wrote files ({what})"
    check_scratch_empty(case, args)
    if outcome.exit_code in (0, 1) and "--format" in args:
        fmt = args[args.index("--format") + 1]
        if fmt == "json":
            check_report(check_json_output(outcome, args, what), outcome.exit_code, files, what)
        elif fmt == "sarif":
            check_sarif(check_json_output(outcome, args, what), what)


def write(root: Path, relative: str, content: bytes) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


@fuzz(weight=2.0)
@given(
    content=fuzzed_bytes,
    target=targets,
    fmt=st.sampled_from(FORMATS),
    how=st.sampled_from(["repo", "dot", "file", "file+repo"]),
)
def test_validate_survives_fuzzed_manifests(
    base: Path, content: bytes, target: str, fmt: str, how: str
) -> None:
    with new_case(base) as case:
        copy_examples(case.root)
        write(case.root, target, content)
        args = ["validate", "--format", fmt]
        args += {"repo": [], "dot": ["."], "file": [target], "file+repo": [target, "."]}[how]
        run_validate(case, args, {target: content}, f"{target}: {content[:200]!r}")


# Odd names (not UTF-8, control characters, very long), odd kinds (links in and out of the
# repository, dangling, looping, a directory named like a manifest) and sizes.
odd_names = st.sampled_from(
    [
        "workflows/\udcff\udcfe.yaml",
        "workflows/tab\there.yaml",
        "workflows/new\nline.yaml",
        "workflows/" + "l" * 250 + ".yaml",
        "workflows/é-ü.yaml",
        "workflows/.hidden.yaml",
        "workflows/-dash.yaml",
        "environments/\udc80.yml",
        "workflows/a.YAML",
        "workflows/a.yaml.yaml",
    ]
)
odd_kinds = st.sampled_from(
    ["file", "empty", "dir", "link-out", "link-in", "dangling", "loop", "big", "folder-link"]
)


def make_odd(root: Path, name: str, kind: str, content: bytes, outside: Path) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "file":
        path.write_bytes(content)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "dir":
        path.mkdir()
        (path / "inner.yaml").write_bytes(content)
    elif kind == "link-out":
        path.symlink_to(outside)
    elif kind == "link-in":
        path.symlink_to(root / "workflows" / "lead-nurture.yaml")
    elif kind == "dangling":
        path.symlink_to(root / "nowhere.yaml")
    elif kind == "loop":
        path.symlink_to(path)
    elif kind == "big":
        path.write_bytes(content + b"\n# " + b"x" * (1024 * 1024) + b"\n")
    elif kind == "folder-link":
        path.mkdir()
        (path / "up").symlink_to(root)


@fuzz(weight=0.5)
@given(
    name=odd_names,
    kind=odd_kinds,
    content=st.one_of(seed_values(YAML_SEEDS), fuzzed_bytes),
    fmt=st.sampled_from(FORMATS),
    named=st.booleans(),
)
def test_validate_survives_odd_files(
    base: Path, name: str, kind: str, content: bytes, fmt: str, named: bool
) -> None:
    with new_case(base) as case:
        copy_examples(case.root)
        outside = case.root / ".outside.yaml"
        outside.write_bytes(b"apiVersion: flowpin.dev/v1alpha1\nkind: Workflow\n")
        make_odd(case.root, name, kind, content, outside)
        args = ["validate", "--format", fmt]
        if named and os.path.lexists(case.root / name):
            args.append(name)
        run_validate(case, args, {name: content} if kind == "file" else {}, f"{kind} {name!r}")


@pytest.fixture(scope="module")
def history_template(base: Path) -> Path:
    """A git repository of examples/ with two commits (lead-nurture 1.3.0, then 1.4.0)."""
    root = base / "history-template"
    root.mkdir()
    copy_examples(root)
    lead = root / "workflows/lead-nurture.yaml"
    current = lead.read_bytes()
    older = current.replace(b"version: 1.4.0", b"version: 1.3.0").replace(b"48h", b"24h")
    lead.write_bytes(older.replace(b"wait-2d", b"wait-1d"))
    repo = pygit2.init_repository(str(root), initial_head="main")
    commit_all(repo, "1.3.0")
    lead.write_bytes(current)
    commit_all(repo, "1.4.0")
    return root


@fuzz(weight=0.5)
@given(
    content=fuzzed_bytes,
    target=targets,
    fmt=st.sampled_from(FORMATS),
    against=st.sampled_from(
        ["HEAD", "HEAD~1", "HEAD~2", "main", "HEAD~5", "nope", "-x", "HEAD..main", ""]
    ),
    history=st.sampled_from(["clean", "clean", "fuzzed commit", "fuzzed commit, then restored"]),
)
def test_validate_against_survives_fuzzed_changes(
    base: Path,
    history_template: Path,
    content: bytes,
    target: str,
    fmt: str,
    against: str,
    history: str,
) -> None:
    """The history rules read git: a fuzzed file in the working tree, or committed (then
    the history walk, the pin and migration checks read it from git)."""
    with new_case(base) as case:
        shutil.copytree(history_template, case.root, dirs_exist_ok=True, symlinks=True)
        original = (case.root / target).read_bytes() if (case.root / target).exists() else None
        write(case.root, target, content)
        if history != "clean":
            commit_all(pygit2.Repository(str(case.root)), "fuzzed")
        if history == "fuzzed commit, then restored":
            if original is None:
                (case.root / target).unlink()
            else:
                write(case.root, target, original)
        args = ["validate", "--against", against, "--format", fmt]
        files = {target: (case.root / target).read_bytes()} if (case.root / target).exists() else {}
        run_validate(case, args, files, f"--against {against} {target} ({history})")


# ----------------------------------------------------------------------------- regressions
# Failures the fuzzers found, minimised: each runs on every `make test`, whatever the seed.


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_file_name_that_is_not_utf8_is_reported(base: Path, fmt: str) -> None:
    """Found by the fuzzer: a manifest whose file name is not UTF-8 (git stores any bytes;
    here `workflows/\\xff\\xfe.yaml`) made `flowpin validate` crash with UnicodeEncodeError
    while printing a finding in that file, in every format."""
    with new_case(base) as case:
        copy_examples(case.root)
        name = "workflows/\udcff\udcfe.yaml"  # the bytes ff fe, as Python names them
        write(case.root, name, b"apiVersion: flowpin.dev/v1alpha1\nkind: Workflow\n")
        run_validate(case, ["validate", "--format", fmt], {}, f"a file named {name!r}")
