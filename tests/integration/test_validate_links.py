"""`flowpin validate` never follows a symbolic link out of (or within) the repository: git
stores a link as a link, and `workflows -> /` once walked the whole file system (issue 13)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

WORKFLOW = """\
apiVersion: flowpin.dev/v1alpha1
kind: Workflow
metadata: {name: hello}
spec:
  version: 1.0.0
  steps: [{id: start, type: noop}]
"""


def validate(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controller.cli", "validate", ".", "--format", "json"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_linked_manifest_folder_is_a_finding_not_a_walk(tmp_path: Path) -> None:
    os.symlink("/", tmp_path / "workflows")
    (tmp_path / "environments").mkdir()
    os.symlink("/usr", tmp_path / "environments" / "system")
    result = validate(tmp_path)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    findings = json.loads(result.stdout)["findings"]
    assert sorted((f["file"], f["code"]) for f in findings) == [
        ("environments/system", "symlink"),
        ("workflows", "symlink"),
    ]
    assert "to /usr" in next(f["message"] for f in findings if f["file"].endswith("system"))


def test_a_linked_file_is_reported_and_the_real_files_are_still_checked(tmp_path: Path) -> None:
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "hello.yaml").write_text(WORKFLOW)
    (tmp_path / "outside.yaml").write_text(WORKFLOW.replace("hello", "other"))
    os.symlink("../outside.yaml", tmp_path / "workflows" / "other.yaml")
    result = validate(tmp_path)
    assert result.returncode == 1, result.stderr
    findings = json.loads(result.stdout)["findings"]
    assert [(f["file"], f["code"]) for f in findings] == [("workflows/other.yaml", "symlink")]
    assert "hello" not in result.stdout  # hello.yaml was read and is valid
