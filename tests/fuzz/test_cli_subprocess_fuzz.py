"""Fuzzing `flowpin validate` and `flowpin import` as real processes: a smaller number of
cases than the in-process fuzzers, but with real stdout/stderr pipes (C.UTF-8 as on CI
runners, or UTF-8 that refuses anything else), a real interpreter exit, and file names
given as raw bytes (not UTF-8, control characters), so that what CliRunner hides — an
encoding error while printing a finding or a file name, a hang — is seen. Each case must
finish within 60 s, exit with a documented status (0, 1 or 2), print no traceback, print
`--format json|sarif` as UTF-8 JSON, and write nothing outside the target (validate:
nothing at all; import: only the repository's .git, never with --dry-run).

A longer campaign: `make fuzz`, or for this file only
`FUZZ_EXAMPLES=2000 FUZZ_SEED=random FUZZ_SHRINK=1 .venv/bin/python -m pytest \
    tests/fuzz/test_cli_subprocess_fuzz.py`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pygit2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.testing.gitrepo import commit_all
from tests.fuzz.conftest import fuzz
from tests.fuzz.harness import (
    EXAMPLES,
    changes,
    check_json_output,
    check_outcome,
    check_scratch_empty,
    fingerprint,
    new_case,
    run_subprocess,
)
from tests.fuzz.strategies import (
    ALL_TEXT_SEEDS,
    YAML_TOKENS,
    mutated,
    raw_bundle,
    seed_values,
    structured_manifest,
    structured_n8n,
)

CODES = (0, 1, 2)
# File names as bytes: not UTF-8, control characters, a terminal escape, very long.
odd_names = st.sampled_from(
    [
        b"plain",
        b"\xff\xfe",
        b"caf\xe9",
        b"tab\there",
        b"new\nline",
        b"esc\x1b[31mred",
        b"\xe2\x80\xae-rtl",
        b"l" * 200,
        "\u00e9t\u00e9".encode(),
        b"-starts-with-dash",
    ]
)
contents = st.one_of(
    mutated(ALL_TEXT_SEEDS, YAML_TOKENS),
    structured_manifest().map(lambda made: made[0]),
    structured_n8n(),
    raw_bundle(),
    seed_values(ALL_TEXT_SEEDS),
)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-subprocess")


@fuzz(weight=0.25)
@given(
    name=odd_names,
    folder=st.sampled_from([b"workflows", b"environments", b"workflows/sub"]),
    suffix=st.sampled_from([b".yaml", b".yml"]),
    content=contents,
    fmt=st.sampled_from(["text", "json", "github", "sarif"]),
    named=st.booleans(),
    strict_io=st.booleans(),
)
def test_validate_process_survives_odd_files(
    base: Path,
    name: bytes,
    folder: bytes,
    suffix: bytes,
    content: bytes,
    fmt: str,
    named: bool,
    strict_io: bool,
) -> None:
    with new_case(base) as case:
        for sub in ("workflows", "environments"):
            shutil.copytree(EXAMPLES / sub, case.root / sub)
        relative = folder + b"/" + name + suffix
        path = os.path.join(os.fsencode(case.root), relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(content)
        args: list[str | bytes] = ["validate", "--format", fmt]
        if named:
            args.append(relative)
        before = fingerprint(case.root)
        outcome = run_subprocess(case, args, strict_io=strict_io)
        check_outcome(outcome, args, CODES, f"{relative!r}: {content[:200]!r}")
        if fmt in ("json", "sarif") and outcome.exit_code in (0, 1):
            check_json_output(outcome, args, f"{relative!r}")
        assert changes(before, fingerprint(case.root)) == [], "validate wrote files"
        check_scratch_empty(case, args)


@pytest.fixture(scope="module")
def template(base: Path) -> Path:
    root = base / "template"
    for sub in ("workflows", "environments"):
        shutil.copytree(EXAMPLES / sub, root / sub)
    commit_all(pygit2.init_repository(str(root), initial_head="main"), "examples")
    return root


@fuzz(weight=0.25)
@given(
    files=st.lists(
        st.tuples(odd_names, st.sampled_from([b".json", b".yaml", b".tar.gz"]), contents),
        min_size=1,
        max_size=3,
        unique_by=lambda item: item[0] + item[1],
    ),
    as_dir=st.booleans(),
    dry_run=st.booleans(),
    fmt=st.sampled_from(["text", "json"]),
    mode=st.sampled_from(["new", "rename", "overwrite", "skip"]),
    strict_io=st.booleans(),
)
def test_import_process_survives_odd_files(
    base: Path,
    template: Path,
    files: list[tuple[bytes, bytes, bytes]],
    as_dir: bool,
    dry_run: bool,
    fmt: str,
    mode: str,
    strict_io: bool,
) -> None:
    with new_case(base) as case:
        repo = case.root / "repo"
        shutil.copytree(template, repo, symlinks=True)
        inputs = case.root / "in"
        inputs.mkdir()
        paths = []
        for name, suffix, content in files:
            path = os.path.join(os.fsencode(inputs), name + suffix)
            with open(path, "wb") as handle:
                handle.write(content)
            paths.append(path)
        args: list[str | bytes] = ["import", *([os.fsencode(inputs)] if as_dir else paths)]
        args += ["--mode", mode, "--format", fmt]
        if dry_run:
            args.append("--dry-run")
        git = repo / ".git"
        outside = fingerprint(case.root, skip=[git, case.home, case.tmp])
        inside = fingerprint(git)
        outcome = run_subprocess(case, args, cwd=repo, strict_io=strict_io)
        check_outcome(outcome, args, CODES, repr([(n, s, c[:100]) for n, s, c in files]))
        assert changes(outside, fingerprint(case.root, skip=[git, case.home, case.tmp])) == []
        if dry_run:
            assert changes(inside, fingerprint(git)) == [], "--dry-run wrote into .git"
        check_scratch_empty(case, args)


# ----------------------------------------------------------------------------- regressions
# Failures the fuzzers found, minimised: each runs on every `make test`, whatever the seed.


@pytest.mark.parametrize("strict_io", [False, True], ids=["C.UTF-8", "strict"])
@pytest.mark.parametrize("fmt", ["text", "json", "github", "sarif"])
def test_validate_process_reports_a_file_name_that_is_not_utf8(
    base: Path, fmt: str, strict_io: bool
) -> None:
    """Found by the fuzzer: `flowpin validate` with a manifest named `caf\\xe9.yaml`
    (Latin-1, not UTF-8) that has a finding printed a UnicodeEncodeError traceback and
    exited 1."""
    with new_case(base) as case:
        for sub in ("workflows", "environments"):
            shutil.copytree(EXAMPLES / sub, case.root / sub)
        path = os.path.join(os.fsencode(case.root), b"workflows/caf\xe9.yaml")
        with open(path, "wb") as handle:  # a finding in that file: no spec
            handle.write(b"apiVersion: flowpin.dev/v1alpha1\nkind: Workflow\n")
        args: list[str | bytes] = ["validate", "--format", fmt]
        outcome = run_subprocess(case, args, strict_io=strict_io)
        check_outcome(outcome, args, CODES, "a manifest named caf\\xe9.yaml")
        if fmt in ("json", "sarif"):
            check_json_output(outcome, args, "a manifest named caf\\xe9.yaml")
