"""The pre-commit hooks and the GitHub Action run `flowpin validate --format github`, the
format that turns findings into annotations on the pull request's lines."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _hooks() -> list[dict[str, Any]]:
    hooks: list[dict[str, Any]] = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    return hooks


def _action_steps() -> list[dict[str, Any]]:
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    steps: list[dict[str, Any]] = action["runs"]["steps"]
    return steps


def _has_format_github(words: list[str]) -> bool:
    return any(words[i : i + 2] == ["--format", "github"] for i in range(len(words)))


@pytest.mark.parametrize("hook", _hooks(), ids=lambda hook: hook["id"])
def test_each_hook_runs_validate_with_github_format_as_overridable_args(
    hook: dict[str, Any],
) -> None:
    entry = shlex.split(hook["entry"])
    assert entry[:2] == ["flowpin", "validate"]
    assert not _has_format_github(entry), "put --format in args, so users can override it"
    assert _has_format_github([str(arg) for arg in hook["args"]])


def test_a_hook_without_the_args_would_fail_the_check() -> None:
    assert not _has_format_github(shlex.split("flowpin validate --against origin/main"))


def test_action_validates_with_github_format() -> None:
    (validate,) = [s for s in _action_steps() if "flowpin validate" in s.get("run", "")]
    script = validate["run"]
    assert "validate" in script
    assert "--format github" in script


def test_action_sets_up_python_before_pip_install() -> None:
    steps = _action_steps()
    setup = next(
        i for i, s in enumerate(steps) if str(s.get("uses", "")).startswith("actions/setup-python@")
    )
    install = next(i for i, s in enumerate(steps) if "pip install" in s.get("run", ""))
    assert setup < install, "ubuntu-24.04's system Python refuses pip install (PEP 668)"
    version = str(steps[setup]["with"]["python-version"])
    assert tuple(int(part) for part in version.split(".")[:2]) >= (3, 11)
