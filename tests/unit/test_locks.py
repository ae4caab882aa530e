"""The locks in requirements/ (`make lock`) agree with pyproject.toml and with each other, so
an edit of pyproject.toml without `make lock` fails here rather than on a fresh clone."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;]+)")


def pins(name: str) -> dict[str, str]:
    """Package -> version of one lock; every pin carries at least one hash."""
    text = (ROOT / "requirements" / name).read_text()
    found: dict[str, str] = {}
    for block in re.split(r"\n(?=[A-Za-z])", text):
        match = PIN.match(block)
        if match:
            assert "--hash=sha256:" in block, f"{name}: {match[1]} has no hash"
            found[canonicalize_name(match[1])] = match[2]
    return found


def declared(extra: str | None) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    listed = project["dependencies"] + (project["optional-dependencies"][extra] if extra else [])
    return [Requirement(item) for item in listed]


@pytest.mark.parametrize(("lock", "extra"), [("dev.txt", "dev"), ("runtime.txt", None)])
def test_the_lock_pins_every_declared_dependency_within_its_range(
    lock: str, extra: str | None
) -> None:
    locked = pins(lock)
    for requirement in declared(extra):
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{lock} lacks {name}: run `make lock`"
        assert requirement.specifier.contains(locked[name], prereleases=True), (
            f"{lock} pins {name}=={locked[name]} outside {requirement.specifier}: run `make lock`"
        )


def test_runtime_and_build_locks_agree_with_the_dev_lock() -> None:
    dev = pins("dev.txt")
    for lock in ("runtime.txt", "build.txt"):
        for name, version in pins(lock).items():
            assert dev.get(name) == version, f"{lock}: {name}=={version}, dev.txt: {dev.get(name)}"


def test_the_build_lock_satisfies_the_build_system() -> None:
    build = pins("build.txt")
    system = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    for item in system:
        requirement = Requirement(item)
        version = build[canonicalize_name(requirement.name)]
        assert requirement.specifier.contains(version), f"build.txt: {requirement} vs {version}"
