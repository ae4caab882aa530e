"""The Dockerfile cannot be built here (no container engine); parse it with BuildKit's own
parser and check the properties the install manifests rely on."""

from __future__ import annotations

from pathlib import Path

import dockerfile
import yaml

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


def test_the_wheels_are_mounted_not_copied_into_the_final_stage() -> None:
    """A COPY of the wheels followed by `rm` still ships them in the COPY's layer; a bind
    mount from the build stage keeps them out of every layer."""
    stage = final_stage()
    for command in stage:
        if command.cmd == "COPY":
            assert not any(flag.startswith("--from") for flag in command.flags), command
            assert "/wheels" not in command.value, command
    installs = [c for c in stage if c.cmd == "RUN" and "pip install" in c.value[0]]
    assert len(installs) == 1
    mounts = [flag for flag in installs[0].flags if flag.startswith("--mount=")]
    assert mounts, "the wheels must come from a RUN --mount"
    options = dict(item.split("=", 1) for item in mounts[0].removeprefix("--mount=").split(","))
    assert options["type"] == "bind" and options["from"] == "build"
    assert options["target"] == "/wheels"
    assert "--find-links=/wheels" in installs[0].value[0]
    assert "--no-index" in installs[0].value[0]
    build_stage_names = next(c.value for c in commands() if c.cmd == "FROM")
    assert [v.lower() for v in build_stage_names][-2:] == ["as", "build"]
    syntax = DOCKERFILE.read_text().splitlines()[0]
    assert syntax.startswith("# syntax=docker/dockerfile:1")  # RUN --mount needs BuildKit


def test_the_deployment_runs_the_image_command_with_json_logs() -> None:
    cmd = next(c for c in final_stage() if c.cmd == "CMD")
    assert cmd.json and cmd.value == ("operator", "--log-format=json")
    deployment = yaml.safe_load((DOCKERFILE.parent / "manifests" / "deployment.yaml").read_text())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert "command" not in container  # the image's ENTRYPOINT, `flowpin`
    assert tuple(container.get("args", cmd.value)) == cmd.value


def test_every_install_comes_from_a_lock_with_hashes() -> None:
    """An unpinned install drifts overnight (issue 13): each pip command that fetches a
    dependency names a lock in requirements/ and requires hashes; flowpin's own wheel is
    built without build isolation, so its backend comes from the lock too."""
    for command in commands():
        if command.cmd != "RUN" or "pip " not in command.value[0]:
            continue
        for part in command.value[0].split("&&"):
            words = part.split()
            if "pip" not in words:
                continue
            verb = words[words.index("pip") + 1]
            if verb == "wheel":
                assert "--no-build-isolation" in words and "--no-deps" in words, part
            elif "-r" in words:
                assert "--require-hashes" in words, part
                assert words[words.index("-r") + 1].endswith(
                    ("requirements/build.txt", "requirements/runtime.txt", "/runtime.txt")
                ), part
            else:  # flowpin's own wheel, from the build stage only
                assert verb == "install" and "--no-index" in words and "--no-deps" in words, part
