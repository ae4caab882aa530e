"""flowpin export and import on real git repositories (pygit2), through the CLI."""

from __future__ import annotations

import copy
import gzip
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pygit2
import pytest
from click.testing import CliRunner

from controller.cli.main import cli
from controller.git.history import resolve_commit, walk
from controller.interop.n8n import compare
from controller.testing.gitrepo import commit_all, repo_from_directory

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
LEAD = "workflows/lead-nurture.yaml"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert "Traceback" not in result.output
    return result.exit_code, result.output


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """The examples with lead-nurture 1.5.0 on top; prod and staging pin 1.4.0."""
    repo = repo_from_directory(EXAMPLES, tmp_path / "source", "Add examples")
    path = Path(repo.workdir) / LEAD
    path.write_text(
        path.read_text().replace("version: 1.4.0", "version: 1.5.0").replace("48h", "72h")
    )
    commit_all(repo, "Wait three days")
    return Path(repo.workdir)


@pytest.fixture
def target(tmp_path: Path) -> pygit2.Repository:
    """An empty workflow repository with one commit on main and a file in the work tree."""
    root = tmp_path / "target"
    (root / "workflows").mkdir(parents=True)
    (root / "README.md").write_text("workflows\n")
    repo = pygit2.init_repository(str(root), initial_head="main")
    commit_all(repo, "Start")
    (root / "scratch.txt").write_text("uncommitted work\n")
    return repo


def branches(repo: pygit2.Repository) -> list[str]:
    return sorted(repo.branches.local)


def import_branch(repo: pygit2.Repository) -> str:
    found = [b for b in branches(repo) if b.startswith("flowpin-import-")]
    assert len(found) == 1, found
    return found[0]


def adopt(repo: pygit2.Repository, branch: str) -> None:
    """Merge an import branch the way a pull request would (fast-forward) and check it out."""
    tip = repo.branches.local[branch].peel(pygit2.Commit)
    repo.references["refs/heads/main"].set_target(tip.id)
    repo.checkout("refs/heads/main", strategy=pygit2.enums.CheckoutStrategy.FORCE)
    repo.branches.local.delete(branch)


def tree_files(repo: pygit2.Repository, branch: str) -> set[str]:
    tree = repo.branches.local[branch].peel(pygit2.Commit).tree
    found: set[str] = set()
    todo = [(tree, "")]
    while todo:
        current, prefix = todo.pop()
        for entry in current:
            if isinstance(entry, pygit2.Tree):
                todo.append((entry, f"{prefix}{entry.name}/"))
            else:
                found.add(f"{prefix}{entry.name}")
    return found


# --------------------------------------------------------------------------- export


def test_export_single_formats(source: Path, tmp_path: Path) -> None:
    code, output = run("export", "lead-nurture", "--repo", str(source), "--version", "1.4.0")
    assert code == 0
    assert output == (EXAMPLES / LEAD).read_text()
    code, output = run("export", "lead-nurture", "--repo", str(source), "--format", "json")
    assert code == 0 and json.loads(output)["spec"]["version"] == "1.5.0"
    code, output = run("export", "lead-nurture", "--repo", str(source), "--format", "n8n")
    assert code == 0
    n8n = json.loads(output)
    assert [n["name"] for n in n8n["nodes"]][:2] == ["signup", "nightly"]
    code, output = run("export", "--all", "--repo", str(source), "-o", str(tmp_path / "out"))
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "lead-nurture.yaml",
        "onboarding.yaml",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["export", "ghost"],
            "no workflow 'ghost' in history (workflows: lead-nurture, onboarding)",
        ),
        (["export", "lead-nurture", "--version", "9.0.0"], "lead-nurture has no version 9.0.0"),
        (
            ["export", "lead-nurture", "--format", "bundle"],
            "a bundle is binary: give -o FILE.tar.gz",
        ),
        (["export"], "name one WORKFLOW, or pass --all"),
        (["export", "--all", "--format", "json"], "give -o DIR"),
    ],
)
def test_export_usage_errors(source: Path, args: list[str], message: str) -> None:
    code, output = run(*args, "--repo", str(source))
    assert code == 2
    assert message in " ".join(output.split())


def export_bundle(source: Path, path: Path, *extra: str) -> bytes:
    code, output = run(
        "export", "--all", "--format", "bundle", "-o", str(path), "--repo", str(source), *extra
    )
    assert code == 0, output
    return path.read_bytes()


def without_export_time(bundle: bytes) -> bytes:
    """The uncompressed archive with its manifest's `exportedAt` value blanked."""
    with tarfile.open(fileobj=io.BytesIO(bundle), mode="r:gz") as archive:
        manifest = json.load(archive.extractfile("manifest.json"))  # type: ignore[arg-type]
    plain = gzip.decompress(bundle)
    assert plain.count(manifest["exportedAt"].encode()) == 1
    return plain.replace(manifest["exportedAt"].encode(), b"-" * len(manifest["exportedAt"]))


