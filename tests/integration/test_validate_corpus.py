"""`flowpin validate` over a corpus of deliberately broken manifests, through the real CLI.

The corpus is `tests/corpus/broken/` (a workflow repository: `workflows/` and
`environments/`), one problem family per file, each file named after its problem and otherwise
valid, so that it yields exactly the finding(s) listed in `EXPECTED` below. Each test runs
`python -m controller.cli validate ...` in a subprocess with the repository root as the working
directory, exactly as CI would.

Goldens
    `tests/corpus/expected/{text.txt,json.json,github.txt,sarif.json}` are the standard output
    of `flowpin validate tests/corpus/broken --format X`. To regenerate them after an intended
    change of the output, run

        FLOWPIN_UPDATE_GOLDEN=1 .venv/bin/pytest tests/integration/test_validate_corpus.py \\
            -q -p no:cacheprovider

    and READ the diff before committing it: every line must be right (file, line, column,
    code, message, field path). A golden that enshrines a bug is worse than none. `EXPECTED`
    is written by hand from the manifests and never from the goldens, so it keeps saying what
    each file must produce whatever a regeneration wrote.

Generated inputs
    The non-UTF-8 file, the 2 MiB file and the 10,000-deep document are written to `tmp_path`
    by the tests (never committed), so the committed corpus and its goldens stay plain UTF-8
    text of a sensible size.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pygit2
import pytest

ROOT = Path(__file__).resolve().parents[2]
CORPUS = "tests/corpus/broken"
PREFIX = CORPUS + "/"
GOLDEN_DIR = ROOT / "tests" / "corpus" / "expected"
GOLDENS = {"text": "text.txt", "json": "json.json", "github": "github.txt", "sarif": "sarif.json"}
UPDATE = os.environ.get("FLOWPIN_UPDATE_GOLDEN") == "1"

# (file under the corpus, line, code), written by hand from the manifests: one row per
# finding that `flowpin validate tests/corpus/broken` must report, and nothing else.
EXPECTED: list[tuple[str, int, str]] = [
    ("environments/canary-weights-not-increasing.yaml", 11, "canary-weights"),
    ("environments/canary-without-steps.yaml", 7, "canary-without-steps"),
    ("environments/pins-unknown-workflow.yaml", 9, "unknown-workflow"),
    # One loop, one finding: on the first member in path order.
    ("environments/promotion-cycle-a.yaml", 8, "promotion-cycle"),
    ("environments/promotion-cycle-b.yaml", 8, "promotion-cycle"),
    ("environments/promotion-unknown-environment.yaml", 8, "unknown-environment"),
    ("workflows/bad-cron.yaml", 11, "invalid-schedule"),
    ("workflows/bad-duration.yaml", 12, "schema"),
    ("workflows/bad-semver-range.yaml", 12, "invalid-range"),
    ("workflows/bad-timezone.yaml", 12, "invalid-timezone"),
    ("workflows/cel-dashed-step-reference.yaml", 15, "cel-step-reference"),
    ("workflows/cel-syntax-error.yaml", 12, "cel-syntax"),
    ("workflows/cel-unknown-step.yaml", 15, "unknown-step"),
    ("workflows/duplicate-key.yaml", 8, "duplicate-key"),
    ("workflows/duplicate-step-ids.yaml", 15, "duplicate-step-id"),
    ("workflows/duplicate-trigger-ids.yaml", 11, "duplicate-trigger-id"),
    ("workflows/empty.yaml", 1, "empty-document"),
    ("workflows/http-step-without-http.yaml", 9, "schema"),
    ("workflows/invalid-enum-method.yaml", 12, "schema"),
    ("workflows/invalid-inputs-schema.yaml", 12, "invalid-inputs-schema"),
    ("workflows/loop-without-wait.yaml", 9, "cycle-without-wait"),
    ("workflows/malformed-bad-indentation.yaml", 10, "yaml-syntax"),
    ("workflows/malformed-tab.yaml", 5, "yaml-syntax"),
    ("workflows/malformed-unclosed-flow.yaml", 5, "yaml-syntax"),
    ("workflows/migration-unknown-step.yaml", 15, "unknown-step"),
    ("workflows/missing-apiversion.yaml", 2, "schema"),
    ("workflows/next-unknown-step.yaml", 15, "unknown-step"),
    ("workflows/two-documents.yaml", 11, "multiple-documents"),
    ("workflows/unknown-field-typo.yaml", 11, "schema"),
    ("workflows/unreachable-step.yaml", 12, "unreachable-step"),
    ("workflows/wait-duration-and-until.yaml", 12, "schema"),
    ("workflows/webhook-without-secretref.yaml", 9, "schema"),
    ("workflows/wrong-kind.yaml", 3, "unknown-kind"),
    ("workflows/zero-duration.yaml", 12, "invalid-duration"),
]
# Corpus files that are context for another file's finding and have none of their own.
CONTEXT_FILES: set[str] = set()  # files that only give context (none: each one is reported)
# Files of the corpus that pass the schema and so count as checked manifests.
SCHEMA_VALID_FILES = 20

# --------------------------------------------------------------------------- helpers


def flowpin(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run the real CLI from the repository root."""
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "controller.cli", *map(str, args)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        encoding="utf-8",
        timeout=120,
        check=False,
    )


