"""CLI commands against the cluster of the current kubeconfig context."""

from __future__ import annotations

import contextlib
import datetime
import json
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import click

from controller.api import kinds
from controller.model.durations import parse_duration


def _api() -> Any:
    from kubernetes import client, config

    try:
        config.load_config()  # type: ignore[no-untyped-call]
    except config.ConfigException as error:
        raise click.UsageError(f"no cluster to talk to: {error}") from error
    return client.CustomObjectsApi()


def current_namespace() -> str:
    from kubernetes import config

    try:
        _, active = config.list_kube_config_contexts()  # type: ignore[no-untyped-call]
        return str(active.get("context", {}).get("namespace") or "default")
    except (config.ConfigException, TypeError):
        return "default"


def _get(api: Any, plural: str, namespace: str, name: str) -> dict[str, Any]:
    from kubernetes.client.exceptions import ApiException

    try:
        result: dict[str, Any] = api.get_namespaced_custom_object(
            kinds.GROUP, kinds.VERSION, namespace, plural, name
        )
        return result
    except ApiException as error:
        if error.status == 404:
            raise click.UsageError(f"{plural}/{name} not found in namespace {namespace}") from error
        raise click.ClickException(f"{error.status} {error.reason}") from error


@contextlib.contextmanager
def api_errors() -> Iterator[None]:
    """API failures as a one-line error (exit 1) rather than a traceback."""
    try:
        yield
    except Exception as error:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        if isinstance(error, ApiException):
            detail = ""
            with contextlib.suppress(ValueError, AttributeError, TypeError):
                detail = str(json.loads(error.body or "{}").get("message") or "")
            raise click.ClickException(
                f"the API server answered {error.status} {error.reason}"
                + (f": {detail}" if detail else "")
            ) from error
        if isinstance(error, HTTPError):
            raise click.ClickException(f"cannot reach the API server: {error}") from error
        raise


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    for item in (obj.get("status") or {}).get("conditions") or []:
        if item.get("type") == type_:
            return dict(item)
    return {}


namespace_option = click.option(
    "-n", "--namespace", default=None, help="Namespace (default: the kubeconfig context's)."
)


@click.command()
@click.argument("source")
@namespace_option
@click.option("--timeout", default="2m", show_default=True, help="How long to wait.")
def sync(source: str, namespace: str | None, timeout: str) -> None:
    """Sync a WorkflowSource now and wait for the result (sets flowpin.dev/requestedAt)."""
    namespace = namespace or current_namespace()
    try:
        limit = parse_duration(timeout).total_seconds()
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--timeout") from error
    api = _api()
    _get(api, kinds.WORKFLOW_SOURCE.plural, namespace, source)
    requested = datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds")
    api.patch_namespaced_custom_object(
        kinds.GROUP,
        kinds.VERSION,
        namespace,
        kinds.WORKFLOW_SOURCE.plural,
        source,
        {"metadata": {"annotations": {kinds.ANNOTATION_REQUESTED_AT: requested}}},
    )
    deadline = time.monotonic() + limit
    while True:
        obj = _get(api, kinds.WORKFLOW_SOURCE.plural, namespace, source)
        if (obj.get("status") or {}).get("lastHandledRequestedAt") == requested:
            break
        if time.monotonic() > deadline:
            click.echo(
                f"{namespace}/{source}: not synced within {timeout}; is the operator running?",
                err=True,
            )
            sys.exit(1)
        time.sleep(0.5)
    ready = condition(obj, "Ready")
    artifact = (obj.get("status") or {}).get("artifact") or {}
    click.echo(f"{namespace}/{source}: {ready.get('reason')}: {ready.get('message')}")
    if artifact:
        click.echo(f"commit {artifact.get('commit')} ({artifact.get('message')})")
    for item in (obj.get("status") or {}).get("invalidFiles") or []:
        click.echo(f"  {item['file']}:{item['line']}: {item['message']}", err=True)
    sys.exit(0 if ready.get("status") == "True" else 1)


# ---------------------------------------------------------------------- deployments


def whoami() -> str:
    """The identity the API server sees (SelfSubjectReview), for recording approvals."""
    import getpass

    from kubernetes import client

    try:
        review = client.AuthenticationV1Api().create_self_subject_review(
            client.V1SelfSubjectReview()
        )
        info = review.status.user_info if review.status is not None else None
        if info is not None and info.username:
            return str(info.username)
    except Exception:  # an older API server, or no permission: fall back to the local user
        pass
    return getpass.getuser()


