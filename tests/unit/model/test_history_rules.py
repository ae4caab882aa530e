"""The history rules of `flowpin validate --against`, each with a failing and a passing example.

The base is given as files, history as a small `PastVersions`; findings are what a user sees:
code, message and the field they point at.
"""

from __future__ import annotations

import textwrap
from collections.abc import Collection, Mapping

import pytest

from controller.model.findings import Finding
from controller.model.history_rules import BaseFile, PastVersion, check_against
from controller.model.validate import Manifest, check_repository, parse_manifest

PATH = "workflows/wf.yaml"

BASE_STEPS = """\
inputs: {type: object, properties: {email: {type: string}}}
triggers: [{id: hook, type: manual}]
steps:
  - {id: fetch, type: http, http: {url: "https://x.example/"}, next: pause}
  - {id: pause, type: wait, wait: {duration: 1h}, next: done}
  - {id: done, type: log, log: {message: done}}
"""


def text(version: str, body: str = BASE_STEPS, name: str = "wf") -> str:
    return (
        f"apiVersion: flowpin.dev/v1alpha1\nkind: Workflow\nmetadata: {{name: {name}}}\n"
        f"spec:\n  version: {version}\n" + textwrap.indent(body, "  ")
    )


def manifest(content: str, path: str = PATH) -> Manifest:
    parsed, findings = parse_manifest(content, path)
    assert parsed is not None, findings
    return parsed


def against(
    head: str, base: str | None, history: PastHistory | None = None, added: bool = False
) -> list[Finding]:
    base_files = {PATH: BaseFile(PATH, base.encode())} if base is not None else {}
    return check_against([manifest(head)], base_files, history, {PATH} if added else ())


def codes(findings: list[Finding]) -> list[str]:
    return [f.code for f in findings]


class PastHistory:
    """Versions in history: version → body (the content as it first appeared)."""

    def __init__(self, versions: Mapping[str, str]) -> None:
        self.specs = {v: manifest(text(v, body)).spec for v, body in versions.items()}

    def version_names(self, workflow: str) -> Collection[str]:
        return list(self.specs) if workflow == "wf" else []

    def past_version(self, workflow: str, version: str) -> PastVersion | None:
        spec = self.specs.get(version) if workflow == "wf" else None
        return PastVersion(spec, "c0ffee" * 6 + "c0ff") if spec is not None else None


def change(old: str, new: str, body: str = BASE_STEPS) -> str:
    assert old in body
    return body.replace(old, new)


LONGER_WAIT = change("duration: 1h", "duration: 2h")  # fix
NEW_STEP = change(
    "- {id: done, type: log, log: {message: done}}",
    "- {id: done, type: log, log: {message: done}, next: more}\n"
    "  - {id: more, type: log, log: {message: more}}",
)  # feature
REMOVED_STEP = change(
    "next: pause}\n  - {id: pause, type: wait, wait: {duration: 1h}, next: done}", "next: done}"
)  # breaking: a removed step
REQUIRED_INPUT = change("properties:", "required: [email], properties:")  # breaking: inputs
NO_TRIGGER = change("triggers: [{id: hook, type: manual}]", "triggers: []")  # breaking


# ------------------------------------------------------------------ not bumped


def test_a_changed_workflow_must_bump_its_version() -> None:
    (finding,) = against(text("1.2.0", LONGER_WAIT), text("1.2.0"))
    assert finding.code == "version-not-bumped"
    assert "Bump it to 1.2.1" in finding.message and finding.path == "spec.version"


def test_formatting_and_comments_alone_need_no_bump() -> None:
    assert against(text("1.2.0").replace("kind:", "# a comment\nkind:"), text("1.2.0")) == []


# ------------------------------------------------------------------ decreased


def test_a_version_must_not_go_backwards() -> None:
    (finding,) = against(text("1.1.9", LONGER_WAIT), text("1.2.0"))
    assert finding.code == "version-decreased"
    assert "goes back from 1.2.0 to 1.1.9" in finding.message


def test_a_higher_version_passes() -> None:
    assert against(text("1.2.1", LONGER_WAIT), text("1.2.0")) == []


# ------------------------------------------------------------------ bump at least the class


@pytest.mark.parametrize(
    ("body", "too_small", "enough", "needed"),
    [
        (LONGER_WAIT, None, "1.2.1", "fix"),
        (NEW_STEP, "1.2.1", "1.3.0", "feature changes need a minor bump (1.2.0 → 1.3.0)"),
        (REMOVED_STEP, "1.3.0", "2.0.0", "breaking changes need a major bump (1.2.0 → 2.0.0)"),
        (REQUIRED_INPUT, "1.3.0", "2.0.0", "breaking changes need a major bump"),
    ],
)
def test_the_bump_is_at_least_the_change_class(
    body: str, too_small: str | None, enough: str, needed: str
) -> None:
    if too_small is not None:
        (finding,) = against(text(too_small, body), text("1.2.0"))
        assert finding.code == "insufficient-bump" and needed in finding.message
    assert against(text(enough, body), text("1.2.0")) == []


def test_before_1_0_everything_moves_down_one_place() -> None:
    (finding,) = against(text("0.2.1", REMOVED_STEP), text("0.2.0"))
    assert finding.code == "insufficient-bump"
    assert "breaking changes need a minor bump (0.2.0 → 0.3.0)" in finding.message
    assert against(text("0.3.0", REMOVED_STEP), text("0.2.0")) == []  # breaking → minor
    assert against(text("0.2.1", NEW_STEP), text("0.2.0")) == []  # feature → patch


# ------------------------------------------------------------------ migrations


