"""The Dockerfile cannot be built here (no container engine); parse it with BuildKit's own
parser and check the properties the install manifests rely on."""

from __future__ import annotations

from pathlib import Path

import dockerfile

DOCKERFILE = Path(__file__).resolve().parents[2] / "Dockerfile"


def commands() -> list[dockerfile.Command]:
    return list(dockerfile.parse_file(str(DOCKERFILE)))


def final_stage() -> list[dockerfile.Command]:
    parsed = commands()
    start = max(i for i, c in enumerate(parsed) if c.cmd == "FROM")
    return parsed[start:]


def test_multi_stage_from_a_slim_python() -> None:
    froms = [c for c in commands() if c.cmd == "FROM"]
    assert len(froms) == 2
    args = dict(c.value[0].split("=", 1) for c in commands() if c.cmd == "ARG")
    assert args["PYTHON_IMAGE"].startswith("python:3.11-slim")


def test_runs_the_operator_as_non_root() -> None:
    stage = final_stage()
    users = [c.value[0] for c in stage if c.cmd == "USER"]
    assert users and not users[-1].startswith(("0", "root"))
    entrypoint = next(c for c in stage if c.cmd == "ENTRYPOINT")
    cmd = next(c for c in stage if c.cmd == "CMD")
    assert entrypoint.json and entrypoint.value == ("flowpin",)
    assert cmd.value[0] == "operator"


def test_no_remote_add_and_no_cache_left_behind() -> None:
    for command in commands():
        assert command.cmd != "ADD", f"line {command.start_line}: use COPY"
        if command.cmd == "RUN" and "pip " in command.value[0]:
            assert "--no-cache-dir" in command.value[0], f"line {command.start_line}"


def test_the_cache_directory_matches_the_deployment() -> None:
    manifest = (DOCKERFILE.parent / "manifests" / "deployment.yaml").read_text()
    assert "mountPath: /var/cache/flowpin" in manifest
    assert any(c.cmd == "ENV" and "/var/cache/flowpin" in " ".join(c.value) for c in final_stage())