def _deployment(api: Any, workflow: str, env: str, namespace: str) -> dict[str, Any]:
    return _get(
        api,
        kinds.WORKFLOW_DEPLOYMENT.plural,
        namespace,
        kinds.deployment_object_name(workflow, env),
    )


def cluster_versions(workflow: str, namespace: str | None) -> list[dict[str, Any]]:
    """The WorkflowVersion objects of `workflow` in the namespace (the context's by default)."""
    api = _api()
    namespace = namespace or current_namespace()
    listed = api.list_namespaced_custom_object(
        kinds.GROUP,
        kinds.VERSION,
        namespace,
        kinds.WORKFLOW_VERSION.plural,
        label_selector=f"{kinds.LABEL_WORKFLOW}={workflow}",
    )
    return list(listed.get("items", []))


def _require_version(api: Any, workflow: str, version: str, namespace: str) -> None:
    """Refuse (exit 2) a version that is not mirrored: a hold on it could never run."""
    from kubernetes.client.exceptions import ApiException

    plural = kinds.WORKFLOW_VERSION.plural
    try:
        api.get_namespaced_custom_object(
            kinds.GROUP,
            kinds.VERSION,
            namespace,
            plural,
            kinds.version_object_name(workflow, version),
        )
        return
    except ApiException as error:
        if error.status != 404:
            raise click.ClickException(f"{error.status} {error.reason}") from error
    listed = api.list_namespaced_custom_object(
        kinds.GROUP,
        kinds.VERSION,
        namespace,
        plural,
        label_selector=f"{kinds.LABEL_WORKFLOW}={workflow}",
    )
    known = sorted(
        (str(item["spec"].get("version")) for item in listed.get("items", [])),
        key=_semver_key,
    )
    raise click.UsageError(
        f"{workflow} has no version {version} in namespace {namespace}"
        + (f" (mirrored: {', '.join(known)})" if known else " (none is mirrored)")
    )


def _semver_key(version: str) -> tuple[int, Any]:
    from controller.model.semver import parse_version

    try:
        return (0, parse_version(version))
    except ValueError:
        return (1, version)


def _annotate(
    api: Any, workflow: str, env: str, namespace: str, annotations: dict[str, str | None]
) -> None:
    api.patch_namespaced_custom_object(
        kinds.GROUP,
        kinds.VERSION,
        namespace,
        kinds.WORKFLOW_DEPLOYMENT.plural,
        kinds.deployment_object_name(workflow, env),
        {"metadata": {"annotations": annotations}},
    )


