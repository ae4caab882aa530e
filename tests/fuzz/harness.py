"""Running one fuzz case of the CLI and checking what every case must hold, whatever the
input: no traceback, a documented exit status, nothing written outside the target.

In process, with click's CliRunner (fast; `result.exception` must be None or SystemExit),
or as a subprocess (slower; real stdout/stderr pipes, so an encoding error in printing is
seen as the user would see it). Each case runs in a fresh directory that is its cwd, with
HOME, XDG_CACHE_HOME and TMPDIR pointing into it; every file of that directory outside the
target is fingerprinted before and after, and the scratch folders must stay empty.

Used by the test_*_fuzz.py files; a longer campaign of all of them: `make fuzz` (see
conftest.py for FUZZ_EXAMPLES, FUZZ_SEED and FUZZ_SHRINK).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result
from hypothesis import control, event

from controller.cli.main import cli

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED = REPO_ROOT.parent / "shared"  # CI has shared/ beside the clone
EXAMPLES = REPO_ROOT / "examples"
N8N_SAMPLES = SHARED / "n8n-samples"
SUBPROCESS_TIMEOUT = 60.0

_counter = itertools.count()


def fingerprint(root: Path, skip: Sequence[Path] = ()) -> dict[str, str]:
    """Every entry under `root` (links not followed) → what it is; `skip` subtrees left
    out."""
    skipped = {os.fspath(p) for p in skip}
    found: dict[str, str] = {}
    for folder, directories, names in os.walk(root, followlinks=False):
        directories[:] = [d for d in directories if os.path.join(folder, d) not in skipped]
        for name in directories + names:
            path = os.path.join(folder, name)
            if path in skipped:
                continue
            info = os.lstat(path)
            relative = os.path.relpath(path, root)
            if stat.S_ISLNK(info.st_mode):
                found[relative] = "link:" + os.readlink(path)
            elif stat.S_ISREG(info.st_mode):
                with open(path, "rb") as handle:
                    digest = hashlib.sha256(handle.read()).hexdigest()
                found[relative] = f"file:{stat.S_IMODE(info.st_mode):o}:{digest}"
            elif stat.S_ISDIR(info.st_mode):
                found[relative] = f"dir:{stat.S_IMODE(info.st_mode):o}"
            else:
                found[relative] = f"other:{stat.S_IFMT(info.st_mode):o}"
    return found


def changes(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(
        f"{'added' if k not in before else 'removed' if k not in after else 'changed'}: {k!r}"
        for k in before.keys() | after.keys()
        if before.get(k) != after.get(k)
    )


@dataclass
class Case:
    """A fresh directory for one example: `root` is the cwd; `home` and `tmp` are the
    scratch folders the CLI gets as HOME, XDG_CACHE_HOME and TMPDIR."""

    root: Path
    home: Path = field(init=False)
    tmp: Path = field(init=False)

    def __post_init__(self) -> None:
        self.home = self.root / ".fuzz-home"
        self.tmp = self.root / ".fuzz-tmp"
        self.home.mkdir(parents=True)
        self.tmp.mkdir()

    def env(self) -> dict[str, str]:
        return {
            "HOME": str(self.home),
            "XDG_CACHE_HOME": str(self.home / ".cache"),
            "TMPDIR": str(self.tmp),
            "NO_COLOR": "1",
            "COLUMNS": "120",
        }


@contextmanager
def new_case(base: Path) -> Iterator[Case]:
    root = base / f"case-{next(_counter)}"
    root.mkdir()
    try:
        yield Case(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class Outcome:
    exit_code: int
    stdout: str
    stderr: str
    exception: BaseException | None = None
    exc_text: str = ""
    raw_stdout: bytes | None = None  # a subprocess's stdout as written

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def invoke(case: Case, args: Sequence[str], cwd: Path | None = None) -> Outcome:
    """`flowpin ARGS` in process, cwd = the case's directory (or `cwd`)."""
    runner = CliRunner()
    saved_cwd, saved_tmp = os.getcwd(), tempfile.tempdir
    os.chdir(cwd or case.root)
    tempfile.tempdir = str(case.tmp)
    try:
        result: Result = runner.invoke(cli, list(args), env=case.env(), catch_exceptions=True)
    finally:
        os.chdir(saved_cwd)
        tempfile.tempdir = saved_tmp
    exc_text = ""
    if result.exc_info is not None and not isinstance(result.exc_info[1], SystemExit):
        exc_text = "".join(traceback.format_exception(*result.exc_info))
    try:
        stderr = result.stderr
    except ValueError:
        stderr = ""
    return Outcome(result.exit_code, result.stdout, stderr, result.exception, exc_text)


