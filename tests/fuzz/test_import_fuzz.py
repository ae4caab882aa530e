"""Fuzzing `flowpin import` in process (click's CliRunner): flowpin YAML and JSON, the
older formats, n8n JSON (objects, lists, YAML) and bundles (.tar.gz), see docs/interop.md.

Inputs: seeds after byte-level mutations; valid manifests and n8n workflows with random
values at random paths and n8n-aware edits (node types and versions swapped, duplicate
names, dangling or malformed connections, JavaScript expressions in parameters); bundles
exported from a real repository, unpacked, edited (manifest values, content with and
without a matching sha256, files added, removed, renamed, links, FIFOs, duplicates) and
packed again; hand-made tar headers (pax and GNU long-name records, base-256 and garbage
sizes, bad checksums, truncation) under gzip; random bytes. One file, several, or a
directory; every `--mode`, `--dry-run` or not, odd `--branch` names.

Every case runs in a fresh directory holding a copy of a git repository of examples/
(two versions of lead-nurture in its history) and the inputs beside it, and must hold: no
exception but SystemExit, exit status 0, 1 or 2 (docs/interop.md), no traceback,
`--format json` one strict JSON document whose statuses agree with the exit status;
nothing written outside the repository's object database and refs: the working tree, the
checked-out branch, HEAD, the index and the inputs are unchanged (with `--dry-run`, .git
too); HOME and TMPDIR stay empty; and what an import commits is a repository that
`flowpin validate` accepts (exit 0), as the docs promise.

A longer campaign: `make fuzz`, or for this file only
`FUZZ_EXAMPLES=2000 FUZZ_SEED=random FUZZ_SHRINK=1 .venv/bin/python -m pytest \
    tests/fuzz/test_import_fuzz.py`.
"""

from __future__ import annotations

import io
import shutil
import tarfile
from collections.abc import Callable
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
    Outcome,
    changes,
    check_json_output,
    check_outcome,
    check_scratch_empty,
    fingerprint,
    invoke,
    new_case,
    note_event,
)
from tests.fuzz.strategies import (
    ALL_TEXT_SEEDS,
    JSON_TOKENS,
    N8N_SEEDS,
    OLD_FORMAT_SEEDS,
    SEEDS_DIR,
    YAML_SEEDS,
    YAML_TOKENS,
    edited_bundle,
    mutated,
    raw_bundle,
    seed_values,
    structured_manifest,
    structured_n8n,
)

IMPORT_CODES = (0, 1, 2)
SUFFIXES = [".json", ".yaml", ".yml", ".tar.gz", ".tgz"]
MODES = ["new", "rename", "overwrite", "skip"]
BRANCHES = [  # mostly the default (a usage error stops a case before anything is read)
    *[None] * 40,
    "main",
    "fuzz-branch",
    "a b",
    "..",
    "-x",
    "x.lock",
    "a..b",
    "@{1}",
    "refs/heads/y",
    "\u00e9t\u00e9",
    "x/",
    "/x",
    "x~1",
    "",
    "HEAD",
]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-import")


@pytest.fixture(scope="module")
def template(base: Path) -> Path:
    """A git repository of examples/: lead-nurture 1.3.0, then 1.4.0; then the n8n seed
    expressions.n8n.json imported (so that fuzzed n8n imports of that name go through
    overwrite, rename and skip, version bumps and the round-trip check)."""
    root = base / "template"
    for folder in ("workflows", "environments"):
        shutil.copytree(EXAMPLES / folder, root / folder)
    lead = root / "workflows/lead-nurture.yaml"
    current = lead.read_bytes()
    older = current.replace(b"version: 1.4.0", b"version: 1.3.0").replace(b"48h", b"24h")
    lead.write_bytes(older.replace(b"wait-2d", b"wait-1d"))
    repo = pygit2.init_repository(str(root), initial_head="main")
    commit_all(repo, "lead-nurture 1.3.0")
    lead.write_bytes(current)
    commit_all(repo, "lead-nurture 1.4.0")
    with new_case(base) as case:
        seed = SEEDS_DIR / "expressions.n8n.json"
        outcome = invoke(case, ["import", str(seed), "--branch", "seeded"], cwd=root)
        assert outcome.exit_code == 0, outcome.output
        seeded = repo.branches.local["seeded"]
        repo.branches.local["main"].set_target(seeded.target)
        seeded.delete()
        repo.checkout_head(strategy=pygit2.enums.CheckoutStrategy.FORCE)
        # The fuzzers start from a clean repository.
        outcome = invoke(case, ["validate", "--against", "HEAD~2"], cwd=root)
        assert outcome.exit_code == 0, outcome.output
        assert (root / "workflows/expressions.yaml").is_file()
    return root