def _wait_for(
    api: Any, workflow: str, env: str, namespace: str, accept: Any, timeout: float = 30
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        obj = _deployment(api, workflow, env, namespace)
        if accept(obj.get("status") or {}) or time.monotonic() > deadline:
            return obj
        time.sleep(0.3)


def _report(obj: dict[str, Any]) -> None:
    status = obj.get("status") or {}
    click.echo(
        f"{obj['metadata']['name']}: {status.get('phase', 'Pending')} "
        f"(active {status.get('activeVersion', '-')}): {status.get('message', '')}"
    )


env_option = click.option("--env", "env", required=True, help="Environment.")


@click.command()
@click.argument("workflow")
@env_option
@click.option("--version", default=None, help="Version to approve (default: the desired one).")
@namespace_option
def approve(workflow: str, env: str, version: str | None, namespace: str | None) -> None:
    """Approve the version pinned for WORKFLOW in ENV (records who approved)."""
    from controller.model.deployment import ANNOTATION_APPROVED_BY

    namespace = namespace or current_namespace()
    api = _api()
    obj = _deployment(api, workflow, env, namespace)
    version = version or str(obj["spec"]["version"])
    if version != obj["spec"]["version"]:
        click.echo(f"note: git pins {obj['spec']['version']}; approving {version} anyway", err=True)
    approver = whoami()
    _annotate(
        api,
        workflow,
        env,
        namespace,
        {kinds.ANNOTATION_APPROVED_VERSION: version, ANNOTATION_APPROVED_BY: approver},
    )
    click.echo(f"approved {workflow} {version} in {env} as {approver}")
    _report(
        _wait_for(api, workflow, env, namespace, lambda s: s.get("reason") != "AwaitingApproval")
    )


@click.command()
@click.argument("workflow")
@env_option
@click.option("--to", "target", default=None, help="Version to run (default: the previous one).")
@click.option(
    "--git",
    "via_git",
    is_flag=True,
    help="Instead, commit a pin back to that version on a new branch (for a pull request).",
)
@click.option(
    "--repo",
    "repo_path",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=Path("."),
    help="The workflow repository (with --git).",
)
@namespace_option
def rollback(
    workflow: str,
    env: str,
    target: str | None,
    via_git: bool,
    repo_path: Path,
    namespace: str | None,
) -> None:
    """Emergency rollback: run an older version of WORKFLOW in ENV until git changes the pin
    or `flowpin release`; or, with --git, write the revert as a commit for a pull request."""
    from controller.model.deployment import (
        ANNOTATION_HOLD,
        ANNOTATION_HOLD_BY,
        ANNOTATION_HOLD_PIN,
    )

    namespace = namespace or current_namespace()
    api = _api()
    obj = _deployment(api, workflow, env, namespace)
    status = obj.get("status") or {}
    target = target or status.get("previousVersion")
    if not target:
        raise click.UsageError(f"{workflow} in {env} has no previous version; name one with --to")
    _require_version(api, workflow, target, namespace)
    if via_git:
        branch = _commit_pin(repo_path, workflow, env, target, "rollback")
        click.echo(
            f"committed the pin {workflow}: {target} on branch {branch}; open a pull request"
        )
        return
    _annotate(
        api,
        workflow,
        env,
        namespace,
        {
            ANNOTATION_HOLD: target,
            ANNOTATION_HOLD_PIN: str(obj["spec"]["version"]),
            ANNOTATION_HOLD_BY: whoami(),
        },
    )
    _report(_wait_for(api, workflow, env, namespace, lambda s: s.get("activeVersion") == target))


@click.command()
@click.argument("workflow")
@env_option
@namespace_option
def release(workflow: str, env: str, namespace: str | None) -> None:
    """End a rollback: follow the version git pins again."""
    from controller.model.deployment import (
        ANNOTATION_HOLD,
        ANNOTATION_HOLD_BY,
        ANNOTATION_HOLD_PIN,
    )

    namespace = namespace or current_namespace()
    api = _api()
    _annotate(
        api,
        workflow,
        env,
        namespace,
        {ANNOTATION_HOLD: None, ANNOTATION_HOLD_PIN: None, ANNOTATION_HOLD_BY: None},
    )
    _report(_wait_for(api, workflow, env, namespace, lambda s: s.get("phase") != "Held"))


@click.command()
@click.argument("workflow")
@env_option
@namespace_option
def retry(workflow: str, env: str, namespace: str | None) -> None:
    """Try again a version held after a failed verification or an aborted canary."""
    from controller.model.deployment import ANNOTATION_RETRY

    namespace = namespace or current_namespace()
    api = _api()
    held = (_deployment(api, workflow, env, namespace).get("status") or {}).get("heldVersion")
    if not held:
        raise click.UsageError(f"{workflow} in {env} holds no version; nothing to retry")
    _annotate(api, workflow, env, namespace, {ANNOTATION_RETRY: held})
    _report(_wait_for(api, workflow, env, namespace, lambda s: s.get("heldVersion") != held))


@click.command()
@click.argument("workflow")
@env_option
@namespace_option
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def history(workflow: str, env: str, namespace: str | None, fmt: str) -> None:
    """Recent transitions of WORKFLOW in ENV, newest first."""
    import json

    from rich.console import Console
    from rich.table import Table

    namespace = namespace or current_namespace()
    entries = (_deployment(_api(), workflow, env, namespace).get("status") or {}).get(
        "history"
    ) or []
    if fmt == "json":
        click.echo(json.dumps(entries, indent=2))
        return
    table = Table(title=f"{workflow} in {env}", title_justify="left")
    for column in ("VERSION", "RESULT", "REASON", "INITIATOR", "FINISHED", "COMMIT"):
        table.add_column(column, overflow="fold")
    for e in entries:
        table.add_row(
            e.get("version", ""),
            e.get("result", ""),
            e.get("reason", ""),
            e.get("initiator", ""),
            e.get("finishedAt", ""),
            str(e.get("commit", ""))[:12],
        )
    Console(width=max(120, Console().width)).print(table)


def _commit_pin(repo_path: Path, workflow: str, env: str, version: str, verb: str) -> str:
    from controller.git.commits import commit_on_new_branch
    from controller.git.history import GitError, open_repository
    from controller.git.worktree import find_root
    from controller.model.pins import PinEditError, set_pin

    root = find_root(repo_path.resolve())
    env_file = next(
        (p for p in (root / "environments").glob("*.y*ml") if _env_name(p) == env), None
    )
    if env_file is None:
        raise click.UsageError(f"no environment {env!r} under {root / 'environments'}")
    try:
        repo = open_repository(str(root))
        text = env_file.read_text()
        changed = set_pin(text, workflow, version)
        relative = env_file.resolve().relative_to(Path(repo.workdir).resolve()).as_posix()
        branch = f"{verb}/{workflow}-{version}-{env}"
        commit_on_new_branch(
            repo,
            relative,
            changed.encode(),
            branch,
            f"{verb.capitalize()} {workflow} to {version} in {env}",
        )
    except (GitError, PinEditError) as error:
        raise click.UsageError(str(error)) from error
    return branch


def _env_name(path: Path) -> str | None:
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, OSError):
        return None
    name = (data or {}).get("metadata", {}).get("name") if isinstance(data, dict) else None
    return str(name) if name else None


