"""`make demo` leaves nothing behind: Ctrl-C or SIGTERM in the middle of it stops it within
seconds with every process it started gone and its work directories removed, and a SIGKILL
of the demo takes every child down with it (the next start removes the directories).

Each test runs the real demo only until the step it needs, not the whole story."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from controller.testing import demo
from controller.testing.controlplane import (
    REPO_ROOT,
    WORKDIR_PREFIX,
    die_with_parent,
    sweep_stale_dirs,
)

STARTUP_TIMEOUT = 240  # the control plane, the CRDs and the operator, on a shared machine
FIRST_STORY_LINE = "==> prod soaks 1h after staging"


def _stat(pid: int) -> tuple[int, str, str] | None:
    """(ppid, state, start time) of a process, None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return int(fields[1]), fields[0], fields[19]


def descendants(root: int) -> dict[int, str]:
    """Every live process below `root`, as {pid: start time} (the pair names it for good)."""
    children: dict[int, list[int]] = {}
    starts: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            children.setdefault(stat[0], []).append(int(entry.name))
            starts[int(entry.name)] = stat[2]
    found: dict[int, str] = {}
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found[pid] = starts[pid]
        todo.extend(children.get(pid, []))
    return found


def still_running(processes: dict[int, str]) -> list[str]:
    """Those of `processes` that still run (a zombie has exited), with their command lines."""
    alive = []
    for pid, start in processes.items():
        stat = _stat(pid)
        if stat is not None and stat[2] == start and stat[1] not in ("Z", "X"):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            alive.append(f"{pid} {cmdline.decode(errors='replace')[:100]}")
    return alive


def command_lines(processes: dict[int, str]) -> str:
    lines = []
    for pid in processes:
        try:
            lines.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue
    return "\n".join(lines)


def wait_until_gone(processes: dict[int, str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while alive := still_running(processes):
        if time.monotonic() > deadline:
            raise AssertionError(f"still running after {timeout:.0f}s: {alive}")
        time.sleep(0.1)


@dataclass
class Demo:
    """`python -m controller.testing.demo` in a session of its own, as a terminal runs it."""

    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    @classmethod
    def start(cls) -> Demo:
        process = subprocess.Popen(
            [sys.executable, "-m", "controller.testing.demo", "--no-wait"],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group: "Ctrl-C" goes to that group
            preexec_fn=die_with_parent(),  # this test killed: the demo (and so all) goes too
        )
        started = cls(process)
        threading.Thread(target=started._read, daemon=True).start()
        return started

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for_line(self, text: str, timeout: float = STARTUP_TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        while True:
            for line in list(self.lines):
                if text in line:
                    return line
            if self.process.poll() is not None and text not in self.output:
                raise AssertionError(f"the demo exited before {text!r}:\n{self.output[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} after {timeout}s:\n{self.output[-3000:]}")
            time.sleep(0.1)

    def work_dirs(self) -> tuple[Path, Path]:
        """The control plane's directory (keys, etcd) and the demo's (git repo, logs)."""
        kubeconfig = re.search(r"KUBECONFIG=(\S+)", self.wait_for_line("KUBECONFIG="))
        repo = re.match(r"(\S+)/workflows-repo at ", self.wait_for_line("/workflows-repo at "))
        assert kubeconfig is not None and repo is not None, self.output
        plane_dir, demo_dir = Path(kubeconfig[1]).parent, Path(repo[1])
        assert plane_dir.name.startswith(WORKDIR_PREFIX), plane_dir
        assert demo_dir.name.startswith(demo.WORKDIR_PREFIX), demo_dir
        return plane_dir, demo_dir

    def children(self) -> dict[int, str]:
        """The demo's processes: etcd, kube-apiserver, kube-controller-manager, the operator."""
        found = descendants(self.process.pid)
        started = command_lines(found)
        for name in ("etcd", "kube-apiserver", "kube-controller-manager", "operator"):
            assert f" {name} " in started, started
        return found


@pytest.fixture
def started() -> Iterator[Demo]:
    running = Demo.start()
    yield running
    if running.process.poll() is None:  # a failed test: SIGKILL takes its children down too
        running.process.kill()
    running.process.wait(timeout=30)


@pytest.mark.parametrize(
    ("sig", "to_group", "after"),
    [
        # Ctrl-C in a terminal: SIGINT to the whole foreground process group, mid-story.
        pytest.param(signal.SIGINT, True, FIRST_STORY_LINE, id="ctrl-c-during-the-story"),
        # `kill <pid>` (or a service manager) while the operator starts.
        pytest.param(signal.SIGTERM, False, "Starting the operator", id="sigterm-at-startup"),
    ],
)
def test_a_stopped_demo_stops_everything_within_seconds(
    started: Demo, sig: signal.Signals, to_group: bool, after: str
) -> None:
    plane_dir, demo_dir = started.work_dirs()
    started.wait_for_line(after)
    children = descendants(started.process.pid)
    assert children, started.output

    sent = time.monotonic()
    if to_group:
        os.killpg(started.process.pid, sig)
    else:
        started.process.send_signal(sig)
    returncode = started.process.wait(timeout=30)
    took = time.monotonic() - sent

    assert returncode == 128 + sig, started.output[-3000:]
    assert "Stopped the operator and the control plane" in started.output
    wait_until_gone(children, timeout=5)
    assert not plane_dir.exists() and not demo_dir.exists()
    assert took < 30


def test_killing_the_demo_takes_every_child_down(started: Demo) -> None:
    plane_dir, demo_dir = started.work_dirs()
    started.wait_for_line("operator leading")
    children = started.children()

    os.kill(started.process.pid, signal.SIGKILL)
    started.process.wait(timeout=10)
    wait_until_gone(children, timeout=5)  # SIGKILLed by the kernel: at once

    # Nothing could remove the directories of a killed demo; the next start does.
    assert plane_dir.exists() and demo_dir.exists()
    sweep_stale_dirs(WORKDIR_PREFIX, plane_dir.parent)
    sweep_stale_dirs(demo.WORKDIR_PREFIX, demo_dir.parent)
    assert not plane_dir.exists() and not demo_dir.exists()


def test_a_port_taken_between_choosing_and_binding_is_chosen_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A second `controller.testing start` failed once with "address already in use": the
    port was free when chosen and taken before etcd bound it (issue 14)."""
    import socket

    from controller.testing import controlplane

    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    ports = iter([taken.getsockname()[1]])
    real = controlplane.free_port
    monkeypatch.setattr(controlplane, "free_port", lambda: next(ports, None) or real())
    try:
        with controlplane.ControlPlane() as plane:
            assert plane.etcd_port != taken.getsockname()[1]  # chosen again
            env = plane.env()
            done = subprocess.run(
                [str(Path(sys.executable).parent / "kubectl"), "get", "namespaces"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0 and "default" in done.stdout, done.stderr
    finally:
        taken.close()
