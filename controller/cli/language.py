"""CLI commands over workflow repositories, for people and CI: validate, versions, schema,
diff and plan. No cluster needed."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import yaml

from controller.api.schemas import load_schema
from controller.git.history import GitError, open_repository, resolve_commit, walk
from controller.git.review import Review, review
from controller.git.worktree import find_root
from controller.model import report

if TYPE_CHECKING:  # imported where used: `flowpin --help` stays fast
    from controller.model.parked import ParkedCheck
    from controller.model.plan import Plan

FORMATS = ["text", "json", "github", "sarif"]


def _color(stream: object = sys.stdout) -> bool:
    """Colour on a terminal, unless NO_COLOR is set to anything (no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--against",
    metavar="REF",
    help="Also check the history rules against this git ref (say origin/main), from its merge "
    "base with HEAD, as the pull request shows the change. No merge base: exit 2.",
)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True)
def validate(paths: tuple[Path, ...], against: str | None, fmt: str) -> None:
    """Check Workflow and Environment manifests.

    PATHS are the repository (the directory holding workflows/ and environments/, default
    the current one) or single files in it. Exit status: 0 clean, 1 findings, 2 usage error.
    """
    from dataclasses import replace

    from controller.git.review import NothingToReview, display_path

    try:
        reviews = review(list(paths), against)
    except (GitError, NothingToReview) as error:
        raise click.UsageError(str(error)) from error
    findings = sorted(
        replace(finding, file=display_path(result.root, finding.file))
        for result in reviews
        for finding in result.findings
    )
    output = report.render(findings, fmt, color=fmt == "text" and _color())
    if output:
        click.echo(output.rstrip("\n"))
    errors = sum(1 for f in findings if f.is_error)
    if fmt == "text":
        files = sum(len(result.manifests) for result in reviews)
        warnings = len(findings) - errors
        click.echo(
            f"{files} manifest{'s' if files != 1 else ''} checked: "
            f"{errors} error{'s' if errors != 1 else ''}, "
            f"{warnings} warning{'s' if warnings != 1 else ''}",
            err=True,
        )
    sys.exit(1 if errors else 0)


