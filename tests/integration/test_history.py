"""Versions from git history and the history rules, on real repositories made with pygit2."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pygit2
import pytest
from click.testing import CliRunner

from controller.cli.main import cli
from controller.git.history import WorkflowHistory, resolve_commit, walk
from controller.model.versions import index_from_json, index_to_json
from controller.testing.gitrepo import AUTHOR, commit_all, repo_from_directory

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
LEAD = "workflows/lead-nurture.yaml"


@pytest.fixture
def repo(tmp_path: Path) -> pygit2.Repository:
    return repo_from_directory(EXAMPLES, tmp_path / "repo", "Add examples")


def workdir(repo: pygit2.Repository) -> Path:
    return Path(repo.workdir)


def edit(repo: pygit2.Repository, path: str, change: Callable[[str], str]) -> None:
    file = workdir(repo) / path
    file.write_text(change(file.read_text()))


def bump(version: str, *extra: tuple[str, str]) -> Callable[[str], str]:
    def change(text: str) -> str:
        text = text.replace("version: 1.4.0", f"version: {version}")
        for old, new in extra:
            assert old in text
            text = text.replace(old, new)
        return text

    return change


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_each_version_is_the_file_where_it_first_appeared(repo: pygit2.Repository) -> None:
    first = str(repo.head.target)
    edit(repo, LEAD, bump("1.5.0", ("duration: 48h", "duration: 72h")))
    second = commit_all(repo, "Wait three days")
    edit(repo, LEAD, lambda t: t.replace("duration: 72h", "duration: 96h"))
    commit_all(repo, "Change without a bump")

    index = walk(repo, resolve_commit(repo, "HEAD")).index
    versions = index.versions["lead-nurture"]
    assert sorted(versions) == ["1.4.0", "1.5.0"]
    assert versions["1.4.0"].commit.id == first
    assert versions["1.5.0"].commit.id == second
    assert versions["1.5.0"].spec["steps"][1]["wait"]["duration"] == "72h"  # not mutated
    (mutated,) = index.mutated()
    assert mutated.code == "version-mutated" and mutated.file == LEAD


def test_first_parent_history_sees_a_merge_as_one_commit(repo: pygit2.Repository) -> None:
    main_tip = repo.head.target
    feature = repo.branches.local.create("feature", repo[main_tip])
    repo.checkout(feature)
    edit(repo, LEAD, bump("1.5.0"))
    commit_all(repo, "1.5.0 on a branch")
    edit(repo, LEAD, lambda t: t.replace("version: 1.5.0", "version: 1.6.0"))
    feature_tip = commit_all(repo, "1.6.0 on a branch")
    repo.checkout(repo.branches.local["main"])
    tree = repo[feature_tip].tree.id
    merge = repo.create_commit(
        "refs/heads/main", AUTHOR, AUTHOR, "Merge feature", tree, [main_tip, feature_tip]
    )
    index = walk(repo, resolve_commit(repo, "main")).index
    assert sorted(index.versions["lead-nurture"]) == ["1.4.0", "1.6.0"]
    assert index.versions["lead-nurture"]["1.6.0"].commit.id == str(merge)


def test_incremental_walk_equals_a_full_walk(repo: pygit2.Repository) -> None:
    index = walk(repo, resolve_commit(repo, "HEAD")).index
    for version in ("1.5.0", "1.6.0", "1.7.0"):
        edit(repo, LEAD, lambda t, v=version: t.replace(t.split("version: ")[1][:5], v, 1))
        commit_all(repo, version)
    step = walk(repo, resolve_commit(repo, "HEAD"), index=index)
    assert step.commits == 3 and not step.rewritten
    full = walk(repo, resolve_commit(repo, "HEAD")).index
    assert sorted(step.index.versions["lead-nurture"]) == sorted(full.versions["lead-nurture"])
    assert step.index.last_commit == full.last_commit == str(repo.head.target)


def test_rewritten_history_keeps_every_version(repo: pygit2.Repository) -> None:
    root = repo.head.target
    edit(repo, LEAD, bump("1.5.0"))
    commit_all(repo, "1.5.0")
    index = walk(repo, resolve_commit(repo, "HEAD")).index
    repo.reset(root, pygit2.enums.ResetMode.HARD)  # force-push that drops 1.5.0
    edit(repo, LEAD, bump("1.6.0"))
    commit_all(repo, "1.6.0 instead")
    result = walk(repo, resolve_commit(repo, "HEAD"), index=index)
    assert result.rewritten
    assert sorted(result.index.versions["lead-nurture"]) == ["1.4.0", "1.5.0", "1.6.0"]
    assert result.index.current_versions()["lead-nurture"] == "1.6.0"


def test_invalid_commit_deletes_nothing(repo: pygit2.Repository) -> None:
    index = walk(repo, resolve_commit(repo, "HEAD")).index
    (workdir(repo) / LEAD).write_text("spec: [unclosed")
    commit_all(repo, "Broken")
    walk(repo, resolve_commit(repo, "HEAD"), index=index)
    assert "1.4.0" in index.versions["lead-nurture"]
    (finding,) = index.invalid_files()
    assert (finding.file, finding.code) == (LEAD, "yaml-syntax")


def test_each_pin_remembers_the_commit_that_set_it(repo: pygit2.Repository) -> None:
    first = str(repo.head.target)
    edit(repo, LEAD, bump("1.5.0"))
    commit_all(repo, "1.5.0")
    staging = "environments/staging.yaml"
    edit(repo, staging, lambda t: t.replace("lead-nurture: 1.4.0", "lead-nurture: 1.5.0"))
    pinned = commit_all(repo, "Promote lead-nurture to staging")
    edit(repo, staging, lambda t: t.replace("inflight: pin", "inflight: cancel"))
    touched = commit_all(repo, "Cancel in-flight runs in staging")

    index = walk(repo, resolve_commit(repo, "HEAD")).index
    env = index.environments["staging"]
    assert env.commit.id == touched  # the file's last commit ...
    assert env.pin_commit("lead-nurture").id == pinned  # ... is not what set the pins
    assert env.pin_commit("onboarding").id == first
    incremental = walk(repo, resolve_commit(repo, pinned), index=None).index
    incremental = walk(repo, resolve_commit(repo, "HEAD"), index=incremental).index
    assert incremental.environments == index.environments
    restored = index_from_json(index_to_json(index))
    assert restored is not None and restored.environments == index.environments


def test_path_history_reads_only_the_file_that_matters(repo: pygit2.Repository) -> None:
    for version in ("1.5.0", "1.6.0"):
        edit(repo, LEAD, lambda t, v=version: t.replace(t.split("version: ")[1][:5], v, 1))
        commit_all(repo, version)
    history = WorkflowHistory(repo, resolve_commit(repo, "HEAD"), {"lead-nurture": LEAD})
    assert sorted(history.versions("lead-nurture")) == ["1.4.0", "1.5.0", "1.6.0"]
    assert history.versions("unknown") == {}


# ------------------------------------------------------------------ validate --against


def test_a_change_without_a_bump_is_refused(repo: pygit2.Repository) -> None:
    edit(repo, LEAD, lambda t: t.replace("duration: 48h", "duration: 72h"))
    code, output = run("validate", str(workdir(repo)), "--against", "main")
    assert code == 1
    assert f"{LEAD}:8:12: error[version-not-bumped]" in output
    assert "Bump it to 1.4.1" in output


def test_a_version_must_not_go_backwards(repo: pygit2.Repository) -> None:
    edit(repo, LEAD, bump("1.3.9", ("duration: 48h", "duration: 72h")))
    code, output = run("validate", str(workdir(repo)), "--against", "main")
    assert code == 1 and "error[version-decreased]" in output


def test_breaking_change_needs_a_major_bump(repo: pygit2.Repository) -> None:
    edit(repo, LEAD, bump("1.5.0", ("id: wait-2d", "id: pause"), ("next: wait-2d", "next: pause")))
    code, output = run("validate", str(workdir(repo)), "--against", "main")
    assert code == 1
    assert "error[insufficient-bump]: breaking changes need a major bump (1.4.0 → 2.0.0)" in output


def test_breaking_change_mapped_by_a_migration_needs_a_minor_bump(
    repo: pygit2.Repository,
) -> None:
    edit(
        repo,
        LEAD,
        bump(
            "1.5.0",
            ("id: wait-2d", "id: pause"),
            ("next: wait-2d", "next: pause"),
            ("map: {wait-1d: wait-2d}", "map: {wait-2d: pause}"),
            ('from: ">=1.0.0 <1.4.0"', 'from: ">=1.0.0 <1.5.0"'),
        ),
    )
    code, output = run("validate", str(workdir(repo)), "--against", "main")
    assert code == 0, output


def test_a_sufficient_bump_and_a_moved_pin_pass(repo: pygit2.Repository) -> None:
    edit(repo, LEAD, bump("1.5.0", ("duration: 48h", "duration: 72h")))
    edit(repo, "environments/staging.yaml", lambda t: t.replace("1.4.0", "1.5.0"))
    code, output = run("validate", str(workdir(repo)), "--against", "main")
    assert code == 0, output


def test_a_pin_must_name_a_version_in_history(
    repo: pygit2.Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    edit(repo, "environments/staging.yaml", lambda t: t.replace("1.4.0", "1.4.7"))
    monkeypatch.chdir(workdir(repo))  # findings name files relative to the current directory
    code, output = run("validate", "--against", "main", "--format", "json")
    assert code == 1
    findings = json.loads(output)["findings"]
    assert [(f["file"], f["code"]) for f in findings] == [
        ("environments/staging.yaml", "unknown-version")
    ]


def test_versions_command_lists_history(repo: pygit2.Repository) -> None:
    edit(repo, LEAD, bump("1.5.0", ("duration: 48h", "duration: 72h")))
    commit_all(repo, "Wait three days")
    code, output = run("versions", "lead-nurture", "--repo", str(workdir(repo)), "--format", "json")
    assert code == 0
    listed = json.loads(output)["versions"]
    assert [v["version"] for v in listed] == ["1.4.0", "1.5.0"]
    assert listed[1]["message"] == "Wait three days"
    assert listed[1]["author"] == "flowpin demo <demo@flowpin.dev>"


def test_plan_shows_changes_gates_and_migrations(repo: pygit2.Repository) -> None:
    edit(repo, LEAD, bump("2.0.0", ("id: wait-2d", "id: pause"), ("next: wait-2d", "next: pause")))
    edit(
        repo,
        "environments/prod.yaml",
        lambda t: t.replace("lead-nurture: 1.4.0", "lead-nurture: 2.0.0"),
    )
    code, output = run("plan", str(workdir(repo)), "--against", "main", "--format", "json")
    assert code == 0, output
    changes = json.loads(output)["changes"]
    by_env = {c["environment"]: c for c in changes}
    assert set(by_env) == {"dev", "prod"}  # dev tracks latest; staging keeps 1.4.0
    prod = by_env["prod"]
    assert (prod["from_version"], prod["to_version"], prod["change_class"]) == (
        "1.4.0",
        "2.0.0",
        "breaking",
    )
    assert prod["gates"] == [
        "the version is valid",
        "Verified in staging",
        "soaked 1h after verification in staging",
        "allow window '0 9 * * 1-5' for 8h (UTC)",
        "approved (flowpin approve)",
    ]
    assert prod["migrationsCover"] is False
    code, markdown = run("plan", str(workdir(repo)), "--against", "main")
    assert "### prod" in markdown and "| lead-nurture | 1.4.0 | 2.0.0 | breaking |" in markdown


# ------------------------------------------------------------------ history across changes


def remove(repo: pygit2.Repository, path: str) -> None:
    """`git rm`: from the work tree and the index."""
    (workdir(repo) / path).unlink()
    repo.index.remove(path)
    repo.index.write()


def test_a_removed_and_re_added_version_keeps_its_content(repo: pygit2.Repository) -> None:
    original = (workdir(repo) / LEAD).read_text()
    remove(repo, LEAD)
    commit_all(repo, "Remove lead-nurture")
    (workdir(repo) / LEAD).write_text(original.replace("duration: 48h", "duration: 72h"))
    code, output = run("validate", str(workdir(repo)), "--against", "main")
    assert code == 1
    assert f"{LEAD}:8:12: error[version-mutated]: lead-nurture 1.4.0 already exists" in output
    (workdir(repo) / LEAD).write_text(original.replace("1.4.0", "1.3.0"))
    code, output = run("validate", str(workdir(repo)), "--against", "main")
    assert code == 1 and "error[version-decreased]" in output
    (workdir(repo) / LEAD).write_text(original)  # the same content: the same version
    code, output = run("validate", str(workdir(repo)), "--against", "main")
    assert code == 0, output


def test_a_re_added_workflow_continues_its_history(repo: pygit2.Repository) -> None:
    original = (workdir(repo) / LEAD).read_text()
    edit(repo, LEAD, bump("1.5.0", ("duration: 48h", "duration: 72h")))
    commit_all(repo, "1.5.0")
    newest = (workdir(repo) / LEAD).read_text()
    remove(repo, LEAD)
    commit_all(repo, "Remove lead-nurture")
    (workdir(repo) / LEAD).write_text(original)  # 1.4.0 as it was: still below 1.5.0
    code, output = run("validate", str(workdir(repo)), "--against", "main")
    assert code == 1
    assert "error[version-decreased]: spec.version goes back from 1.5.0 (the newest" in output
    (workdir(repo) / LEAD).write_text(newest)  # restored as it was
    code, output = run("validate", str(workdir(repo)), "--against", "main")
    assert code == 0, output


def test_against_compares_with_the_merge_base(repo: pygit2.Repository) -> None:
    fork = repo.head.target
    edit(repo, LEAD, bump("1.4.1", ("duration: 48h", "duration: 72h")))
    commit_all(repo, "lead-nurture 1.4.1 on main")
    repo.checkout(repo.branches.local.create("pr", repo[fork]))
    onboarding = "workflows/onboarding.yaml"
    edit(repo, onboarding, lambda t: t.replace("version: 2.1.3", "version: 2.1.4"))
    edit(repo, onboarding, lambda t: t.replace("timeout: 30s", "timeout: 45s"))
    commit_all(repo, "onboarding 2.1.4 on the branch")
    code, output = run("validate", str(workdir(repo)), "--against", "main")
    assert code == 0, output  # lead-nurture is behind main, not changed by the branch
    code, output = run("plan", str(workdir(repo)), "--against", "main", "--format", "text")
    assert code == 0 and output.startswith("Base: main (merge base ")
    assert str(fork)[:12] in output.splitlines()[0]


def test_against_a_ref_without_common_history_is_a_usage_error(repo: pygit2.Repository) -> None:
    tree = repo.head.peel(pygit2.Commit).tree.id
    repo.create_commit("refs/heads/other", AUTHOR, AUTHOR, "Unrelated", tree, [])
    code, output = run("validate", str(workdir(repo)), "--against", "other")
    assert code == 2 and "no common history (no merge base)" in output


def test_a_moved_workflow_keeps_its_versions(repo: pygit2.Repository) -> None:
    edit(repo, LEAD, bump("1.5.0", ("duration: 48h", "duration: 72h")))
    commit_all(repo, "1.5.0")
    moved = "workflows/growth/lead-nurture.yaml"
    (workdir(repo) / "workflows" / "growth").mkdir()
    (workdir(repo) / LEAD).rename(workdir(repo) / moved)
    repo.index.remove(LEAD)
    commit_all(repo, "Move lead-nurture")
    code, output = run("versions", "lead-nurture", "--repo", str(workdir(repo)), "--format", "json")
    assert [v["version"] for v in json.loads(output)["versions"]] == ["1.4.0", "1.5.0"]
    # staging and prod pin 1.4.0, which only the old path held
    code, output = run("validate", str(workdir(repo)))
    assert code == 0, output
    # a migration from 1.4.0 (at the old path) is checked against it, not skipped
    edit(repo, moved, lambda t: t.replace("map: {wait-1d: wait-2d}", "map: {wait-3d: wait-2d}"))
    edit(repo, moved, lambda t: t.replace('from: ">=1.0.0 <1.4.0"', 'from: ">=1.4.0 <1.5.0"'))
    code, output = run("validate", str(workdir(repo)))
    assert code == 1
    assert "error[unknown-step]: maps step 'wait-3d', which no version matching" in output


def test_only_pins_that_moved_are_looked_up(repo: pygit2.Repository) -> None:
    staging = "environments/staging.yaml"
    edit(repo, staging, lambda t: t.replace("onboarding: 2.1.3", "onboarding: 2.0.9"))
    commit_all(repo, "A pin to a version history lacks (merged before the check)")
    edit(repo, staging, lambda t: t.replace("inflight: pin", "inflight: cancel"))
    code, output = run("validate", str(workdir(repo)), "--against", "main")
    assert code == 0, output  # onboarding's pin did not change
    edit(repo, staging, lambda t: t.replace("lead-nurture: 1.4.0", "lead-nurture: 1.3.9"))
    code, output = run("validate", str(workdir(repo)), "--against", "main")
    assert code == 1
    assert "error[unknown-version]: pins lead-nurture 1.3.9" in output
    assert "onboarding 2.0.9" not in output


def test_plan_defaults_to_the_pull_request_base_or_head(
    repo: pygit2.Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(workdir(repo))
    monkeypatch.delenv("GITHUB_BASE_REF", raising=False)
    code, output = run("plan", "--format", "text")
    assert code == 0 and output.startswith("Base: HEAD (")
    assert "uncommitted changes" in output.splitlines()[0]
    repo.references.create("refs/remotes/origin/main", repo.head.target)
    monkeypatch.setenv("GITHUB_BASE_REF", "main")
    code, output = run("plan", "--format", "json")
    assert code == 0
    assert json.loads(output)["base"]["ref"] == "origin/main"
    monkeypatch.delenv("GITHUB_BASE_REF")
    repo.remotes.create("origin", "https://git.example/flows.git")
    repo.branches.local["main"].upstream = repo.branches.remote["origin/main"]
    code, output = run("plan")
    assert code == 0
    assert "Base: origin/main (" in output and "the upstream of the current branch" in output


def test_a_repository_with_no_commit_says_so(tmp_path: Path) -> None:
    """`flowpin plan` before the first commit said `unknown git ref 'HEAD'` (issue 14)."""
    from controller.git.history import GitError, resolve_commit

    repo = pygit2.init_repository(str(tmp_path / "empty"), initial_head="main")
    with pytest.raises(GitError, match="has no commit yet: commit your manifests first"):
        resolve_commit(repo, "HEAD")