@click.command()
@click.argument("workflow")
@click.option("--to", "env", required=True, help="Environment to promote to.")
@click.option("--version", default=None, help="Version (default: the workflow's current one).")
@click.option("--force", is_flag=True, help="Promote even if not Verified upstream.")
@click.option(
    "--repo",
    "repo_path",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
)
@click.option(
    "--full",
    is_flag=True,
    help="Instead, take the canary in progress in ENV to 100% now (no git commit).",
)
@click.option("--timeout", default="30s", show_default=True, help="How long --full waits.")
@namespace_option
def promote(
    workflow: str,
    env: str,
    version: str | None,
    force: bool,
    repo_path: Path,
    full: bool,
    timeout: str,
    namespace: str | None,
) -> None:
    """Pin VERSION of WORKFLOW in environments/ENV.yaml on a new branch
    promote/<workflow>-<version>-<env>, keeping the file's comments and formatting.

    With --full, end the canary in progress in ENV: its version becomes the active one for
    every new run, without waiting for the remaining canary steps. Git already pins that
    version, so nothing is committed."""
    if full:
        _promote_full(workflow, env, version, namespace, _timeout(timeout))
        return
    from controller.git.worktree import find_root, read_manifests
    from controller.model.deployment import verified_at
    from controller.model.validate import check_files

    root = find_root(repo_path.resolve())
    manifests, _ = check_files(read_manifests(root))
    workflows = {m.name: m for m in manifests if m.kind == "Workflow"}
    environments = {m.name: m for m in manifests if m.kind == "Environment"}
    if workflow not in workflows:
        raise click.UsageError(f"no workflow {workflow!r} in {root}")
    if env not in environments:
        raise click.UsageError(f"no environment {env!r} in {root}")
    version = version or str(workflows[workflow].spec["version"])
    upstream = (environments[env].spec.get("promotion") or {}).get("from")
    if upstream and not force:
        namespace = namespace or current_namespace()
        try:
            upstream_obj = _deployment(_api(), workflow, upstream, namespace)
        except click.UsageError as error:
            raise click.UsageError(
                f"cannot check that {workflow} {version} is Verified in {upstream}: {error}; "
                "use --force to promote anyway"
            ) from error
        if verified_at(upstream_obj.get("status") or {}, version) is None:
            raise click.UsageError(
                f"{workflow} {version} is not Verified in {upstream} (the cluster says "
                f"{(upstream_obj.get('status') or {}).get('phase', 'nothing')}); "
                "use --force to promote anyway"
            )
    branch = _commit_pin(root, workflow, env, version, "promote")
    click.echo(
        f"committed {workflow}: {version} in environments for {env} on branch {branch}\n"
        f"push it and open a pull request: git push origin {branch}"
    )


# ---------------------------------------------------------------------- canary