class Bundles(dict[str, dict[str, bytes]]):
    """Bundle name → its files; printed short (hypothesis prints a failing case's
    arguments)."""

    def __repr__(self) -> str:
        return f"Bundles({sorted(self)})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


@pytest.fixture(scope="module")
def bundles(base: Path, template: Path) -> Bundles:
    """Real exports of the template (`flowpin export --all --format bundle`), unpacked."""
    found = Bundles()
    exports = {
        "all": ["--include-environments"],
        "versions": ["lead-nurture", "--version", "1.3.0", "--version", "1.4.0"],
    }
    for name, extra in exports.items():
        with new_case(base) as case:
            output = case.root / "bundle.tar.gz"
            args = [
                "export",
                *(["--all"] if name == "all" else []),
                "--format",
                "bundle",
                "-o",
                str(output),
                "--repo",
                str(template),
                *extra,
            ]
            outcome = invoke(case, args)
            assert outcome.exit_code == 0, outcome.output
            with tarfile.open(fileobj=io.BytesIO(output.read_bytes()), mode="r:gz") as archive:
                found[name] = {
                    member.name: archive.extractfile(member).read()  # type: ignore[union-attr]
                    for member in archive.getmembers()
                    if member.isfile()
                }
    return found


def an_input(bundles: dict[str, dict[str, bytes]]) -> st.SearchStrategy[bytes]:
    return st.one_of(
        mutated(ALL_TEXT_SEEDS, YAML_TOKENS),
        mutated(N8N_SEEDS, JSON_TOKENS),
        mutated(OLD_FORMAT_SEEDS, YAML_TOKENS),
        structured_manifest().map(lambda made: made[0]),
        structured_n8n(),
        structured_n8n(),
        edited_bundle(bundles),
        raw_bundle(),
        st.binary(max_size=2000),
        st.binary(max_size=200).map(lambda data: b"\x1f\x8b" + data),
        seed_values(ALL_TEXT_SEEDS),
    )


def refs_and_head(repo: Path) -> dict[str, str]:
    """What an import may not move: HEAD, the checked-out branch, the index."""
    git = repo / ".git"
    state = {"HEAD": (git / "HEAD").read_text()}
    opened = pygit2.Repository(str(repo))
    state["main"] = str(opened.branches.local["main"].target)
    index = git / "index"
    state["index"] = index.read_bytes().hex() if index.exists() else ""
    return state


def branches(repo: Path) -> set[str]:
    return set(pygit2.Repository(str(repo)).branches.local)


def check_committed_branch(case: Case, repo: Path, branch: str, what: str) -> None:
    """The branch an import made is a repository `flowpin validate` accepts."""
    clone = case.root / "clone"
    pygit2.clone_repository(str(repo), str(clone), checkout_branch=branch)
    args = ["validate", "--format", "json"]
    outcome = invoke(case, args, cwd=clone)
    check_outcome(outcome, args, (0,), f"validate of the branch the import committed ({what})")
    shutil.rmtree(clone)