def test_bundle_holds_pinned_and_latest_versions_with_checksums(
    source: Path, tmp_path: Path
) -> None:
    data = export_bundle(source, tmp_path / "b.tar.gz", "--include-environments")
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        names = archive.getnames()
        manifest = json.load(archive.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert names == [
        "manifest.json",
        "environments/dev.yaml",
        "environments/prod.yaml",
        "environments/staging.yaml",
        "workflows/lead-nurture/1.4.0.yaml",
        "workflows/lead-nurture/1.5.0.yaml",
        "workflows/onboarding/2.1.3.yaml",
    ]
    head = pygit2.Repository(str(source)).head.target
    assert manifest["sourceCommit"] == str(head)
    assert manifest["workflows"]["lead-nurture"] == {
        "versions": ["1.4.0", "1.5.0"],
        "latest": "1.5.0",
        "pinned": {"dev": "1.5.0", "prod": "1.4.0", "staging": "1.4.0"},
    }
    assert set(manifest["files"]) == set(names) - {"manifest.json"}
    # Deterministic: a second export differs only in its own exportedAt (the second may tick).
    again = export_bundle(source, tmp_path / "again.tar.gz", "--include-environments")
    assert without_export_time(again) == without_export_time(data)


def test_bundle_import_recreates_history_on_a_new_branch(
    source: Path, target: pygit2.Repository, tmp_path: Path
) -> None:
    bundle = tmp_path / "b.tar.gz"
    export_bundle(source, bundle, "--include-environments")
    head_before = target.head.target
    code, output = run("import", str(bundle), "--into", target.workdir)
    assert code == 0, output
    assert "imported" in output and "committed 6 files on branch flowpin-import-" in output
    branch = import_branch(target)
    # The checkout is untouched: same HEAD, same work tree.
    assert target.head.target == head_before and target.head.shorthand == "main"
    assert sorted(p.name for p in Path(target.workdir).iterdir() if p.name != ".git") == [
        "README.md",
        "scratch.txt",
        "workflows",
    ]
    assert tree_files(target, branch) == {
        "README.md",
        "environments/dev.yaml",
        "environments/prod.yaml",
        "environments/staging.yaml",
        "workflows/lead-nurture.yaml",
        "workflows/onboarding.yaml",
    }
    tip = resolve_commit(target, branch)
    index = walk(target, tip).index
    assert sorted(index.versions["lead-nurture"]) == ["1.4.0", "1.5.0"]
    assert tip.parents[0].message.startswith("flowpin import: lead-nurture 1.4.0")
    adopt(target, branch)
    code, output = run("validate", target.workdir)
    assert code == 0, output


def retar(data: bytes, change: Any) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        members = {m.name: archive.extractfile(m).read() for m in archive}  # type: ignore[union-attr]
    members = change(members)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return gzip.compress(raw.getvalue())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda m: (
                m
                | {
                    "workflows/onboarding/2.1.3.yaml": m["workflows/onboarding/2.1.3.yaml"]
                    + b"# x\n"
                }
            ),
            "workflows/onboarding/2.1.3.yaml: content differs from its sha256 in manifest.json "
            "(tampered)",
        ),
        (
            lambda m: m | {"workflows/evil/1.0.0.yaml": b"kind: Workflow\n"},
            "workflows/evil/1.0.0.yaml: in the bundle but not listed in manifest.json (tampered)",
        ),
        (
            lambda m: {k: v for k, v in m.items() if k != "workflows/onboarding/2.1.3.yaml"},
            "workflows/onboarding/2.1.3.yaml: listed in manifest.json but missing from the bundle",
        ),
    ],
)
def test_tampered_bundles_are_refused(
    source: Path, target: pygit2.Repository, tmp_path: Path, change: Any, message: str
) -> None:
    bundle = tmp_path / "t.tar.gz"
    bundle.write_bytes(retar(export_bundle(source, tmp_path / "b.tar.gz"), change))
    code, output = run("import", str(bundle), "--into", target.workdir)
    assert code == 1
    assert message in output
    assert branches(target) == ["main"]


# --------------------------------------------------------------------------- n8n