def validate(*args: str | Path) -> subprocess.CompletedProcess[str]:
    result = flowpin("validate", *args)
    assert "Traceback" not in result.stderr, result.stderr
    assert "Traceback" not in result.stdout, result.stdout
    return result


def findings_of(*args: str | Path) -> list[dict[str, Any]]:
    result = validate(*args, "--format", "json")
    assert result.returncode in (0, 1), result.stderr
    found: list[dict[str, Any]] = json.loads(result.stdout)["findings"]
    return found


def corpus_file(path: str) -> str:
    """The file's path under the corpus, whichever base the CLI reports it relative to."""
    return path.removeprefix(PREFIX)


def rows(findings: list[dict[str, Any]]) -> list[tuple[str, int, str]]:
    return sorted((corpus_file(f["file"]), f["line"], f["code"]) for f in findings)


_TEXT_LINE = re.compile(
    r"^(?P<file>[^:\s]+):(?P<line>\d+):(?P<col>\d+): (?P<sev>\w+)\[(?P<code>[^\]]+)\]"
)
_GITHUB_LINE = re.compile(
    r"^::(?P<sev>error|warning) file=(?P<file>[^,]+),line=(?P<line>\d+),col=(?P<col>\d+),"
    r"title=flowpin (?P<code>[^:]+)::"
)


@pytest.fixture(scope="module")
def corpus_output() -> dict[str, subprocess.CompletedProcess[str]]:
    """`flowpin validate tests/corpus/broken --format X`, once per format."""
    return {fmt: validate(CORPUS, "--format", fmt) for fmt in GOLDENS}


@pytest.fixture(scope="module")
def corpus_findings(corpus_output: dict[str, subprocess.CompletedProcess[str]]) -> list[Any]:
    findings: list[dict[str, Any]] = json.loads(corpus_output["json"].stdout)["findings"]
    return findings


# --------------------------------------------------------------------------- the corpus


def test_every_corpus_file_has_expected_findings() -> None:
    on_disk = {
        p.relative_to(ROOT / CORPUS).as_posix() for p in (ROOT / CORPUS).rglob("*") if p.is_file()
    }
    assert on_disk == {file for file, _, _ in EXPECTED} | CONTEXT_FILES


def test_corpus_findings_match_the_hand_written_table(corpus_findings: list[Any]) -> None:
    assert rows(corpus_findings) == sorted(EXPECTED)
    assert all(f["severity"] == "error" for f in corpus_findings)


@pytest.mark.parametrize("fmt", list(GOLDENS))
def test_golden(fmt: str, corpus_output: dict[str, subprocess.CompletedProcess[str]]) -> None:
    result = corpus_output[fmt]
    assert result.returncode == 1, result.stderr
    golden = GOLDEN_DIR / GOLDENS[fmt]
    actual = result.stdout
    if UPDATE:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_bytes(actual.encode("utf-8"))
    assert actual == golden.read_bytes().decode("utf-8")


def test_text_summary_on_stderr(corpus_output: dict[str, subprocess.CompletedProcess[str]]) -> None:
    summary = corpus_output["text"].stderr.strip()
    errors = len(EXPECTED)
    assert summary == f"{SCHEMA_VALID_FILES} manifests checked: {errors} errors, 0 warnings"
    for fmt in ("json", "github", "sarif"):  # machine formats keep stderr empty
        assert corpus_output[fmt].stderr == ""


def test_github_lines_are_workflow_commands(
    corpus_output: dict[str, subprocess.CompletedProcess[str]], corpus_findings: list[Any]
) -> None:
    command = re.compile(
        r"^::(error|warning) file=[^,]+,line=\d+,col=\d+,title=flowpin [a-z0-9-]+::.+$"
    )
    lines = corpus_output["github"].stdout.splitlines()
    assert len(lines) == len(corpus_findings)
    for line in lines:
        assert command.match(line), line