def run_subprocess(
    case: Case, args: Sequence[str | bytes], cwd: Path | None = None, strict_io: bool = False
) -> Outcome:
    """`flowpin ARGS` as a real process, its output through pipes; a hang past
    SUBPROCESS_TIMEOUT is a failure. The locale is C.UTF-8 (GitHub's runners: Python
    writes what is not UTF-8 as it came, surrogateescape), or with `strict_io` UTF-8 that
    refuses it (`PYTHONIOENCODING=utf-8`, as under en_US.UTF-8)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYTHONIOENCODING", "PYTHONUTF8", "COLUMNS", "FORCE_COLOR")
    }
    env.update(case.env())
    env["LC_ALL"] = env["LANG"] = "C.UTF-8"
    if strict_io:
        env["PYTHONIOENCODING"] = "utf-8"
    command: list[str | bytes] = [sys.executable, "-m", "controller.cli", *args]
    try:
        done = subprocess.run(
            command,
            cwd=cwd or case.root,
            env=env,
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=SUBPROCESS_TIMEOUT,
        )
    except subprocess.TimeoutExpired as error:
        raise AssertionError(
            f"flowpin {_show(args)} hung for {SUBPROCESS_TIMEOUT:.0f}s; "
            f"output so far: {error.stdout!r} {error.stderr!r}"
        ) from None
    return Outcome(
        done.returncode,
        done.stdout.decode("utf-8", "backslashreplace"),
        done.stderr.decode("utf-8", "backslashreplace"),
        raw_stdout=done.stdout,
    )


def _show(args: Sequence[str | bytes]) -> str:
    return " ".join(repr(a) if isinstance(a, bytes) else a for a in args)


def check_outcome(
    outcome: Outcome, args: Sequence[str | bytes], codes: Sequence[int], what: str = ""
) -> None:
    """No traceback, an exit status among `codes`."""
    label = f"flowpin {_show(args)}" + (f" ({what})" if what else "")
    if outcome.exc_text:
        raise AssertionError(f"{label} raised:\n{outcome.exc_text}\noutput:\n{outcome.output}")
    assert "Traceback (most recent call last)" not in outcome.output, (
        f"{label} printed a traceback:\n{outcome.output[-4000:]}"
    )
    assert outcome.exit_code in codes, (
        f"{label}: exit {outcome.exit_code}, documented {list(codes)}\n{outcome.output[-4000:]}"
    )


def check_json_output(outcome: Outcome, args: Sequence[str | bytes], what: str = "") -> Any:
    """`--format json|sarif` prints one strict JSON document on stdout (exit 0 or 1), in
    UTF-8 (RFC 8259)."""

    def refuse(token: str) -> Any:
        raise ValueError(f"{token} is not JSON")

    try:
        if outcome.raw_stdout is not None:
            outcome.raw_stdout.decode("utf-8")
        return json.loads(outcome.stdout, parse_constant=refuse)
    except ValueError as error:
        raise AssertionError(
            f"flowpin {_show(args)} ({what}): stdout is not one JSON document ({error}):\n"
            f"{outcome.stdout[:2000]!r}"
        ) from None


def check_scratch_empty(case: Case, args: Sequence[str | bytes]) -> None:
    """HOME, the cache and TMPDIR hold nothing after the command (no temp file left over,
    nothing written to the user's home)."""
    left = {
        os.path.relpath(os.path.join(folder, name), case.root)
        for scratch in (case.home, case.tmp)
        for folder, directories, names in os.walk(scratch)
        for name in directories + names
    }
    assert not left, f"flowpin {_show(args)} left files in HOME/TMPDIR: {sorted(left)[:20]}"


def note_event(text: str) -> None:
    """A hypothesis event (`--hypothesis-show-statistics` counts them), also outside a
    test."""
    if control.currently_in_test_context():
        event(text)