@click.command()
@click.argument("workflow")
@click.option(
    "--repo",
    "repo_path",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="The workflow repository (or a directory inside it).",
)
@click.option("--ref", default="HEAD", show_default=True, help="Branch, tag or commit to read.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.option(
    "--all",
    "everything",
    is_flag=True,
    help="Also the versions mirrored in the cluster that this history no longer holds "
    "(orphaned by a rewrite); needs a cluster.",
)
@click.option(
    "-n", "--namespace", default=None, help="With --all: the namespace (default: the context's)."
)
def versions(
    workflow: str, repo_path: Path, ref: str, fmt: str, everything: bool, namespace: str | None
) -> None:
    """List the versions of WORKFLOW in git history, oldest first. Reads git only, unless
    --all asks the cluster for versions that history no longer holds."""
    from controller.git.history import WorkflowHistory, commit_meta

    root = find_root(repo_path.resolve())
    try:
        repo = open_repository(str(root))
        prefix = root.relative_to(Path(repo.workdir).resolve()).as_posix()
        # The same history as the pin and migration checks of `flowpin validate`.
        history = WorkflowHistory(
            repo, resolve_commit(repo, ref), root="" if prefix == "." else prefix
        )
        records = history.records(workflow)
    except GitError as error:
        raise click.UsageError(str(error)) from error
    if not records:
        raise click.UsageError(f"no workflow {workflow!r} in the history of {ref}")
    rows = []
    for version, commit, problems in records:
        meta = commit_meta(commit)
        rows.append(
            {
                "version": version,
                "commit": meta.id,
                "author": meta.author,
                "date": meta.time.isoformat(),
                "message": meta.message,
                "valid": not any(p.is_error for p in problems),
            }
        )
    if everything:
        rows = _with_orphans(rows, workflow, namespace)
    if fmt == "json":
        click.echo(json.dumps({"workflow": workflow, "versions": rows}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    count = f"{len(rows)} version{'s' if len(rows) != 1 else ''}"
    table = Table(title=f"{workflow}: {count}", title_justify="left")
    for column in ("VERSION", "COMMIT", "AUTHOR", "DATE", "MESSAGE"):
        table.add_column(column, overflow="fold")
    for row in rows:
        version = str(row["version"]) + ("" if row["valid"] else " (invalid)")
        version += (
            " (orphaned)"
            if row.get("orphaned")
            else f" (not in {ref})"
            if row.get("inGit") is False
            else ""
        )
        table.add_row(
            version,
            str(row["commit"])[:12],
            str(row["author"]),
            str(row["date"])[:19].replace("T", " "),
            str(row["message"]),
        )
    Console(width=max(120, Console().width)).print(table)


def _with_orphans(
    rows: list[dict[str, Any]], workflow: str, namespace: str | None
) -> list[dict[str, Any]]:
    """`rows` (from git) plus the cluster's versions of `workflow` that this history does not
    hold, in version order. `orphaned` is what the cluster says (`status.orphaned`: the
    tracked branch lost it); `inGit` whether the history read here has it (a checkout behind
    or ahead of the tracked branch differs from it)."""
    from controller.cli.cluster import cluster_versions
    from controller.model.semver import parse_version

    known = {str(row["version"]) for row in rows}
    rows = [{**row, "orphaned": False, "inGit": True} for row in rows]
    try:
        mirrored = cluster_versions(workflow, namespace)
    except click.ClickException:
        raise
    except Exception as error:  # unreachable, refused: the API server's answer, plainly
        raise click.ClickException(f"--all reads the cluster, which answered: {error}") from error
    for obj in mirrored:
        spec = obj.get("spec") or {}
        if str(spec.get("version")) in known:
            continue
        git = spec.get("git") or {}
        facts = spec.get("facts") or {}
        rows.append(
            {
                "version": str(spec.get("version")),
                "commit": str(git.get("commit", "")),
                "author": str(git.get("author", "")),
                "date": str(git.get("time", "")),
                "message": str(git.get("message", "")),
                "valid": facts.get("valid", True) is not False,
                "orphaned": bool((obj.get("status") or {}).get("orphaned")),
                "inGit": False,
            }
        )

    def order(row: dict[str, Any]) -> tuple[int, Any]:
        try:
            return (0, parse_version(str(row["version"])))
        except ValueError:
            return (1, str(row["version"]))

    return sorted(rows, key=order)


@click.command()
@click.argument("kind", type=click.Choice(["workflow", "environment"]), default="workflow")
@click.option(
    "--format", "fmt", type=click.Choice(["json", "yaml"]), default="json", show_default=True
)
def schema(kind: str, fmt: str) -> None:
    """Print the JSON Schema of a manifest kind, for editors and other tools."""
    document = load_schema("workflow" if kind == "workflow" else "environment")
    if fmt == "json":
        click.echo(json.dumps(document, indent=2))
    else:
        click.echo(yaml.safe_dump(document, sort_keys=False), nl=False)


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--against",
    metavar="REF",
    help="The branch the pull request merges into, say origin/main; compared from the merge "
    "base. Default: origin/$GITHUB_BASE_REF when set (GitHub Actions pull requests), else the "
    "current branch's upstream, else HEAD (the uncommitted changes). The plan names the base.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["markdown", "json", "text"]),
    default="markdown",
    show_default=True,
)
@click.option(
    "--cluster/--no-cluster",
    "cluster",
    default=None,
    help="Check the runs parked on steps each new version removes or retypes, in the cluster "
    "of the kubeconfig context. Default: when that cluster answers within 3s. --cluster "
    "makes an unreachable cluster an error (exit 1).",
)
@click.option(
    "-n",
    "--namespace",
    default=None,
    help="Namespace of the cluster check (default: the kubeconfig context's).",
)
def plan(
    paths: tuple[Path, ...],
    against: str | None,
    fmt: str,
    cluster: bool | None,
    namespace: str | None,
) -> None:
    """What merging this working tree into REF does to each environment: deployments that
    change, the gates they pass, and breaking changes with their migrations. Markdown is
    ready to post as a pull-request comment.

    With a cluster reachable, it also says for each changing deployment which runs are
    parked on steps the new version removes or retypes, and whether its migrations move
    them."""
    from controller.git.review import NothingToReview, default_base
    from controller.git.review import plan as build
    from controller.model import parked
    from controller.model.plan import render_json, render_markdown, render_text

    why = "--against"
    if against is None:
        against, why = default_base(paths[0] if paths else Path("."))
    try:
        reviewed, result = build(list(paths), against)
    except (GitError, NothingToReview) as error:
        raise click.UsageError(str(error)) from error
    base = f"{reviewed.base}, {why}"
    check = None
    if cluster is not False and any(c.to_version for c in result.changes):
        check = _parked_check(reviewed, result, namespace)
    if fmt == "json":
        data = {"base": {"ref": against, "described": base}, **json.loads(render_json(result))}
        if check is not None:
            data["parkedRuns"] = parked.as_json(check)
        click.echo(json.dumps(data, indent=2))
    else:
        render = {"markdown": render_markdown, "text": render_text}[fmt]
        section = (parked.render_markdown if fmt == "markdown" else parked.render_text)(check)
        output = render(result).rstrip("\n")
        if fmt == "markdown":
            title, _, rest = output.partition("\n")
            output = f"{title}\n\nBase: {base}.\n{rest}"
        else:
            output = f"Base: {base}.\n{output}"
        if section:
            output += "\n\n" + section.rstrip("\n")
        click.echo(output)
    if cluster and check is not None and not check.checked:
        click.echo(f"--cluster: {check.note}", err=True)
        sys.exit(1)


PROBE_TIMEOUT = 3.0  # seconds the API server has to answer before the check is left out
REQUEST_TIMEOUT = 15.0


def _cluster_client() -> tuple[Any, str]:
    """A CustomObjectsApi for the kubeconfig context (or the in-cluster account) that does
    not retry, so an unreachable server costs one timeout; or None and why not."""
    from kubernetes import client, config

    configuration = client.Configuration()
    try:
        config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except Exception as error:  # no file, no context, an unreadable file: all "not reachable"
        if not os.environ.get("KUBERNETES_SERVICE_HOST"):
            return None, f"no kubeconfig context: {error}"
        try:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except Exception as in_cluster:
            return None, str(in_cluster)
    configuration.retries = 0
    return client.CustomObjectsApi(client.ApiClient(configuration)), ""


def _failure(error: Exception) -> str:
    """The gist of a failed request: `403 Forbidden`, `Connection refused`, `Read timed out`."""
    status = getattr(error, "status", None)
    if status is not None:
        return f"{status} {getattr(error, 'reason', '')}".strip()
    cause = getattr(error, "reason", None)  # urllib3's MaxRetryError wraps the real one
    text = str(cause if isinstance(cause, Exception) else error)
    for marker in ("Failed to establish a new connection: ", "): "):
        if marker in text:
            text = text.rsplit(marker, 1)[1]
            break
    return text.splitlines()[0] if text else type(error).__name__


def _parked_check(reviewed: Review, result: Plan, namespace: str | None) -> ParkedCheck:
    """Reads runs and old definitions from the cluster and hands them to
    `controller.model.parked`. Never raises: a cluster that cannot answer gives a check
    with a note instead, because the plan is for the pull request, not the cluster."""
    from controller.api import kinds
    from controller.cli.cluster import current_namespace
    from controller.model.migration import run_facts
    from controller.model.parked import NOT_REACHABLE, ParkedCheck, ParkedReport, parked_runs

    api, why = _cluster_client()
    if api is None:
        return ParkedCheck(False, note=f"{NOT_REACHABLE} ({why})")
    namespace = namespace or current_namespace()

    def listed(plural: str, timeout: float, **options: Any) -> list[dict[str, Any]]:
        found = api.list_namespaced_custom_object(
            kinds.GROUP, kinds.VERSION, namespace, plural, _request_timeout=timeout, **options
        )
        return list(found["items"])

    try:
        listed(kinds.WORKFLOW_DEPLOYMENT.plural, PROBE_TIMEOUT, limit=1)
    except Exception as error:  # refused, timed out, forbidden, no CRDs: not reachable
        return ParkedCheck(False, namespace, f"{NOT_REACHABLE} ({_failure(error)})")
    head = {
        (m.name, str(m.spec.get("version"))): m.spec
        for m in reviewed.manifests
        if m.kind == "Workflow"
    }
    mirrored: dict[tuple[str, str], dict[str, Any] | None] = {}

    def from_cluster(workflow: str, version: str) -> dict[str, Any] | None:
        if (workflow, version) not in mirrored:
            from kubernetes.client.exceptions import ApiException

            try:
                obj = api.get_namespaced_custom_object(
                    kinds.GROUP,
                    kinds.VERSION,
                    namespace,
                    kinds.WORKFLOW_VERSION.plural,
                    kinds.version_object_name(workflow, version),
                    _request_timeout=REQUEST_TIMEOUT,
                )
                definition = (obj.get("spec") or {}).get("definition")
                mirrored[(workflow, version)] = definition if isinstance(definition, dict) else None
            except ApiException as error:
                if error.status != 404:
                    raise
                mirrored[(workflow, version)] = None
        return mirrored[(workflow, version)]

    def from_repo(workflow: str, version: str) -> Mapping[str, Any] | None:
        return head.get((workflow, version)) or reviewed.history.versions(workflow).get(version)

    try:
        runs = listed(kinds.WORKFLOW_RUN.plural, REQUEST_TIMEOUT)
        reports: list[ParkedReport] = []
        for change in result.changes:
            if change.to_version is None:
                continue
            facts = [
                run_facts(run)
                for run in runs
                if (run.get("spec") or {}).get("workflow") == change.workflow
                and (run.get("spec") or {}).get("environment") == change.environment
            ]
            target = from_repo(change.workflow, change.to_version) or from_cluster(
                change.workflow, change.to_version
            )
            sources: dict[str, Mapping[str, Any]] = {}
            for version in {f.version for f in facts if f.version}:
                definition = from_cluster(change.workflow, version) or from_repo(
                    change.workflow, version
                )
                if definition is not None:
                    sources[version] = definition
            reports.append(
                parked_runs(
                    change.environment,
                    change.workflow,
                    change.from_version,
                    change.to_version,
                    target,
                    facts,
                    sources,
                )
            )
    except Exception as error:  # the server went away or forbids reading runs
        return ParkedCheck(False, namespace, f"{NOT_REACHABLE} ({_failure(error)})")
    return ParkedCheck(True, namespace, reports=tuple(reports))


@click.command(name="diff")
@click.argument("workflow")
@click.argument("from_version", required=False)
@click.argument("to_version", required=False)
@click.option(
    "--repo",
    "repo_path",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="The workflow repository (for versions from history).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "markdown", "json"]),
    default="text",
    show_default=True,
)
def diff_command(
    workflow: str, from_version: str | None, to_version: str | None, repo_path: Path, fmt: str
) -> None:
    """What changed between two versions of WORKFLOW, each change classified breaking,
    feature or fix.

    Versions come from git history (FROM default: the one before TO; TO default: the newest,
    including an uncommitted one in the working tree). Or give two files:
    `flowpin diff old.yaml new.yaml`.
    """
    from controller.model.diff import diff_specs, render_json, render_markdown, render_text

    if from_version is not None and Path(workflow).is_file() and Path(from_version).is_file():
        name, (old_version, old), (new_version, new) = _two_files(
            Path(workflow), Path(from_version)
        )
    else:
        name = workflow
        (old_version, old), (new_version, new) = _from_history(
            workflow, from_version, to_version, repo_path
        )
    result = diff_specs(old, new)
    if fmt == "json":
        click.echo(render_json(result, name, old_version, new_version))
    elif fmt == "markdown":
        click.echo(render_markdown(result, name, old_version, new_version).rstrip("\n"))
    else:
        click.echo(render_text(result, name, old_version, new_version, color=_color()).rstrip("\n"))


Spec = dict[str, object]


def _two_files(old_path: Path, new_path: Path) -> tuple[str, tuple[str, Spec], tuple[str, Spec]]:
    from controller.model.validate import parse_manifest

    loaded = []
    for path in (old_path, new_path):
        manifest, findings = parse_manifest(path.read_bytes(), str(path))
        if manifest is None or manifest.kind != "Workflow":
            problems = report.render(findings, "text") or f"{path}: not a Workflow manifest"
            raise click.UsageError(f"cannot diff {path}:\n{problems.rstrip()}")
        loaded.append(manifest)
    old, new = loaded
    return new.name, (old.spec["version"], old.spec), (new.spec["version"], new.spec)


def _from_history(
    workflow: str, from_version: str | None, to_version: str | None, repo_path: Path
) -> tuple[tuple[str, Spec], tuple[str, Spec]]:
    from controller.git.worktree import read_manifests
    from controller.model.semver import parse_version
    from controller.model.validate import parse_manifest

    root = find_root(repo_path.resolve())
    specs: dict[str, Spec] = {}
    try:
        repo = open_repository(str(root))
        prefix = root.relative_to(Path(repo.workdir).resolve()).as_posix()
        index = walk(repo, resolve_commit(repo, "HEAD"), "" if prefix == "." else prefix).index
        specs.update({v: r.spec for v, r in index.versions.get(workflow, {}).items()})
    except GitError:
        pass  # not a repository (yet): the working tree alone
    for path, content in read_manifests(root).items():
        manifest, _ = parse_manifest(content, path)
        if manifest is not None and manifest.kind == "Workflow" and manifest.name == workflow:
            specs.setdefault(manifest.spec["version"], manifest.spec)
    ordered = sorted(specs, key=parse_version)
    if not ordered:
        raise click.UsageError(f"no workflow {workflow!r} in {root}")
    new = to_version or ordered[-1]
    if new not in specs:
        raise click.UsageError(f"{workflow} has no version {new} (versions: {', '.join(ordered)})")
    if from_version is None:
        older = [v for v in ordered if parse_version(v) < parse_version(new)]
        if not older:
            raise click.UsageError(f"{workflow} {new} is its first version: nothing to compare")
        from_version = older[-1]
    if from_version not in specs:
        raise click.UsageError(
            f"{workflow} has no version {from_version} (versions: {', '.join(ordered)})"
        )
    return (from_version, specs[from_version]), (new, specs[new])