def test_sarif_results_are_the_json_findings(
    corpus_output: dict[str, subprocess.CompletedProcess[str]], corpus_findings: list[Any]
) -> None:
    log = json.loads(corpus_output["sarif"].stdout)
    assert log["version"] == "2.1.0"
    (run,) = log["runs"]
    results = run["results"]
    assert [r["ruleId"] for r in results] == [f["code"] for f in corpus_findings]
    assert [r["level"] for r in results] == [f["severity"] for f in corpus_findings]
    regions = [r["locations"][0]["physicalLocation"]["region"] for r in results]
    assert [(g["startLine"], g["startColumn"]) for g in regions] == [
        (f["line"], f["column"]) for f in corpus_findings
    ]
    rules = [rule["id"] for rule in run["tool"]["driver"]["rules"]]
    assert rules == sorted({f["code"] for f in corpus_findings})
    assert all(rules[r["ruleIndex"]] == r["ruleId"] for r in results)


@pytest.mark.parametrize(
    "file",
    [
        "workflows/bad-cron.yaml",
        "workflows/malformed-tab.yaml",
        "workflows/next-unknown-step.yaml",
        "environments/pins-unknown-workflow.yaml",
        "environments/promotion-cycle-a.yaml",
    ],
)
def test_single_file_reports_only_that_file(file: str) -> None:
    result = validate(f"{PREFIX}{file}", "--format", "json")
    assert result.returncode == 1
    found = json.loads(result.stdout)["findings"]
    assert rows(found) == [row for row in EXPECTED if row[0] == file]


# --------------------------------------------------------------------------- exit status


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_examples_are_clean(fmt: str) -> None:
    result = validate("examples", "--format", fmt)
    assert result.returncode == 0, result.stdout + result.stderr
    if fmt == "json":
        assert json.loads(result.stdout)["findings"] == []
    else:
        assert result.stdout == ""


def test_nonexistent_path_is_a_usage_error() -> None:
    result = validate("no/such/path")
    assert result.returncode == 2
    assert "no/such/path" in result.stderr
    assert result.stdout == ""


def test_unknown_against_ref_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "lead-nurture.yaml").write_bytes(
        (ROOT / "examples" / "workflows" / "lead-nurture.yaml").read_bytes()
    )
    repo = pygit2.init_repository(str(tmp_path))
    repo.index.add_all()
    repo.index.write()
    author = pygit2.Signature("flowpin tests", "tests@flowpin.dev")
    repo.create_commit("HEAD", author, author, "init", repo.index.write_tree(), [])

    assert validate(tmp_path, "--against", "HEAD").returncode == 0
    result = validate(tmp_path, "--against", "no-such-ref")
    assert result.returncode == 2
    assert "no-such-ref" in result.stderr
    assert result.stdout == ""


# --------------------------------------------------------------------------- generated inputs

_HEAD = "apiVersion: flowpin.dev/v1alpha1\nkind: Workflow\nmetadata:\n  name: {name}\nspec:\n"


def _latin1() -> bytes:
    # "Café" saved by a Latin-1 editor: 0xe9 at line 7, column 19.
    text = _HEAD.format(name="latin1") + "  version: 1.0.0\n  description: Caf"
    tail = " au lait\n  steps:\n    - {id: start, type: noop}\n"
    return text.encode() + b"\xe9" + tail.encode()