def n8n_workflow() -> dict[str, Any]:
    def node(
        name: str, kind: str, version: float, parameters: dict[str, Any], **extra: Any
    ) -> dict[str, Any]:
        return {
            "parameters": parameters,
            "id": f"n-{name.lower().replace(' ', '-')}",
            "name": name,
            "type": f"n8n-nodes-base.{kind}",
            "typeVersion": version,
            "position": [len(name) * 40, 100],
            **extra,
        }

    return {
        "name": "Order Follow Up",
        "nodes": [
            node(
                "Order placed",
                "webhook",
                2,
                {"httpMethod": "POST", "path": "orders", "options": {}},
                webhookId="w1",
            ),
            node(
                "Look up order",
                "httpRequest",
                4.2,
                {"url": "=https://shop.example/orders/{{ $json.body.id }}", "options": {}},
            ),
            node("Wait a day", "wait", 1.1, {"amount": 1, "unit": "days"}),
            node(
                "Paid?",
                "if",
                2,
                {
                    "conditions": {
                        "options": {
                            "caseSensitive": True,
                            "leftValue": "",
                            "typeValidation": "strict",
                        },
                        "conditions": [
                            {
                                "leftValue": "={{ $('Look up order').item.json.status }}",
                                "rightValue": "paid",
                                "operator": {"type": "string", "operation": "equals"},
                            }
                        ],
                        "combinator": "and",
                    },
                    "options": {},
                },
            ),
            node(
                "Thank",
                "gmail",
                2.1,
                {"sendTo": "={{ $json.email }}"},
                credentials={"gmailOAuth2": {"id": "g1", "name": "Shop mail"}},
            ),
            node(
                "Remind",
                "set",
                3.4,
                {
                    "assignments": {
                        "assignments": [{"name": "reminded", "type": "boolean", "value": True}]
                    },
                    "options": {},
                },
            ),
            node(
                "Explain",
                "stickyNote",
                1,
                {"content": "Follows up on orders", "height": 160, "width": 240},
            ),
        ],
        "connections": {
            "Order placed": {"main": [[{"node": "Look up order", "type": "main", "index": 0}]]},
            "Look up order": {"main": [[{"node": "Wait a day", "type": "main", "index": 0}]]},
            "Wait a day": {"main": [[{"node": "Paid?", "type": "main", "index": 0}]]},
            "Paid?": {
                "main": [
                    [{"node": "Thank", "type": "main", "index": 0}],
                    [{"node": "Remind", "type": "main", "index": 0}],
                ]
            },
        },
        "settings": {"executionOrder": "v1", "timezone": "Europe/Paris"},
        "pinData": {},
        "tags": [{"id": "1", "name": "shop"}],
        "meta": {"instanceId": "i-1"},
        "versionId": "5f0c",
    }


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))
    return path


def test_n8n_import_validates_and_exports_back_losslessly(
    target: pygit2.Repository, tmp_path: Path
) -> None:
    original = n8n_workflow()
    file = write_json(tmp_path / "n8n" / "orders.json", original)
    code, output = run("import", str(file), "--into", target.workdir)
    assert code == 0, output
    assert "orders.json (n8n): imported → workflows/order-follow-up.yaml" in output
    assert "kept as an n8n step: n8n-nodes-base.gmail has no flowpin step type" in output
    adopt(target, import_branch(target))
    text = (Path(target.workdir) / "workflows/order-follow-up.yaml").read_text()
    assert (
        "type: condition" in text
        and 'when: steps["look-up-order"].output.body.status == "paid"' in text
    )
    code, output = run("validate", target.workdir)
    assert code == 0, output
    code, output = run("export", "order-follow-up", "--format", "n8n", "--repo", target.workdir)
    assert code == 0
    assert compare(original, json.loads(output)) == []


def test_conflict_modes(target: pygit2.Repository, tmp_path: Path) -> None:
    file = write_json(tmp_path / "orders.json", n8n_workflow())
    assert run("import", str(file), "--into", target.workdir)[0] == 0
    adopt(target, import_branch(target))
    code, output = run("import", str(file), "--into", target.workdir)
    assert code == 1
    assert (
        "workflow 'order-follow-up' already exists (workflows/order-follow-up.yaml); use --mode"
        in output
    )
    assert branches(target) == ["main"]
    code, output = run("import", str(file), "--into", target.workdir, "--mode", "skip")
    assert code == 0 and "skipped" in output and branches(target) == ["main"]
    code, output = run("import", str(file), "--into", target.workdir, "--mode", "overwrite")
    assert code == 0 and "unchanged" in output and branches(target) == ["main"]
    code, output = run(
        "import", str(file), "--into", target.workdir, "--mode", "rename", "--branch", "renamed"
    )
    assert code == 0
    assert "imported as 'order-follow-up-2'" in output
    assert "workflows/order-follow-up-2.yaml" in tree_files(target, "renamed")
    changed = n8n_workflow()
    changed["nodes"][2]["parameters"]["amount"] = 2
    write_json(file, changed)
    code, output = run(
        "import", str(file), "--into", target.workdir, "--mode", "overwrite", "--branch", "over"
    )
    assert code == 0 and "overwritten" in output
    blob = target.branches.local["over"].peel(pygit2.Commit).tree["workflows/order-follow-up.yaml"]
    assert b"version: 1.0.1" in blob.data  # type: ignore[union-attr]