RENAMED = change("next: pause}", "next: hold}", change("id: pause", "id: hold"))  # breaking
MAPPED = RENAMED + 'migrations: [{from: ">=1.0.0 <1.3.0", map: {pause: hold}}]\n'
WRONG_TYPE = RENAMED + 'migrations: [{from: ">=1.0.0 <1.3.0", map: {pause: done}}]\n'
OTHER_RANGE = RENAMED + 'migrations: [{from: "<1.0.0", map: {pause: hold}}]\n'


def test_a_migration_mapping_the_renamed_step_makes_it_a_feature() -> None:
    (finding,) = against(text("1.3.0", RENAMED), text("1.2.0"))
    assert finding.code == "insufficient-bump"
    assert against(text("1.3.0", MAPPED), text("1.2.0")) == []


@pytest.mark.parametrize("body", [WRONG_TYPE, OTHER_RANGE], ids=["other-type", "other-range"])
def test_a_migration_that_does_not_cover_the_base_keeps_it_breaking(body: str) -> None:
    (finding,) = against(text("1.3.0", body), text("1.2.0"))
    assert finding.code == "insufficient-bump"
    assert "breaking changes need a major bump" in finding.message


def test_the_hint_offers_migrations_only_for_removed_or_retyped_steps() -> None:
    (removed,) = against(text("1.3.0", REMOVED_STEP), text("1.2.0"))
    assert "or map the removed, retyped or renamed steps (pause) in spec.migrations" in (
        removed.message
    )
    for body in (REQUIRED_INPUT, NO_TRIGGER, REQUIRED_INPUT.replace(REMOVED_STEP, "")):
        (finding,) = against(text("1.3.0", body), text("1.2.0"))
        assert finding.code == "insufficient-bump"
        assert "migrations" not in finding.message


def test_no_migration_hint_when_a_step_removal_comes_with_a_new_required_input() -> None:
    both = change("properties:", "required: [email], properties:", REMOVED_STEP)
    (finding,) = against(text("1.3.0", both), text("1.2.0"))
    assert "migrations" not in finding.message


# ------------------------------------------------------------------ existing versions


def test_an_existing_version_keeps_its_content() -> None:
    history = PastHistory({"1.0.0": BASE_STEPS, "1.1.0": BASE_STEPS})
    # the file was removed at 1.1.0 and is re-added with other content:
    (finding,) = against(text("1.1.0", LONGER_WAIT), None, history, added=True)
    assert finding.code == "version-mutated" and finding.path == "spec.version"
    assert "wf 1.1.0 already exists in git history (commit c0ffeec0ffee)" in finding.message
    assert "Bump spec.version to 1.1.1 or above" in finding.message
    (older,) = against(text("1.0.0", LONGER_WAIT), None, history, added=True)
    assert older.code == "version-mutated"
    assert against(text("1.1.0"), None, history, added=True) == []  # restored as it was
    assert against(text("1.1.1", LONGER_WAIT), None, history, added=True) == []


def test_a_re_added_workflow_does_not_go_below_its_newest_version() -> None:
    history = PastHistory({"1.0.0": BASE_STEPS, "1.4.0": LONGER_WAIT})
    for version, body in (("1.2.0", LONGER_WAIT), ("1.0.0", BASE_STEPS)):  # new, or as it was
        (finding,) = against(text(version, body), None, history, added=True)
        assert finding.code == "version-decreased"
        assert f"goes back from 1.4.0 (the newest in git history) to {version}" in (finding.message)
    assert against(text("1.5.0", LONGER_WAIT), None, history, added=True) == []


def test_an_unchanged_file_is_not_looked_up() -> None:
    history = PastHistory({"1.4.0": LONGER_WAIT})
    assert against(text("1.0.0"), None, history, added=False) == []


def test_a_new_workflow_passes() -> None:
    assert against(text("0.1.0"), None, PastHistory({}), added=True) == []


# ------------------------------------------------------------------ pins


class Pins:
    """History for pin checks: the versions that exist, and which were asked about."""

    def __init__(self, versions: Collection[str]) -> None:
        self.known = set(versions)
        self.asked: list[str] = []

    def versions(self, workflow: str) -> Mapping[str, Mapping[str, object]]:
        return {}

    def has_version(self, workflow: str, version: str) -> bool:
        self.asked.append(version)
        return version in self.known


def environment(pins: str) -> Manifest:
    content = (
        "apiVersion: flowpin.dev/v1alpha1\nkind: Environment\nmetadata: {name: prod}\n"
        f"spec:\n  pins: {{{pins}}}\n"
    )
    return manifest(content, "environments/prod.yaml")


def test_a_pin_moves_only_to_a_version_in_history() -> None:
    history = Pins({"1.0.0", "1.1.0"})
    workflows = [manifest(text("1.2.0"))]
    (finding,) = check_repository([*workflows, environment("wf: 1.0.5")], history)
    assert finding.code == "unknown-version" and finding.path == "spec.pins.wf"
    assert check_repository([*workflows, environment("wf: 1.1.0")], history) == []
    assert check_repository([*workflows, environment("wf: 1.2.0")], history) == []  # the tree's
    assert check_repository([*workflows, environment("wf: latest")], history) == []


def test_only_a_pin_whose_value_changed_is_looked_up() -> None:
    history = Pins({"1.0.0", "1.1.0"})
    workflows = [manifest(text("1.2.0"))]
    prod = environment("wf: 1.1.0")
    changed = {prod.path}
    assert (
        check_repository([*workflows, prod], history, changed, set(), {"prod": {"wf": "1.1.0"}})
        == []
    )
    assert history.asked == []
    assert (
        check_repository([*workflows, prod], history, changed, set(), {"prod": {"wf": "1.0.0"}})
        == []
    )
    assert history.asked == ["1.1.0"]