def _huge() -> bytes:
    head = _HEAD.format(name="huge") + "  version: 1.0.0\n  steps:\n    - {id: start, type: noop}\n"
    size = 2 * 1024 * 1024
    filler = ("# padding " + "x" * 69 + "\n") * (size // 80 + 1)
    data = (head + filler[: size - len(head) - 1] + "\n").encode()
    assert len(data) == size
    return data


def _deep() -> bytes:
    # The root mapping and `spec` are levels 1 and 2; the 63rd `[` (line 7, column 11 + 62)
    # is level 65, the first beyond the limit of 64.
    depth = 10_000
    inputs = "  inputs: " + "[" * depth + "]" * depth + "\n"
    text = _HEAD.format(name="deep") + "  version: 1.0.0\n" + inputs
    return (text + "  steps: [{id: start, type: noop}]\n").encode()


@pytest.mark.parametrize(
    ("name", "build", "code", "line", "column"),
    [
        ("latin1", _latin1, "encoding", 7, 19),
        ("huge", _huge, "file-too-large", 1, 1),
        ("deep", _deep, "nesting-too-deep", 7, 73),
    ],
)
def test_generated_file_gives_one_finding(
    tmp_path: Path, name: str, build: Any, code: str, line: int, column: int
) -> None:
    path = tmp_path / "workflows" / f"{name}.yaml"
    path.parent.mkdir()
    path.write_bytes(build())
    for target in (tmp_path, path):  # the repository, and the file alone
        result = validate(target, "--format", "json")
        assert result.returncode == 1, result.stderr
        (finding,) = json.loads(result.stdout)["findings"]
        assert Path(finding["file"]).name == path.name
        assert (finding["code"], finding["line"], finding["column"]) == (code, line, column)
        assert finding["severity"] == "error"


# --------------------------------------------------------------------------- known bugs


@pytest.mark.parametrize("fmt", list(GOLDENS))
def test_reported_paths_exist_from_the_working_directory(
    fmt: str, corpus_output: dict[str, subprocess.CompletedProcess[str]]
) -> None:
    output = corpus_output[fmt].stdout
    if fmt == "text":
        files = [m["file"] for m in map(_TEXT_LINE.match, output.splitlines()) if m]
    elif fmt == "github":
        files = [m["file"] for m in map(_GITHUB_LINE.match, output.splitlines()) if m]
    elif fmt == "json":
        files = [f["file"] for f in json.loads(output)["findings"]]
    else:
        results = json.loads(output)["runs"][0]["results"]
        files = [r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in results]
    assert len(files) == len(EXPECTED)
    missing = sorted(f for f in set(files) if not (ROOT / f).is_file())
    assert missing == []


def test_unknown_field_is_located_at_its_key(corpus_findings: list[Any]) -> None:
    (typo,) = [f for f in corpus_findings if f["path"] == "spec.steps[0].nxt"]
    assert (typo["line"], typo["column"]) == (11, 7)  # `      nxt: done`


def test_unknown_field_with_a_block_value_names_its_own_line(tmp_path: Path) -> None:
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "typo.yaml").write_text(
        _HEAD.format(name="typo")
        + "  version: 1.0.0\n"
        + "  steps:\n"
        + "    - id: send\n"
        + "      type: http\n"
        + "      htp:\n"  # line 10: the misspelt key
        + "        method: POST\n"
        + "      http:\n"
        + "        url: https://mail.example/send\n"
    )
    (finding,) = findings_of(tmp_path)
    assert finding["path"] == "spec.steps[0].htp"
    assert (finding["code"], finding["line"], finding["column"]) == ("schema", 10, 7)


def test_single_file_in_a_promotion_cycle_is_reported() -> None:
    result = validate(f"{PREFIX}environments/promotion-cycle-b.yaml", "--format", "json")
    found = json.loads(result.stdout)["findings"]
    assert [(corpus_file(f["file"]), f["code"]) for f in found] == [
        ("environments/promotion-cycle-b.yaml", "promotion-cycle")
    ]
    assert result.returncode == 1


def test_invalid_inputs_type_names_the_allowed_types(corpus_findings: list[Any]) -> None:
    (finding,) = [f for f in corpus_findings if f["code"] == "invalid-inputs-schema"]
    assert finding["path"] == "spec.inputs.properties.email.type"
    assert "'string'" in finding["message"]
    assert "any of the given schemas" not in finding["message"]


def test_no_finding_is_reported_twice(corpus_findings: list[Any]) -> None:
    keys = Counter((f["file"], f["line"], f["column"], f["code"]) for f in corpus_findings)
    assert [key for key, count in keys.items() if count > 1] == []


def test_every_directory_given_is_validated() -> None:
    result = validate("examples", CORPUS, "--format", "json")
    assert result.returncode in (1, 2)  # its findings, or a usage error; never a false pass
    if result.returncode == 1:
        found = json.loads(result.stdout)["findings"]
        assert Counter(f["code"] for f in found) == Counter(code for _, _, code in EXPECTED)


def test_files_from_two_repositories_give_no_traceback() -> None:
    result = validate(f"{PREFIX}workflows/bad-cron.yaml", "examples/workflows/onboarding.yaml")
    assert result.returncode in (1, 2)  # `validate` asserts there is no traceback


def test_missing_kind_is_a_missing_field(tmp_path: Path) -> None:
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "no-kind.yaml").write_text(
        "apiVersion: flowpin.dev/v1alpha1\n"
        "metadata: {name: no-kind}\n"
        "spec: {version: 1.0.0, steps: [{id: start, type: noop}]}\n"
    )
    (finding,) = findings_of(tmp_path)
    assert finding["path"] == "kind"
    assert "missing" in finding["message"]
    assert "None" not in finding["message"]


def test_trailing_document_marker_is_not_a_second_document(tmp_path: Path) -> None:
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "trailing.yaml").write_text(
        "apiVersion: flowpin.dev/v1alpha1\n"
        "kind: Workflow\n"
        "metadata: {name: trailing}\n"
        "spec: {version: 1.0.0, steps: [{id: start, type: noop}]}\n"
        "---\n"
    )
    assert findings_of(tmp_path) == []