def run_import(
    case: Case,
    template: Path,
    inputs: list[tuple[str, bytes]],
    shape: str,
    mode: str,
    dry_run: bool,
    branch: str | None,
    fmt: str,
    from_repo: bool,
    prepare: Callable[[Path], None] | None = None,
) -> Outcome:
    """Import `inputs` into a copy of `template` (changed by `prepare` first) and check
    everything an import must hold; the outcome."""
    repo = case.root / "repo"
    shutil.copytree(template, repo, symlinks=True)
    if prepare is not None:
        prepare(repo)
    folder = case.root / "in"
    folder.mkdir()
    paths = []
    for name, content in inputs:
        path = folder / name
        path.write_bytes(content)
        paths.append(path)
    if shape == "dir":
        targets = [str(folder)]
    elif shape == "files":
        targets = [str(p) for p in paths]
    else:
        targets = [str(paths[0])]
    args = ["import", *targets, "--mode", mode, "--format", fmt]
    if dry_run:
        args.append("--dry-run")
    if branch is not None:
        args += ["--branch", branch]
    if not from_repo:
        args += ["--into", str(repo)]
    git = repo / ".git"
    outside = fingerprint(case.root, skip=[git, case.home, case.tmp])
    whole_git = fingerprint(git) if dry_run else {}
    state = refs_and_head(repo)
    known = branches(repo)
    what = f"{shape} {[(n, c[:120]) for n, c in inputs]!r}"

    outcome = invoke(case, args, cwd=repo if from_repo else case.root)

    note_event(f"import exit {outcome.exit_code}")
    check_outcome(outcome, args, IMPORT_CODES, what)
    assert changes(outside, fingerprint(case.root, skip=[git, case.home, case.tmp])) == [], (
        f"import wrote outside the repository's .git ({what})"
    )
    check_scratch_empty(case, args)
    assert refs_and_head(repo) == state, f"import moved HEAD, main or the index ({what})"
    new = branches(repo) - known
    if dry_run:
        assert changes(whole_git, fingerprint(git)) == [], f"--dry-run wrote into .git ({what})"
    assert len(new) <= 1, (new, what)
    if fmt == "json" and outcome.exit_code in (0, 1):
        report: Any = check_json_output(outcome, args, what)
        assert isinstance(report, list), what
        failed = any(isinstance(r, dict) and r.get("status") == "failed" for r in report)
        assert outcome.exit_code == (1 if failed else 0), (outcome.exit_code, report, what)
        for result in report:
            note_event(f"import {result.get('format')}: {result.get('status')}")
    if new:
        note_event("import committed")
        if prepare is None:  # a fuzzed HEAD may fail validation whatever is imported
            check_committed_branch(case, repo, new.pop(), what)
    return outcome


@fuzz(weight=3.0)
@given(
    data=st.data(),
    count=st.integers(1, 3),
    shape=st.sampled_from(["file", "file", "files", "dir"]),
    mode=st.sampled_from(MODES),
    dry_run=st.booleans(),
    branch=st.sampled_from(BRANCHES),
    fmt=st.sampled_from(["text", "json"]),
    from_repo=st.booleans(),
)
def test_import_survives_fuzzed_inputs(
    base: Path,
    template: Path,
    bundles: dict[str, dict[str, bytes]],
    data: st.DataObject,
    count: int,
    shape: str,
    mode: str,
    dry_run: bool,
    branch: str | None,
    fmt: str,
    from_repo: bool,
) -> None:
    inputs = []
    for index in range(count if shape != "file" else 1):
        content = data.draw(an_input(bundles), label=f"input {index}")
        suffix = data.draw(st.sampled_from(SUFFIXES), label=f"suffix {index}")
        inputs.append((f"input-{index}{suffix}", content))
    with new_case(base) as case:
        run_import(case, template, inputs, shape, mode, dry_run, branch, fmt, from_repo)


@fuzz(weight=1.0)
@given(
    data=st.data(),
    mode=st.sampled_from(MODES),
    fmt=st.sampled_from(["text", "json"]),
)
def test_import_survives_fuzzed_bundles(
    base: Path,
    template: Path,
    bundles: dict[str, dict[str, bytes]],
    data: st.DataObject,
    mode: str,
    fmt: str,
) -> None:
    content = data.draw(st.one_of(edited_bundle(bundles), raw_bundle()), label="bundle")
    with new_case(base) as case:
        run_import(case, template, [("b.tar.gz", content)], "file", mode, False, None, fmt, True)