def test_dry_run_writes_nothing(target: pygit2.Repository, tmp_path: Path) -> None:
    file = write_json(tmp_path / "orders.json", n8n_workflow())
    code, output = run("import", str(file), "--into", target.workdir, "--dry-run")
    assert code == 0
    assert "dry run: would commit 1 file in 1 commit" in output
    assert branches(target) == ["main"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("broken.json", b'{"nodes": [', "invalid JSON at line 1, column 12"),
        (
            "other.json",
            b'{"hello": "world"}',
            "not a flowpin manifest, an n8n workflow or a bundle",
        ),
        ("notes.txt.yaml", b"- just\n- a list\n", "not a flowpin manifest"),
        (
            "dupes.json",
            json.dumps(
                {"nodes": [{"name": "A", "type": "x"}, {"name": "A", "type": "y"}]}
            ).encode(),
            "two nodes are named 'A'",
        ),
        (
            "empty.json",
            json.dumps({"name": "E", "nodes": [], "connections": {}}).encode(),
            "at least one step",
        ),
        (
            "future.yaml",
            b"apiVersion: flowpin.dev/v7\nkind: Workflow\n",
            "'flowpin.dev/v7' is not a flowpin format",
        ),
        ("bad.tar.gz", gzip.compress(b"garbage"), "bundle refused: not a readable .tar.gz"),
    ],
)
def test_bad_input_is_refused_with_the_reason(
    target: pygit2.Repository, tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    file = tmp_path / name
    file.write_bytes(content)
    code, output = run("import", str(file), "--into", target.workdir)
    assert code == 1
    assert message in output
    assert branches(target) == ["main"]


def test_not_a_repository_is_a_usage_error(tmp_path: Path) -> None:
    file = write_json(tmp_path / "orders.json", n8n_workflow())
    (tmp_path / "plain").mkdir()
    code, output = run("import", str(file), "--into", str(tmp_path / "plain"))
    assert code == 2 and "is not inside a git repository" in output


def test_directory_import_ends_with_a_summary(target: pygit2.Repository, tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    write_json(folder / "a.json", n8n_workflow())
    second = copy.deepcopy(n8n_workflow())
    second["name"] = "Second"
    write_json(folder / "nested" / "b.json", second)
    (folder / "c.json").write_text('{"oops": true}')
    (folder / "old.yaml").write_text(
        "kind: Workflow\nname: legacy\nversion: 0.1.0\nsteps: [{id: a, type: noop}]\n"
    )
    (folder / "ignored.txt").write_text("not an input")
    code, output = run(
        "import", str(folder), "--into", target.workdir, "--no-progress", "--branch", "bulk"
    )
    assert code == 1
    flat = " ".join(output.split())
    assert "import summary" in flat
    assert "1 failed, 3 imported" in flat
    assert "c.json" in flat and "FAILED" in flat
    assert tree_files(target, "bulk") >= {
        "workflows/order-follow-up.yaml",
        "workflows/second.yaml",
        "workflows/legacy.yaml",
    }


def test_migrations_are_listed_in_the_output(target: pygit2.Repository, tmp_path: Path) -> None:
    file = tmp_path / "old.yaml"
    file.write_text(
        "apiVersion: flowpin.dev/v1alpha0\nkind: Workflow\nmetadata: {name: old}\n"
        "spec:\n  version: 1.0.0\n  steps: [{id: pause, type: wait, wait: {seconds: 5}}]\n"
    )
    code, output = run("import", str(file), "--into", target.workdir, "--branch", "old")
    assert code == 0, output
    assert (
        "migrated" in output
        and "flowpin.dev/v1alpha0 → flowpin.dev/v1alpha1: "
        "spec.steps[0].wait.seconds: 5 → duration: 5s"
        in output
    )
    blob = target.branches.local["old"].peel(pygit2.Commit).tree["workflows/old.yaml"]
    assert b"duration: 5s" in blob.data  # type: ignore[union-attr]


def test_json_output(target: pygit2.Repository, tmp_path: Path) -> None:
    file = write_json(tmp_path / "orders.json", n8n_workflow())
    code, output = run(
        "import", str(file), "--into", target.workdir, "--dry-run", "--format", "json"
    )
    assert code == 0
    rows, _ = json.JSONDecoder().raw_decode(output)
    assert rows == [
        {
            "file": rows[0]["file"],
            "format": "n8n",
            "status": "imported",
            "written": ["workflows/order-follow-up.yaml"],
            "reasons": [],
            "migrations": [],
            "findings": rows[0]["findings"],
        }
    ]
    assert {f["code"] for f in rows[0]["findings"]} == {"n8n-verbatim", "n8n-meaning"}
    assert rows[0]["file"].endswith("orders.json")
