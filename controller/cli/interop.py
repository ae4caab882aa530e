"""`flowpin export` and `flowpin import`: move workflows between repositories and tools
(flowpin YAML/JSON, bundles, n8n). Thin: read files and git, call `controller.interop`,
print. No cluster needed."""

from __future__ import annotations

import datetime
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import click
import pygit2

from controller import __version__
from controller.git.history import GitError
from controller.interop import exports, gitio
from controller.interop.conflicts import MODES, Mode
from controller.interop.formats import MAX_BUNDLE_BYTES, MAX_TEXT_BYTES
from controller.interop.imports import FileResult, Plan, load_file, plan_import, summary_json
from controller.model import report
from controller.model.validate import History
from controller.model.versions import VersionIndex, pins_of

INPUT_SUFFIXES = (".json", ".yaml", ".yml", ".tar.gz", ".tgz")
MAX_INPUT_BYTES = max(MAX_TEXT_BYTES, MAX_BUNDLE_BYTES)  # read no more; detect() says why


# --------------------------------------------------------------------------- export


@click.command(name="export")
@click.argument("workflow", required=False)
@click.option("--all", "export_all", is_flag=True, help="Every workflow in the repository.")
@click.option(
    "--version",
    "versions",
    multiple=True,
    metavar="V",
    help="Version to export (repeatable for bundles). Default: the latest; for bundles the "
    "pinned ones and the latest.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(exports.FORMATS),
    default="yaml",
    show_default=True,
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help="File to write (a directory with --all for yaml, json and n8n). Default: stdout.",
)
@click.option(
    "--include-environments", is_flag=True, help="Bundles: add environments/*.yaml at HEAD."
)
@click.option(
    "--repo",
    "repo_path",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="The workflow repository (or a directory inside it).",
)
def export_command(
    workflow: str | None,
    export_all: bool,
    versions: tuple[str, ...],
    fmt: str,
    output: Path | None,
    include_environments: bool,
    repo_path: Path,
) -> None:
    """Export WORKFLOW's versions from git history as flowpin YAML or JSON, an n8n workflow,
    or a bundle (.tar.gz with checksums) that `flowpin import` verifies."""
    if (workflow is None) == (not export_all):
        raise click.UsageError("name one WORKFLOW, or pass --all")
    if include_environments and fmt != "bundle":
        raise click.UsageError("--include-environments applies to --format bundle")
    if fmt != "bundle" and len(versions) > 1:
        raise click.UsageError(f"--format {fmt} holds one version; use --format bundle")
    if fmt == "bundle" and output is None:
        raise click.UsageError("a bundle is binary: give -o FILE.tar.gz")
    if export_all and fmt != "bundle" and output is None:
        raise click.UsageError(f"--all --format {fmt} writes one file per workflow: give -o DIR")
    try:
        source = gitio.open_source(repo_path)
        if source.head is None:
            raise GitError(f"{source.root} has no commits yet: nothing to export")
        index = gitio.history(source)
    except GitError as error:
        raise click.UsageError(str(error)) from error
    known = sorted(index.versions)
    names = known if export_all else [str(workflow)]
    if not names:
        raise click.UsageError(f"no workflows in the history of {source.root}")
    for name in names:
        if name not in index.versions:
            raise click.UsageError(
                f"no workflow {name!r} in history (workflows: {', '.join(known) or 'none'})"
            )
    environments = {name: pins_of(record.spec) for name, record in index.environments.items()}
    chosen: dict[str, list[str]] = {}
    pins: dict[str, dict[str, str]] = {}
    try:
        for name in names:
            records = index.versions[name]
            latest = gitio.newest(records)
            pins[name] = exports.pinned(environments, name, latest)
            if fmt == "bundle":
                chosen[name] = exports.select_versions(list(records), versions, pins[name], name)
            else:
                chosen[name] = exports.select_versions(
                    list(records), versions or [latest], {}, name
                )
    except exports.ExportError as error:
        raise click.UsageError(str(error)) from error
    try:
        if fmt == "bundle":
            assert output is not None
            _export_bundle(source, index, chosen, pins, include_environments, output)
        else:
            _export_files(source, index, chosen, fmt, output, export_all)
    except (GitError, exports.ExportError, OSError) as error:
        raise click.ClickException(str(error)) from error


def _export_files(
    source: gitio.Source,
    index: VersionIndex,
    chosen: dict[str, list[str]],
    fmt: str,
    output: Path | None,
    to_directory: bool,
) -> None:
    if to_directory and output is not None:
        output.mkdir(parents=True, exist_ok=True)
    for name, (version,) in chosen.items():
        record = index.versions[name][version]
        data, notes = exports.render(gitio.version_content(source, record), record.path, fmt)
        for note in notes:
            click.echo(f"note: {name} {version}: {note}", err=True)
        if output is None:
            click.echo(data.decode(), nl=False)
            continue
        target = output / f"{name}{exports.SUFFIXES[fmt]}" if to_directory else output
        _write_atomically(target, data)
        click.echo(
            f"exported {name} {version} ({record.path} at {record.commit.id[:12]}) → {target}",
            err=True,
        )