@fuzz(weight=1.5)
@given(
    content=st.one_of(structured_n8n(), mutated(N8N_SEEDS, JSON_TOKENS)),
    mode=st.sampled_from(MODES),
    fmt=st.sampled_from(["text", "json"]),
)
def test_import_survives_fuzzed_n8n(
    base: Path, template: Path, content: bytes, mode: str, fmt: str
) -> None:
    with new_case(base) as case:
        run_import(case, template, [("w.json", content)], "file", mode, False, None, fmt, True)


@fuzz(weight=1.0)
@given(
    content=structured_manifest(),
    mode=st.sampled_from(MODES),
    fmt=st.sampled_from(["text", "json"]),
)
def test_import_survives_fuzzed_manifests(
    base: Path, template: Path, content: tuple[bytes, str], mode: str, fmt: str
) -> None:
    data, suffix = content
    with new_case(base) as case:
        run_import(case, template, [("m" + suffix, data)], "file", mode, False, None, fmt, True)


@fuzz(weight=0.5)
@given(
    content=st.one_of(
        mutated(YAML_SEEDS, YAML_TOKENS), structured_manifest().map(lambda made: made[0])
    ),
    path=st.sampled_from(
        [
            "workflows/lead-nurture.yaml",
            "workflows/expressions.yaml",
            "workflows/new.yaml",
            "environments/prod.yaml",
            "environments/new.yaml",
        ]
    ),
    restored=st.booleans(),
    seed=st.sampled_from(
        [
            "expressions.n8n.json",
            "old-v1alpha0.yaml",
            "old-env-v0.yaml",
            "lead-nurture.yaml",
            "everything.yaml",
        ]
    ),
    mode=st.sampled_from(MODES),
    dry_run=st.booleans(),
)
def test_import_survives_a_fuzzed_history(
    base: Path,
    template: Path,
    content: bytes,
    path: str,
    restored: bool,
    seed: str,
    mode: str,
    dry_run: bool,
) -> None:
    """The import reads HEAD's manifests and their git history (versions, pins, the
    names taken): a fuzzed manifest committed on HEAD (or committed, then restored by a
    later commit) under a seed being imported."""

    def commit_fuzzed(repo: Path) -> None:
        target = repo / path
        original = target.read_bytes() if target.exists() else None
        target.write_bytes(content)
        opened = pygit2.Repository(str(repo))
        commit_all(opened, "fuzzed")
        if restored:
            if original is None:
                target.unlink()
            else:
                target.write_bytes(original)
            commit_all(opened, "restored")

    inputs = [(seed, {**YAML_SEEDS, **N8N_SEEDS}[seed])]
    with new_case(base) as case:
        run_import(case, template, inputs, "file", mode, dry_run, None, "json", True, commit_fuzzed)


def test_seeds_import_cleanly(base: Path, template: Path) -> None:
    """The unmutated seeds import (a baseline: the fuzzers start from working inputs)."""
    for name, content in sorted({**YAML_SEEDS, **N8N_SEEDS}.items()):
        with new_case(base) as case:
            outcome = run_import(
                case, template, [(name, content)], "file", "rename", False, None, "json", True
            )
            assert outcome.exit_code == 0, (name, outcome.output)


# ----------------------------------------------------------------------------- regressions
# Failures the fuzzers found, minimised: each runs on every `make test`, whatever the seed.


@pytest.mark.parametrize("branch", ["a b", "..", "x.lock", "@{1}", "-x", "x/", "HEAD"])
def test_an_invalid_branch_name_is_a_usage_error(base: Path, template: Path, branch: str) -> None:
    """Found by the fuzzer: `flowpin import FILE --branch 'a b'` crashed with pygit2's
    InvalidSpecError (a traceback) after reading and checking everything; a name git
    refuses is a usage error (exit 2), and nothing is written."""
    with new_case(base) as case:
        seed = ("old-v1alpha0.yaml", OLD_FORMAT_SEEDS["old-v1alpha0.yaml"])
        outcome = run_import(case, template, [seed], "file", "new", False, branch, "text", True)
        assert outcome.exit_code == 2, outcome.output