def canary_summary(canary: Mapping[str, Any], steps: int | None = None) -> str:
    """`1.5.0 canary 10% (step 1/2)`: what a canary has reached. `step` in the status is
    the index of the current canary step, shown counting from 1 out of `steps`."""
    version = canary.get("version") or "?"
    if canary.get("state") == "Aborted":
        return f"{version} canary aborted"
    text = f"{version} canary {canary.get('weight', 0)}%"
    step = canary.get("step")
    if isinstance(step, int) and not isinstance(step, bool):
        text += f" (step {step + 1}/{steps})" if steps else f" (step {step + 1})"
    return text


def _timeout(text: str) -> float:
    try:
        return parse_duration(text).total_seconds()
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--timeout") from error


def _canary_version(obj: dict[str, Any], workflow: str, env: str, verb: str) -> str:
    """The version of the canary in progress; a clear error when there is none."""
    status = obj.get("status") or {}
    canary = status.get("canary") or {}
    if canary.get("state") != "Progressing" or not canary.get("version"):
        state = (
            f"canary {canary['version']} {canary.get('state')}, " if canary.get("version") else ""
        )
        raise click.ClickException(
            f"no canary in progress for {workflow} in {env} ({state}phase "
            f"{status.get('phase', 'Pending')}): nothing to {verb}"
        )
    return str(canary["version"])


def _promote_full(
    workflow: str, env: str, version: str | None, namespace: str | None, limit: float
) -> None:
    namespace = namespace or current_namespace()
    with api_errors():
        api = _api()
        target = _canary_version(
            _deployment(api, workflow, env, namespace), workflow, env, "promote"
        )
        if version is not None and version != target:
            raise click.ClickException(
                f"the canary in progress for {workflow} in {env} is {target}, not {version}"
            )
        _annotate(api, workflow, env, namespace, {kinds.ANNOTATION_PROMOTE_FULL: target})
        click.echo(f"promoting the canary {workflow} {target} in {env} to 100%")

        def settled(s: dict[str, Any]) -> bool:
            aborted = (s.get("canary") or {}).get("state") == "Aborted"
            return s.get("activeVersion") == target or aborted or s.get("phase") == "RolledBack"

        obj = _wait_for(api, workflow, env, namespace, settled, limit)
    _report(obj)
    status = obj.get("status") or {}
    if status.get("activeVersion") != target:
        aborted = (
            status.get("phase") == "RolledBack"
            or (status.get("canary") or {}).get("state") == "Aborted"
        )
        why = "the canary was aborted" if aborted else "is the operator running?"
        click.echo(f"{target} is not active in {env}: {why}", err=True)
        sys.exit(1)


@click.command()
@click.argument("workflow")
@env_option
@click.option("--timeout", default="30s", show_default=True, help="How long to wait.")
@namespace_option
def abort(workflow: str, env: str, timeout: str, namespace: str | None) -> None:
    """Abort the canary in progress for WORKFLOW in ENV: every new run goes to the stable
    version again, and the canary version is held until git changes the pin (or
    `flowpin retry`)."""
    limit = _timeout(timeout)
    namespace = namespace or current_namespace()
    with api_errors():
        api = _api()
        target = _canary_version(_deployment(api, workflow, env, namespace), workflow, env, "abort")
        _annotate(api, workflow, env, namespace, {kinds.ANNOTATION_ABORT: target})
        click.echo(f"aborting the canary {workflow} {target} in {env}")
        obj = _wait_for(
            api, workflow, env, namespace, lambda s: s.get("phase") == "RolledBack", limit
        )
    _report(obj)
    if (obj.get("status") or {}).get("phase") != "RolledBack":
        click.echo(
            f"the canary {target} is not rolled back yet; is the operator running?", err=True
        )
        sys.exit(1)


@click.command()
@click.argument("workflow", required=False)
@namespace_option
@click.option("--watch", is_flag=True, help="Keep the view up to date until Ctrl-C.")
def status(workflow: str | None, namespace: str | None, watch: bool) -> None:
    """Environments → deployments → versions, with the gate that holds each back."""
    from rich.console import Console
    from rich.live import Live

    namespace = namespace or current_namespace()
    api = _api()
    # Piped or captured output: wide rows, not a table wrapped at 80 columns.
    console = Console() if sys.stdout.isatty() else Console(width=200)
    if not watch:
        console.print(_status_table(api, namespace, workflow))
        return
    with Live(
        _status_table(api, namespace, workflow), console=console, refresh_per_second=1
    ) as live:
        try:
            while True:
                time.sleep(2)
                live.update(_status_table(api, namespace, workflow))
        except KeyboardInterrupt:
            pass