def _export_bundle(
    source: gitio.Source,
    index: VersionIndex,
    chosen: dict[str, list[str]],
    pins: dict[str, dict[str, str]],
    include_environments: bool,
    output: Path,
) -> None:
    assert source.head is not None
    contents = {
        name: {v: gitio.version_content(source, index.versions[name][v]) for v in versions}
        for name, versions in chosen.items()
    }
    head = gitio.head_files(source) if include_environments else {}
    environments = {
        name: head[record.path]
        for name, record in sorted(index.environments.items())
        if record.path in head
    }
    info = {
        name: {
            "versions": versions,
            "latest": gitio.newest(index.versions[name]),
            "pinned": pins[name],
        }
        for name, versions in chosen.items()
    }
    data = exports.build_bundle(
        contents,
        environments,
        info,
        exported_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        source_commit=str(source.head.id),
        generator=f"flowpin {__version__}",
        mtime=source.head.commit_time,
    )
    _write_atomically(output, data)
    count = sum(len(v) for v in chosen.values())
    click.echo(
        f"exported {count} version{'s' if count != 1 else ''} of {len(chosen)} "
        f"workflow{'s' if len(chosen) != 1 else ''}"
        + (f" and {len(environments)} environments" if include_environments else "")
        + f" from {str(source.head.id)[:12]} → {output}",
        err=True,
    )


