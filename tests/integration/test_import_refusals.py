"""`flowpin import` on bad and hostile input, as a user runs it: the CLI in a subprocess, real
files, a real git repository. Every refusal is a message naming the file (and line or field),
the documented exit status, no traceback, and nothing written; memory and time stay bounded."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import pygit2
import pytest

from controller.testing.gitrepo import commit_all

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MiB = 2**20

# Runs the CLI as the only child of a fresh interpreter and prints that child's peak RSS, so
# that the figure is the import's own (RUSAGE_CHILDREN of the test process would be the
# largest of every child it ever waited for).
_MEASURE = """
import resource, subprocess, sys
done = subprocess.run([sys.executable, "-m", "controller.cli", *sys.argv[1:]])
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024, file=sys.stderr)
sys.exit(done.returncode)
"""


class Run:
    def __init__(self, done: subprocess.CompletedProcess[str], seconds: float) -> None:
        self.code = done.returncode
        self.stdout = done.stdout
        lines = done.stderr.rstrip("\n").split("\n")
        self.peak = int(lines[-1])
        self.stderr = "\n".join(lines[:-1])
        self.output = self.stdout + self.stderr
        self.seconds = seconds


def flowpin(*args: str, cwd: Path) -> Run:
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    run = Run(done, time.monotonic() - start)
    assert "Traceback" not in run.output, run.output
    return run


@pytest.fixture
def target(tmp_path: Path) -> pygit2.Repository:
    root = tmp_path / "target"
    (root / "workflows").mkdir(parents=True)
    (root / "README.md").write_text("workflows\n")
    repo = pygit2.init_repository(str(root), initial_head="main")
    commit_all(repo, "Start")
    return repo


def state(repo: pygit2.Repository) -> tuple[list[str], str, int]:
    """Branches, HEAD and the number of objects: what an import could have written."""
    objects = sum(1 for path in Path(repo.path, "objects").rglob("*") if path.is_file())
    return sorted(repo.branches.local), str(repo.head.target), objects


def n8n(connections: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    nodes = [
        {
            "parameters": {},
            "name": "Start",
            "type": "n8n-nodes-base.manualTrigger",
            "typeVersion": 1,
            "position": [0, 0],
        },
        {
            "parameters": {},
            "name": "Next",
            "type": "n8n-nodes-base.noOp",
            "typeVersion": 1,
            "position": [200, 0],
        },
    ]
    links = {"Start": {"main": [[{"node": "Next", "type": "main", "index": 0}]]}}
    return {"name": "Hostile", "nodes": nodes, "connections": connections or links, **extra}


ENV_SPEC_STRING = (
    "apiVersion: flowpin.dev/v1alpha1\nkind: Environment\nmetadata: {name: prod}\nspec: hello\n"
)


def test_environment_whose_spec_is_a_string(target: pygit2.Repository, tmp_path: Path) -> None:
    file = tmp_path / "env.yaml"
    file.write_text(ENV_SPEC_STRING)
    before = state(target)
    run = flowpin("import", str(file), "--into", target.workdir, cwd=tmp_path)
    assert run.code == 1
    assert "env.yaml:4:7: error[schema]: must be an object, got string 'hello' (at spec)" in (
        run.output
    )
    assert "refused: env.yaml → environments/prod.yaml (prod) does not validate" in run.output
    assert state(target) == before


@pytest.mark.parametrize(
    ("main", "field", "message"),
    [
        ([5], "connections.Start.main[0]", "output 0 of 'Start' (main) must be a list"),
        ([[{"node": {"x": 1}, "type": "main", "index": 0}]], "connections.Start.main[0][0]", ""),
    ],
)
def test_malformed_n8n_connections_import_with_a_warning(
    target: pygit2.Repository, tmp_path: Path, main: Any, field: str, message: str
) -> None:
    file = tmp_path / "hostile.json"
    file.write_text(json.dumps(n8n({"Start": {"main": main}}), indent=2))
    run = flowpin("import", str(file), "--into", target.workdir, "--branch", "in", cwd=tmp_path)
    assert run.code == 0, run.output
    warning = next(line for line in run.output.splitlines() if "warning[n8n-schema]" in line)
    assert warning.startswith("hostile.json:") and f"(at {field})" in warning
    assert message in warning
    tree = target.branches.local["in"].peel(pygit2.Commit).tree
    folder = tree["workflows"]
    assert isinstance(folder, pygit2.Tree) and "hostile.yaml" in folder


def test_lone_surrogate_in_n8n_json(target: pygit2.Repository, tmp_path: Path) -> None:
    file = tmp_path / "surrogate.json"
    text = json.dumps(n8n(), indent=2).replace('"Next"', '"Next\\ud800"', 1)
    file.write_text(text)
    before = state(target)
    run = flowpin("import", str(file), "--into", target.workdir, cwd=tmp_path)
    assert run.code == 1
    assert "surrogate.json (unknown): FAILED" in run.output
    assert (
        "refused: invalid JSON at line 16, column 15: a string at nodes[1].name holds a lone "
        "UTF-16 surrogate" in run.output
    )
    assert state(target) == before


def test_bundle_with_a_deep_manifest(target: pygit2.Repository, tmp_path: Path) -> None:
    members = {
        "manifest.json": b"[" * 100_000,
        "workflows/a/1.0.0.yaml": (EXAMPLES / "workflows/lead-nurture.yaml").read_bytes(),
    }
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    file = tmp_path / "deep.tar.gz"
    file.write_bytes(gzip.compress(raw.getvalue()))
    before = state(target)
    run = flowpin("import", str(file), "--into", target.workdir, cwd=tmp_path)
    assert run.code == 1
    assert "deep.tar.gz (bundle): FAILED" in run.output
    assert (
        "refused: bundle refused: manifest.json: not JSON (line 1, column 65: nested deeper "
        "than 64 levels)" in run.output
    )
    assert state(target) == before


@pytest.mark.parametrize(
    ("branch", "why"),
    [
        ("../x", "it contains `..`"),
        ("a..b", "it contains `..`"),
        ("HEAD", "HEAD is reserved"),
        ("-x", "it starts with `-`"),
        ("x.lock", "a part ends with `.lock`"),
        ("a b", "it contains a space"),
        ("x" * 300, "is longer than 200 bytes"),
        ("main", "branch main already exists"),
        ("main/x", "branch main/x cannot sit beside the existing branch main"),
    ],
)
def test_branches_git_refuses_are_usage_errors(
    target: pygit2.Repository, tmp_path: Path, branch: str, why: str
) -> None:
    file = tmp_path / "w.json"
    file.write_text(json.dumps(n8n()))
    before = state(target)
    run = flowpin("import", str(file), "--into", target.workdir, f"--branch={branch}", cwd=tmp_path)
    assert run.code == 2, run.output
    assert "Invalid value for '--branch'" in run.stderr and why in run.stderr
    assert state(target) == before


def test_one_bad_file_in_a_directory_leaves_the_others_to_import(
    target: pygit2.Repository, tmp_path: Path
) -> None:
    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "a-good.json").write_text(json.dumps(n8n(name="Good one")))
    (folder / "b-env.yaml").write_text(ENV_SPEC_STRING)
    (folder / "c-surrogate.json").write_text(
        json.dumps(n8n(name="Bad")).replace('"Bad"', '"Bad\\udc00"')
    )
    (folder / "d-connections.json").write_text(
        json.dumps(n8n({"Start": {"main": [5]}}, name="Odd links"))
    )
    (folder / "e-too-deep.json").write_text("[" * 100_000)
    (folder / "f-workflow.yaml").write_bytes(
        (EXAMPLES / "workflows/lead-nurture.yaml").read_bytes()
    )
    run = flowpin(
        "import",
        str(folder),
        "--into",
        target.workdir,
        "--no-progress",
        "--branch",
        "bulk",
        cwd=tmp_path,
    )
    assert run.code == 1, run.output
    rows = {line.split("│")[1].strip(): line for line in run.stdout.splitlines() if "│" in line}
    assert "imported" in rows["a-good.json"]
    assert "FAILED" in rows["b-env.yaml"]
    assert "FAILED" in rows["c-surrogate.json"]
    assert "imported" in rows["d-connections.json"]
    assert "FAILED" in rows["e-too-deep.json"] and "nested deeper than 64" in run.stdout
    assert "imported" in rows["f-workflow.yaml"]
    tree = target.branches.local["bulk"].peel(pygit2.Commit).tree
    workflows = tree["workflows"]
    assert isinstance(workflows, pygit2.Tree)
    written = sorted(str(entry.name) for entry in workflows)
    assert written == ["good-one.yaml", "lead-nurture.yaml", "odd-links.yaml"]
    assert "environments" not in tree


def test_an_n8n_file_with_one_huge_string_stays_in_bounded_memory(
    target: pygit2.Repository, tmp_path: Path
) -> None:
    # Just under the 16 MiB limit: parsed, converted, its warning located, and refused by
    # validation (a manifest may hold 1 MiB). The string comes first, where the old
    # tokenizer's regex held ~130 bytes for each of its characters: 2.6 GB for 20 MiB.
    file = tmp_path / "huge.json"
    rest = {key: value for key, value in n8n().items() if key != "name"}
    rest["nodes"][1]["type"] = "n8n-nodes-base.code"  # a warning to locate in the file
    file.write_text(json.dumps({"name": "a" * (15 * MiB), **rest}))
    run = flowpin("import", str(file), "--into", target.workdir, "--dry-run", cwd=tmp_path)
    assert run.code == 1
    assert "huge.json:" in run.output and "warning[n8n-verbatim]" in run.output
    assert "file is larger than the limit of 1048576 bytes" in run.output
    assert run.peak < 256 * MiB, run.peak / MiB
    print(f"peak for a 15 MiB string: {run.peak / MiB:.0f} MiB")

    file.write_text(json.dumps({"name": "a" * (20 * MiB), **rest}))
    run = flowpin("import", str(file), "--into", target.workdir, cwd=tmp_path)
    assert run.code == 1
    assert "refused: 20 MiB: larger than the 16 MiB a JSON or YAML file may have" in run.output
    assert run.peak < 128 * MiB, run.peak / MiB
    print(f"peak for a 20 MiB string: {run.peak / MiB:.0f} MiB")


def _bomb(kind: bytes, claimed: int) -> bytes:
    """A small .tar.gz whose one header claims `claimed` bytes and has them (zeros): gzip
    members, one per 16 MiB, concatenated (a valid gzip stream)."""
    info = tarfile.TarInfo("././@LongLink" if kind == tarfile.GNUTYPE_LONGNAME else "pax")
    info.type = kind
    info.size = claimed
    chunk = 16 * MiB
    zeros = gzip.compress(bytes(chunk), compresslevel=9)
    first = gzip.compress(info.tobuf(format=tarfile.GNU_FORMAT) + bytes(chunk - 512), 9)
    return first + zeros * (claimed // chunk)


@pytest.mark.parametrize("kind", [tarfile.XHDTYPE, tarfile.GNUTYPE_LONGNAME])
def test_a_tar_header_claiming_gigabytes_is_refused_at_once(
    target: pygit2.Repository, tmp_path: Path, kind: bytes
) -> None:
    file = tmp_path / "bomb.tar.gz"
    file.write_bytes(_bomb(kind, int(1.2 * 2**30)))
    assert file.stat().st_size < 2 * MiB
    before = state(target)
    run = flowpin("import", str(file), "--into", target.workdir, cwd=tmp_path)
    assert run.code == 1
    what = "a pax header" if kind == tarfile.XHDTYPE else "a GNU long name"
    assert (
        f"refused: bundle refused: {what} at byte 0 claims 1.2 GiB, more than the 64 KiB a "
        "header may have; refused" in run.output
    )
    print(f"peak for a header claiming 1.2 GiB: {run.peak / MiB:.0f} MiB, {run.seconds:.2f} s")
    assert run.peak < 128 * MiB, run.peak / MiB  # before: 1.3 GB
    assert run.seconds < 10  # before: 5 s (GNU) to minutes (pax); now well under one
    assert state(target) == before