def _status_table(api: Any, namespace: str, workflow: str | None) -> Any:
    from rich.table import Table

    from controller.cli.migrate import migration_progress
    from controller.model.plan import promotion_order

    selector = f"{kinds.LABEL_WORKFLOW}={workflow}" if workflow else ""
    deployments = api.list_namespaced_custom_object(
        kinds.GROUP,
        kinds.VERSION,
        namespace,
        kinds.WORKFLOW_DEPLOYMENT.plural,
        label_selector=selector,
    )["items"]
    environments = {
        e["metadata"]["name"]: e.get("spec") or {}
        for e in api.list_namespaced_custom_object(
            kinds.GROUP, kinds.VERSION, namespace, kinds.ENVIRONMENT.plural
        )["items"]
    }
    order = {name: i for i, name in enumerate(promotion_order(environments))}
    table = Table(title=f"flowpin in {namespace}", title_justify="left")
    for column in ("ENVIRONMENT", "WORKFLOW", "DESIRED", "ACTIVE", "PHASE", "GATES", "WHY"):
        table.add_column(column, overflow="fold")
    deployments.sort(key=lambda d: (order.get(d["spec"]["environment"], 99), d["spec"]["workflow"]))
    migrations = _open_migrations(api, namespace)
    for d in deployments:
        s = d.get("status") or {}
        env_spec = environments.get(d["spec"]["environment"]) or {}
        canary = s.get("canary") or {}
        summary = ""
        if canary.get("version") and (
            s.get("phase") == "Canary" or canary.get("state") == "Progressing"
        ):
            steps = len((env_spec.get("rollout") or {}).get("steps") or []) or None
            analysis = (canary.get("analysis") or {}).get("message")
            summary = canary_summary(canary, steps) + (f"; {analysis}" if analysis else "")
        gates = " ".join(
            f"{'✓' if g.get('open') else '✗'}{g.get('name')}" for g in s.get("gates") or []
        )
        versions = ", ".join(
            f"{v['version']} {v.get('state')} ({v.get('activeRuns', 0)} runs)"
            if v.get("state") in ("Draining", "Canary")
            else f"{v['version']} Drained"
            for v in (s.get("versions") or [])[:4]
            if v.get("state") in ("Draining", "Canary", "Drained")
        )
        table.add_row(
            d["spec"]["environment"],
            d["spec"]["workflow"],
            d["spec"]["version"],
            s.get("activeVersion", "-"),
            s.get("phase", "Pending"),
            gates,
            why_text(summary, str(s.get("message", "")), versions),
        )
        for m in migrations.get((d["spec"]["workflow"], d["spec"]["environment"]), []):
            table.add_row(
                "",
                "↳ migration",
                str((m.get("spec") or {}).get("toVersion", "")),
                "",
                str((m.get("status") or {}).get("phase") or "Pending"),
                "",
                migration_progress(m),
            )
    return table


def why_text(canary: str, message: str, versions: str) -> str:
    """The WHY column: whole sentences, one per fact (`1.1.0 is active; older: 1.0.0
    Drained`), never fragments glued by spaces; the canary's message once."""
    parts = [canary] if canary and not message.startswith("canary ") else []
    if message and message not in canary:
        parts.append(message.rstrip("."))
    if versions:
        parts.append(f"older: {versions}")
    return "; ".join(parts)


def _open_migrations(api: Any, namespace: str) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Migrations not finished yet, by (workflow, environment), oldest first. Matched on the
    spec, not labels: a migration written with kubectl need not carry them."""
    from kubernetes.client.exceptions import ApiException

    from controller.cli.migrate import FINAL_PHASES

    try:
        items = api.list_namespaced_custom_object(
            kinds.GROUP, kinds.VERSION, namespace, kinds.WORKFLOW_MIGRATION.plural
        )["items"]
    except ApiException:
        return {}  # no permission to list them, or no CRD: the table goes without
    found: dict[tuple[str, str], list[dict[str, Any]]] = {}
    items.sort(key=lambda m: str(m["metadata"].get("creationTimestamp") or ""))
    for m in items:
        spec = m.get("spec") or {}
        if (m.get("status") or {}).get("phase") in FINAL_PHASES:
            continue
        key = (str(spec.get("workflow", "")), str(spec.get("environment", "")))
        found.setdefault(key, []).append(m)
    return found