def _write_atomically(target: Path, data: bytes) -> None:
    """Write next to the target and rename: a failed export leaves no half file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- import


@click.command(name="import")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--mode",
    type=click.Choice(MODES),
    default="new",
    show_default=True,
    help="When a name is taken: fail (new), take name-2 (rename), replace (overwrite), "
    "leave it (skip).",
)
@click.option(
    "--into",
    "into",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="The workflow repository to import into.",
)
@click.option("--dry-run", is_flag=True, help="Check and print the plan; write nothing.")
@click.option("--branch", default=None, help="Branch to commit on. Default: flowpin-import-<time>.")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option("--verbose", "-v", is_flag=True, help="Print every finding of every file.")
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bar for directories (default: when stderr is a terminal).",
)
def import_command(
    files: tuple[Path, ...],
    mode: Mode,
    into: Path,
    dry_run: bool,
    branch: str | None,
    fmt: str,
    verbose: bool,
    progress: bool | None,
) -> None:
    """Import flowpin YAML/JSON manifests, bundles and n8n workflows (FILE or directory).

    Everything is validated with the checks `flowpin validate` runs before anything is
    written; a file that fails is left out whole, with its reasons. The rest is committed on
    a new branch; the checked-out branch and the working tree are not touched. Exit status:
    0 all imported (or skipped), 1 some files failed, 2 usage error.
    """
    if branch is not None:
        problem = gitio.branch_name_problem(branch)
        if problem is not None:
            raise click.BadParameter(problem, param_hint="'--branch'")
    try:
        source = gitio.open_source(into)
    except GitError as error:
        raise click.UsageError(str(error)) from error
    if branch is not None:
        clash = gitio.branch_clash(source, branch)
        if clash is not None:
            raise click.BadParameter(clash, param_hint="'--branch'")
    inputs = list(_expand(files))
    if not inputs:
        raise click.UsageError("no .json, .yaml, .yml or .tar.gz files in the given paths")
    many = len(inputs) > 1 or any(path.is_dir() for path in files)
    show_progress = progress if progress is not None else many and sys.stderr.isatty()
    results = [_load(path) for path in _track(inputs, show_progress, "reading")]
    head = gitio.head_files(source)
    history = _history(source, head)
    plan = plan_import(results, head, history, mode)
    commits: list[str] = []
    chosen_branch = branch or _default_branch(source)
    if plan.commits and not dry_run:
        try:
            commits = gitio.commit_chain(source, plan.commits, chosen_branch)
        except (GitError, pygit2.GitError, OSError) as error:
            raise click.ClickException(f"nothing committed: {error}") from error
    if fmt == "json":
        click.echo(summary_json(plan))
    else:
        _print_text(plan, many, verbose)
        _print_outcome(plan, commits, chosen_branch, dry_run)
    sys.exit(1 if any(r.failed for r in plan.results) else 0)


def _expand(paths: tuple[Path, ...]) -> Iterator[Path]:
    seen: set[Path] = set()
    for path in paths:
        candidates = (
            sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and p.name.endswith(INPUT_SUFFIXES)
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            if path.is_dir()
            else [path]
        )
        for candidate in candidates:
            if candidate.resolve() not in seen:
                seen.add(candidate.resolve())
                yield candidate


def _display(path: Path) -> str:
    try:
        shown = os.path.relpath(path)
    except ValueError:
        shown = str(path)
    # A name that is not UTF-8 (surrogate-escaped by Python) is shown with U+FFFD.
    return shown.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _load(path: Path) -> FileResult:
    display = _display(path)
    try:
        with path.open("rb") as handle:
            content = handle.read(MAX_INPUT_BYTES + 1)
    except OSError as error:
        result = FileResult(display, "unknown")
        result.fail(f"cannot read: {error.strerror or error}")
        return result
    if len(content) > MAX_INPUT_BYTES:
        result = FileResult(display, "unknown")
        result.fail(f"larger than {MAX_INPUT_BYTES // 2**20} MiB, the most any input may have")
        return result
    return load_file(display, content)


def _track(items: list[Path], show: bool, label: str) -> Iterator[Path]:
    if not show:
        yield from items
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn(f"{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("", total=len(items))
        for item in items:
            bar.update(task, description=item.name[:40])
            yield item
            bar.advance(task)


def _history(source: gitio.Source, head: dict[str, bytes]) -> History:
    from controller.git.history import WorkflowHistory
    from controller.model.validate import NoHistory, parse_manifest

    if source.head is None:
        return NoHistory()
    paths: dict[str, str] = {}
    for path, content in head.items():
        manifest, _ = parse_manifest(content, path)
        if manifest is not None and manifest.kind == "Workflow":
            paths.setdefault(manifest.name, path)
    return WorkflowHistory(source.repo, source.head, paths, source.prefix)


def _default_branch(source: gitio.Source) -> str:
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    branch, number = f"flowpin-import-{stamp}", 2
    while gitio.branch_exists(source, branch):
        branch, number = f"flowpin-import-{stamp}-{number}", number + 1
    return branch


_LABEL = {
    "imported": "imported",
    "renamed": "renamed",
    "overwritten": "overwritten",
    "skipped": "skipped",
    "unchanged": "unchanged",
    "failed": "FAILED",
}


def _print_text(plan: Plan, many: bool, verbose: bool) -> None:
    color = sys.stdout.isatty()
    for result in plan.results:
        written = [i for i in result.items if i.path and not i.history_only]
        if not many:
            targets = ", ".join(i.path for i in written) or "nothing written"
            click.echo(f"{result.source} ({result.format}): {_LABEL[result.status]} → {targets}")
        shown = [f for f in result.findings if verbose or not many or f.is_error]
        if shown:
            click.echo(report.text(shown, color=color).rstrip("\n"))
        for migration in result.migrations if (verbose or not many) else []:
            click.echo(f"migrated {migration}")
        for decision in result.decisions:
            if decision.reason and (verbose or not many):
                click.echo(f"{decision.action}: {decision.reason}")
        if result.failed and not many:
            for reason in result.reasons:
                click.echo(f"refused: {reason}", err=True)
    if many:
        _print_table(plan)


def _print_table(plan: Plan) -> None:
    from rich.console import Console
    from rich.table import Table

    # Files relative to the folder they share, so that long paths do not crowd the table.
    sources = [result.source for result in plan.results]
    try:
        base = os.path.commonpath(sources) if len(sources) > 1 else ""
    except ValueError:  # relative and absolute paths mixed
        base = ""
    title = f"import summary ({base})" if base else "import summary"
    table = Table(title=title, title_justify="left")
    for column in ("FILE", "FORMAT", "RESULT", "WRITTEN", "DETAILS"):
        table.add_column(column, overflow="fold")
    for result in plan.results:
        written = ", ".join(i.path for i in result.items if i.path and not i.history_only)
        warnings = sum(1 for f in result.findings if not f.is_error)
        details = "; ".join(result.reasons) if result.failed else ""
        if not result.failed:
            notes = [d.reason for d in result.decisions if d.reason]
            if result.migrations:
                notes.append(f"{len(result.migrations)} migration(s)")
            if warnings:
                notes.append(f"{warnings} warning{'s' if warnings != 1 else ''}")
            details = "; ".join(notes)
        shown = os.path.relpath(result.source, base) if base else result.source
        table.add_row(shown, result.format, _LABEL[result.status], written, details)
    counts: dict[str, int] = {}
    for result in plan.results:
        counts[result.status] = counts.get(result.status, 0) + 1
    Console(width=max(140, Console().width), highlight=False).print(table)
    click.echo(", ".join(f"{n} {status}" for status, n in sorted(counts.items())))


def _print_outcome(plan: Plan, commits: list[str], branch: str, dry_run: bool) -> None:
    files = sum(len(f) for _, f in plan.commits)
    if not plan.commits:
        click.echo("nothing to write", err=True)
    elif dry_run:
        click.echo(
            f"dry run: would commit {files} file{'s' if files != 1 else ''} in "
            f"{len(plan.commits)} commit{'s' if len(plan.commits) != 1 else ''} on a new "
            f"branch {branch}; nothing written",
            err=True,
        )
    else:
        click.echo(
            f"committed {files} file{'s' if files != 1 else ''} on branch {branch} "
            f"({commits[-1][:12]}); your checkout is unchanged. Review it with "
            f"`git log -p {branch}` and push it: git push origin {branch}",
            err=True,
        )
