"""`flowpin migrate`: start, inspect and steer WorkflowMigrations (runs moving between
versions).

The commands only write the WorkflowMigration's spec and read its status: the operator plans
and moves the runs. The printing helpers are pure (dicts in, text out) so that tests and
the e2e suite can check the output without a cluster or a terminal.
"""

from __future__ import annotations

import datetime
import json
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import click

from controller.api import kinds
from controller.cli.cluster import _api, _get, api_errors, current_namespace, namespace_option
from controller.model.durations import format_duration, parse_duration
from controller.model.runs import parse_time

FINAL_PHASES = ("Succeeded", "Failed", "Cancelled")
PLAN_FORMATS = ["text", "json", "markdown"]
BAR_WIDTH = 12
# The API server appends 5 random characters to generateName and cuts a longer prefix to
# 58 characters (names.SimpleNameGenerator); cutting it here keeps the result predictable.
_MAX_PREFIX = 58
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_POLL = 1.0


# --------------------------------------------------------------------------- pure helpers


def migration_name_prefix(workflow: str, environment: str, version: str) -> str:
    """`lead-nurture.prod.to-1.5.0-`: the generateName of a migration. Lower case, `+build`
    metadata as `-` (as in WorkflowVersion names); raises ValueError when the result cannot
    be a DNS subdomain name."""
    prefix = f"{workflow}.{environment}.to-{version}".lower().replace("+", "-")
    if len(prefix) > _MAX_PREFIX - 1:
        prefix = prefix[: _MAX_PREFIX - 1].rstrip(".-")
    prefix += "-"
    sample = prefix + "x7k2p"  # what the API server makes of it
    if len(sample) > 253 or not all(_DNS_LABEL.match(label) for label in sample.split(".")):
        raise ValueError(
            f"{prefix!r} is not a valid object name prefix: workflow, environment and version "
            "must be lower-case letters, digits, '-' and '.'"
        )
    return prefix


def migration_object(
    workflow: str,
    environment: str,
    to_version: str,
    *,
    from_version: str | None = None,
    strategy: str | None = None,
    batch_size: int | None = None,
    interval: str | None = None,
    max_failures: int | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    """The WorkflowMigration to create. Options not given are left out of the spec, so the
    operator's defaults apply."""
    spec: dict[str, Any] = {
        "workflow": workflow,
        "environment": environment,
        "toVersion": to_version,
    }
    optional = {
        "fromVersion": from_version,
        "strategy": strategy,
        "batchSize": batch_size,
        "interval": interval,
        "maxFailures": max_failures,
    }
    spec.update({k: v for k, v in optional.items() if v is not None})
    if dry_run:
        spec["dryRun"] = True
    return {
        "apiVersion": kinds.API_VERSION,
        "kind": kinds.WORKFLOW_MIGRATION.kind,
        "metadata": {
            "generateName": migration_name_prefix(workflow, environment, to_version),
            "labels": {kinds.LABEL_WORKFLOW: workflow, kinds.LABEL_ENVIRONMENT: environment},
        },
        "spec": spec,
    }


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def progress_bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    """`[#######.....] 60% 600/1000`. Rounded down, so 100% means all done."""
    done = max(0, min(done, total)) if total > 0 else 0
    filled = width * done // total if total > 0 else 0
    percent = 100 * done // total if total > 0 else 0
    return f"[{'#' * filled}{'.' * (width - filled)}] {percent}% {done}/{total}"


def processed(progress: Mapping[str, Any]) -> int:
    """Runs handled so far (migrated, failed or skipped)."""
    if "remaining" in progress and "total" in progress:
        return max(_int(progress["total"]) - _int(progress["remaining"]), 0)
    return (
        _int(progress.get("migrated"))
        + _int(progress.get("failed"))
        + _int(progress.get("skipped"))
    )


def progress_line(status: Mapping[str, Any]) -> str:
    """The progress bar of a migration's status; `-` before the operator counted anything."""
    progress = status.get("progress") or {}
    if "total" not in progress:
        return "-"
    return progress_bar(processed(progress), _int(progress.get("total")))


def migration_progress(obj: Mapping[str, Any]) -> str:
    """`NAME [#######.....] 60% 600/1000, 4 failed`: one line for `flowpin status`."""
    status = obj.get("status") or {}
    failed = _int((status.get("progress") or {}).get("failed"))
    name = (obj.get("metadata") or {}).get("name", "")
    bar = progress_line(status)
    return (f"{name} {bar}" if bar != "-" else str(name)) + (f", {failed} failed" if failed else "")


def relative_time(text: str | None, now: datetime.datetime) -> str:
    """`in 4m10s` for a future RFC 3339 time, `now` for a past one, the text if unreadable."""
    if not text:
        return ""
    try:
        moment = parse_time(text)
    except ValueError:
        return str(text)
    if moment is None:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    seconds = int((moment - now).total_seconds())
    if seconds <= 0:
        return "now"
    return f"in {_human(seconds)}"


def _human(seconds: int) -> str:
    """Two units at most: `45s`, `4m10s`, `3h12m`, `2d5h`."""
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m{secs}s" if secs else f"{minutes}m"
    return f"{secs}s"


def plan_errors(obj: Mapping[str, Any]) -> list[str]:
    plan = (obj.get("status") or {}).get("plan") or {}
    return [str(e) for e in plan.get("errors") or []]


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'s' if count != 1 else ''}"


def _plan_counts(plan: Mapping[str, Any]) -> str:
    return (
        f"eligible {_int(plan.get('eligible'))} (ready {_int(plan.get('ready'))}, "
        f"deferred {_int(plan.get('deferred'))}), skipped {_int(plan.get('skipped'))}, "
        f"blocked {_int(plan.get('blockedCount', len(plan.get('blocked') or [])))}"
    )


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "") -> list[str]:
    """Columns padded to their widest cell, two spaces apart; no colour, no box."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return [
        (indent + "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True))).rstrip()
        for row in [header, *rows]
    ]


def _md(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_plan(plan: Mapping[str, Any], fmt: str = "text", name: str = "") -> str:
    """`status.plan` for people (text, markdown) or tools (json, unchanged)."""
    if fmt == "json":
        return json.dumps(dict(plan), indent=2)
    if fmt not in ("text", "markdown"):
        raise ValueError(f"unknown format {fmt!r}: expected {', '.join(PLAN_FORMATS)}")
    moves = list(plan.get("moves") or [])
    blocked = list(plan.get("blocked") or [])
    blocked_count = _int(plan.get("blockedCount", len(blocked)))
    unmapped = list(plan.get("unmapped") or [])
    errors = [str(e) for e in plan.get("errors") or []]
    target = plan.get("toVersion") or "?"
    more = blocked_count - len(blocked)
    if fmt == "markdown":
        lines = [f"### Migration plan{f' {_md(name)}' if name else ''} → {_md(target)}", ""]
        lines += [_plan_counts(plan), ""]
        if moves:
            lines += ["| From version | From step | To step | Runs |", "|---|---|---|---:|"]
            lines += [
                f"| {_md(m.get('fromVersion', ''))} | {_md(m.get('fromStep', ''))} | "
                f"{_md(m.get('toStep', ''))} | {_int(m.get('count'))} |"
                for m in moves
            ]
        else:
            lines.append("No runs to move.")
        if unmapped:
            lines += ["", "**Unmapped steps** (their runs stay on their version):", ""]
            lines += [
                f"- {_md(u.get('fromVersion', ''))} `{_md(u.get('fromStep', ''))}`: "
                f"{_plural(_int(u.get('count')), 'run')}: {_md(u.get('reason', ''))}"
                for u in unmapped
            ]
        if blocked:
            lines += ["", f"**Blocked runs** ({blocked_count}):", ""]
            lines += [
                f"- `{_md(b.get('run', ''))}` ({_md(b.get('version', ''))} at "
                f"`{_md(b.get('step', ''))}`): {_md(b.get('reason', ''))}"
                for b in blocked
            ]
            if more > 0:
                lines.append(f"- … and {more} more")
        if errors:
            lines += ["", "**Errors** (nothing will move):", ""]
            lines += [f"- {_md(e)}" for e in errors]
        return "\n".join(lines) + "\n"
    lines = [f"{name + ': ' if name else ''}plan to {target}", f"  {_plan_counts(plan)}"]
    if moves:
        rows = [
            [
                str(m.get("fromVersion", "")),
                str(m.get("fromStep", "")),
                "→",
                str(m.get("toStep", "")),
                str(_int(m.get("count"))),
            ]
            for m in moves
        ]
        lines += ["", *_table(["FROM VERSION", "FROM STEP", "", "TO STEP", "RUNS"], rows, "  ")]
    else:
        lines += ["", "  no runs to move"]
    if unmapped:
        lines += ["", "  unmapped steps (their runs stay on their version):"]
        lines += [
            f"    {u.get('fromVersion', '')} {u.get('fromStep', '')}: "
            f"{_plural(_int(u.get('count')), 'run')}: {u.get('reason', '')}"
            for u in unmapped
        ]
    if blocked:
        lines += ["", f"  blocked runs ({blocked_count}):"]
        lines += [
            f"    {b.get('run', '')} ({b.get('version', '')} at {b.get('step', '')}): "
            f"{b.get('reason', '')}"
            for b in blocked
        ]
        if more > 0:
            lines.append(f"    … and {more} more")
    if errors:
        lines += ["", "  errors (nothing will move):"]
        lines += [f"    {e}" for e in errors]
    return "\n".join(lines) + "\n"


def _spec_summary(spec: Mapping[str, Any]) -> str:
    strategy = str(spec.get("strategy") or "immediate")
    parts = [strategy]
    if spec.get("batchSize") is not None:
        parts.append(f"batches of {spec['batchSize']}")
    if spec.get("interval"):
        parts.append(f"every {spec['interval']}")
    if spec.get("maxFailures") is not None:
        parts.append(f"at most {_plural(_int(spec['maxFailures']), 'failure')}")
    flags = [f for f in ("dryRun", "approved", "paused", "cancel") if spec.get(f)]
    text = ", ".join(parts)
    return text + (f" [{' '.join(flags)}]" if flags else "")


def render_migration(obj: Mapping[str, Any], now: datetime.datetime) -> str:
    """One migration in detail: what moves where, its phase, progress, failures, plan."""
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    name = (obj.get("metadata") or {}).get("name", "")
    progress = status.get("progress") or {}
    plan = status.get("plan") or {}
    source = spec.get("fromVersion") or "every older version"
    rows = [
        (
            "workflow",
            f"{spec.get('workflow', '')} in {spec.get('environment', '')}: "
            f"{source} → {spec.get('toVersion', '')}",
        ),
        ("strategy", _spec_summary(spec)),
        ("phase", str(status.get("phase") or "Pending")),
    ]
    if status.get("message"):
        rows.append(("message", str(status["message"])))
    if progress:
        counts = ", ".join(
            f"{key} {_int(progress.get(key))}"
            for key in ("migrated", "failed", "skipped", "remaining")
        )
        if progress.get("notMoved"):
            counts += f", not moved {_int(progress.get('notMoved'))}"
        rows.append(("progress", f"{progress_line(status)}  {counts}"))
    if progress.get("eta") and str(status.get("phase")) not in FINAL_PHASES:
        rows.append(("eta", f"{relative_time(progress['eta'], now)} ({progress['eta']})"))
    if status.get("currentBatch") and str(status.get("phase")) not in FINAL_PHASES:
        rows.append(("batch", _plural(len(status["currentBatch"]), "run") + " under way"))
    if status.get("nextBatchAt") and str(status.get("phase")) not in FINAL_PHASES:
        rows.append(
            ("next batch", f"{relative_time(status['nextBatchAt'], now)} ({status['nextBatchAt']})")
        )
    if status.get("startedAt"):
        rows.append(("started", str(status["startedAt"])))
    if status.get("finishedAt"):
        rows.append(("finished", str(status["finishedAt"])))
    if plan:
        unmapped = len(plan.get("unmapped") or [])
        errors = len(plan.get("errors") or [])
        rows.append(
            (
                "plan",
                f"{_plan_counts(plan)}, {_plural(unmapped, 'unmapped step')}, "
                f"{_plural(errors, 'error')} (flowpin migrate plan {name})",
            )
        )
    width = max(len(key) for key, _ in rows) + 1
    lines = [name, *(f"  {(key + ':').ljust(width)} {value}" for key, value in rows)]
    failures = list(status.get("failures") or [])
    if failures:
        lines.append(f"  failures ({len(failures)}):")
        lines += [f"    {f.get('run', '')}: {f.get('reason', '')}" for f in failures]
    return "\n".join(lines) + "\n"


def render_migrations(items: Sequence[Mapping[str, Any]], now: datetime.datetime) -> str:
    """The table of `flowpin migrate status` without a name."""
    if not items:
        return "no migrations\n"

    def key(obj: Mapping[str, Any]) -> tuple[str, str, str]:
        spec = obj.get("spec") or {}
        created = str((obj.get("metadata") or {}).get("creationTimestamp") or "")
        return (str(spec.get("workflow", "")), str(spec.get("environment", "")), created)

    rows = []
    for obj in sorted(items, key=key):
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        progress = status.get("progress") or {}
        phase = str(status.get("phase") or "Pending")
        rows.append(
            [
                str((obj.get("metadata") or {}).get("name", "")),
                str(spec.get("workflow", "")),
                str(spec.get("environment", "")),
                str(spec.get("toVersion", "")),
                str(spec.get("strategy") or "immediate"),
                phase,
                progress_line(status),
                str(_int(progress.get("failed"))) if progress else "-",
                relative_time(progress.get("eta"), now) if phase not in FINAL_PHASES else "",
            ]
        )
    header = ["NAME", "WORKFLOW", "ENV", "TO", "STRATEGY", "PHASE", "PROGRESS", "FAILED", "ETA"]
    return "\n".join(_table(header, rows)) + "\n"


# --------------------------------------------------------------------------- cluster


def _exists(api: Any, plural: str, namespace: str, name: str) -> bool:
    from kubernetes.client.exceptions import ApiException

    try:
        api.get_namespaced_custom_object(kinds.GROUP, kinds.VERSION, namespace, plural, name)
    except ApiException as error:
        if error.status == 404:
            return False
        raise click.ClickException(
            f"reading {plural}/{name}: {error.status} {error.reason}"
        ) from error
    return True


def _migration(api: Any, namespace: str, name: str) -> dict[str, Any]:
    return _get(api, kinds.WORKFLOW_MIGRATION.plural, namespace, name)


def _list(api: Any, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = api.list_namespaced_custom_object(
        kinds.GROUP, kinds.VERSION, namespace, kinds.WORKFLOW_MIGRATION.plural
    )["items"]
    return items


def _patch_spec(api: Any, namespace: str, name: str, spec: dict[str, Any]) -> None:
    api.patch_namespaced_custom_object(
        kinds.GROUP,
        kinds.VERSION,
        namespace,
        kinds.WORKFLOW_MIGRATION.plural,
        name,
        {"spec": spec},
    )


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _seconds(text: str, hint: str) -> float:
    try:
        return parse_duration(text).total_seconds()
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint=hint) from error


def _phase(obj: Mapping[str, Any]) -> str:
    return str((obj.get("status") or {}).get("phase") or "Pending")


def _follow(api: Any, namespace: str, name: str, limit: float | None) -> None:
    """Print each change of phase or progress (stderr) until a final phase; exit 0 on
    Succeeded, 1 otherwise (Failed, Cancelled, or still going at the deadline)."""
    deadline = None if limit is None else time.monotonic() + limit
    last: tuple[str, str] | None = None
    hinted = False
    try:
        while True:
            obj = _migration(api, namespace, name)
            status = obj.get("status") or {}
            phase = _phase(obj)
            seen = (phase, progress_line(status))
            if seen != last:
                click.echo(f"  {phase}  {seen[1]}", err=True)
                last = seen
            if phase == "AwaitingApproval" and not hinted:
                click.echo(f"  waiting for approval: flowpin migrate approve {name}", err=True)
                hinted = True
            if phase in FINAL_PHASES:
                click.echo(f"{name}: {phase}: {status.get('message', '')}")
                sys.exit(0 if phase == "Succeeded" else 1)
            if deadline is not None and time.monotonic() > deadline:
                click.echo(f"{name}: still {phase}; follow it: flowpin migrate status {name}")
                sys.exit(1)
            time.sleep(_POLL)
    except KeyboardInterrupt:
        click.echo(f"\nstopped following; {name} goes on (flowpin migrate status {name})", err=True)
        sys.exit(130)


def _wait_for_plan(api: Any, namespace: str, name: str, limit: float) -> dict[str, Any]:
    deadline = time.monotonic() + limit
    while True:
        obj = _migration(api, namespace, name)
        if (obj.get("status") or {}).get("plan") is not None:
            return obj
        if time.monotonic() > deadline:
            click.echo(
                f"{name}: no plan after {format_duration(datetime.timedelta(seconds=limit))}; "
                f"is the operator running? Look later: flowpin migrate plan {name}",
                err=True,
            )
            sys.exit(1)
        time.sleep(_POLL)


# --------------------------------------------------------------------------- commands


class _ClusterGroup(click.Group):
    """Every subcommand talks to the API server: its failures become one-line errors."""

    def invoke(self, ctx: click.Context) -> Any:
        with api_errors():
            return super().invoke(ctx)


@click.group("migrate", cls=_ClusterGroup)
def migrate() -> None:
    """Move in-flight runs of a workflow onto another version (WorkflowMigrations)."""


@migrate.command("start")
@click.argument("workflow")
@click.option("--env", "env", required=True, help="Environment.")
@click.option("--to", "to_version", required=True, help="Target version.")
@click.option("--from", "from_version", default=None, help="Only runs on this version.")
@click.option(
    "--strategy",
    type=click.Choice(["immediate", "gradual", "manual"]),
    default=None,
    help="immediate: all eligible runs in batches; gradual: a batch every --interval; "
    "manual: plan, then wait for `flowpin migrate approve`. Default: the operator's.",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Runs per batch.")
@click.option("--interval", default=None, help="Pause between gradual batches, say 30s.")
@click.option(
    "--max-failures",
    type=click.IntRange(min=0),
    default=None,
    help="Failed runs tolerated; one more aborts the migration.",
)
@click.option("--dry-run", is_flag=True, help="Only plan; print the plan. Approve it to start it.")
@click.option(
    "--wait/--no-wait",
    default=False,
    help="Follow the migration until it ends (exit 1 unless it succeeds).",
)
@click.option(
    "--timeout",
    default=None,
    help="How long to wait for the plan (--dry-run, default 60s) or the end (--wait, default "
    "no limit).",
)
@namespace_option
def start(
    workflow: str,
    env: str,
    to_version: str,
    from_version: str | None,
    strategy: str | None,
    batch_size: int | None,
    interval: str | None,
    max_failures: int | None,
    dry_run: bool,
    wait: bool,
    timeout: str | None,
    namespace: str | None,
) -> None:
    """Create a WorkflowMigration moving WORKFLOW's runs in ENV to version --to; prints its
    name."""
    if interval is not None:
        _seconds(interval, "--interval")
    limit = _seconds(timeout, "--timeout") if timeout is not None else None
    if from_version is not None and from_version == to_version:
        raise click.BadParameter("--from and --to name the same version", param_hint="--from")
    try:
        body = migration_object(
            workflow,
            env,
            to_version,
            from_version=from_version,
            strategy=strategy,
            batch_size=batch_size,
            interval=interval,
            max_failures=max_failures,
            dry_run=dry_run,
        )
    except ValueError as error:
        raise click.UsageError(str(error)) from error
    namespace = namespace or current_namespace()
    api = _api()
    deployment = kinds.deployment_object_name(workflow, env)
    if not _exists(api, kinds.WORKFLOW_DEPLOYMENT.plural, namespace, deployment):
        raise click.UsageError(
            f"{workflow} is not deployed in {env}: no WorkflowDeployment {deployment} in "
            f"namespace {namespace} (kubectl get wfd -n {namespace})"
        )
    for flag, version in (("--to", to_version), ("--from", from_version)):
        if version is None:
            continue
        version_name = kinds.version_object_name(workflow, version)
        if not _exists(api, kinds.WORKFLOW_VERSION.plural, namespace, version_name):
            raise click.BadParameter(
                f"{workflow} has no version {version}: no WorkflowVersion {version_name} in "
                f"namespace {namespace} (kubectl get wfv -l {kinds.LABEL_WORKFLOW}={workflow})",
                param_hint=flag,
            )
    created = api.create_namespaced_custom_object(
        kinds.GROUP, kinds.VERSION, namespace, kinds.WORKFLOW_MIGRATION.plural, body
    )
    name = str(created["metadata"]["name"])
    click.echo(name)
    if dry_run:
        obj = _wait_for_plan(api, namespace, name, 60 if limit is None else limit)
        plan = (obj.get("status") or {})["plan"]
        click.echo(render_plan(plan, "text", name).rstrip("\n"))
        if plan_errors(obj):
            sys.exit(1)
        if not _int(plan.get("eligible")):
            click.echo("dry run: no run would move; nothing to approve", err=True)
            return
        click.echo(f"dry run: start it with `flowpin migrate approve {name}`", err=True)
        if not wait:
            return
    elif not wait:
        click.echo(f"follow it: flowpin migrate status {name} --watch", err=True)
        return
    _follow(api, namespace, name, limit)


@migrate.command("plan")
@click.argument("name")
@click.option("--format", "fmt", type=click.Choice(PLAN_FORMATS), default="text", show_default=True)
@namespace_option
def plan_command(name: str, fmt: str, namespace: str | None) -> None:
    """Print the plan of migration NAME: where the runs go and which cannot move. Exit 1 when
    the plan has errors (nothing will move)."""
    namespace = namespace or current_namespace()
    obj = _migration(_api(), namespace, name)
    plan = (obj.get("status") or {}).get("plan")
    if plan is None:
        raise click.ClickException(
            f"{name} has no plan yet ({_phase(obj)}); is the operator running?"
        )
    click.echo(render_plan(plan, fmt, name).rstrip("\n"))
    sys.exit(1 if plan.get("errors") else 0)


def _refuse_final(obj: Mapping[str, Any], name: str, verb: str) -> None:
    phase = _phase(obj)
    if phase in FINAL_PHASES:
        raise click.ClickException(f"{name} is {phase} already: nothing to {verb}")


@migrate.command("approve")
@click.argument("name")
@namespace_option
def approve(name: str, namespace: str | None) -> None:
    """Approve migration NAME: a manual migration, or a dry run's plan, starts."""
    namespace = namespace or current_namespace()
    api = _api()
    obj = _migration(api, namespace, name)
    _refuse_final(obj, name, "approve")
    if (obj.get("status") or {}).get("plan") is None:
        raise click.ClickException(
            f"{name} has no plan yet; approve it once `flowpin migrate plan {name}` shows one"
        )
    errors = plan_errors(obj)
    if errors:
        raise click.ClickException(
            f"{name} cannot start: its plan has {_plural(len(errors), 'error')} and would move "
            f"nothing:\n  " + "\n  ".join(errors)
        )
    _patch_spec(api, namespace, name, {"approved": True, "dryRun": False})
    click.echo(f"{name}: approved; follow it: flowpin migrate status {name} --watch")


def _toggle(name: str, namespace: str | None, verb: str, spec: dict[str, Any], done: str) -> None:
    namespace = namespace or current_namespace()
    api = _api()
    _refuse_final(_migration(api, namespace, name), name, verb)
    _patch_spec(api, namespace, name, spec)
    click.echo(f"{name}: {done}")


@migrate.command("pause")
@click.argument("name")
@namespace_option
def pause(name: str, namespace: str | None) -> None:
    """Pause migration NAME after the batch under way."""
    _toggle(name, namespace, "pause", {"paused": True}, "pause requested")


@migrate.command("resume")
@click.argument("name")
@namespace_option
def resume(name: str, namespace: str | None) -> None:
    """Resume a paused migration NAME."""
    _toggle(name, namespace, "resume", {"paused": False}, "resume requested")


@migrate.command("cancel")
@click.argument("name")
@namespace_option
def cancel(name: str, namespace: str | None) -> None:
    """Stop migration NAME; runs already moved stay moved."""
    _toggle(
        name,
        namespace,
        "cancel",
        {"cancel": True},
        "cancel requested; runs already moved stay on the new version",
    )


def _watch(render: Callable[[], str], done: Callable[[], bool]) -> None:
    """Redraw `render()` until `done()` or Ctrl-C: in place on a terminal, else each frame
    that differs from the last (for logs and tests)."""
    try:
        if sys.stdout.isatty():
            from rich.console import Console
            from rich.live import Live
            from rich.text import Text

            with Live(Text(render()), console=Console(), refresh_per_second=1) as live:
                while not done():
                    time.sleep(2)
                    live.update(Text(render()))
            return
        last = ""
        while True:
            frame = render()
            if frame != last:
                click.echo(frame.rstrip("\n") + "\n")
                last = frame
            if done():
                return
            time.sleep(2)
    except KeyboardInterrupt:
        return


@migrate.command("status")
@click.argument("name", required=False)
@namespace_option
@click.option(
    "--watch",
    is_flag=True,
    help="Redraw until Ctrl-C (with NAME: until it ends; exit 1 unless it succeeds).",
)
def status(name: str | None, namespace: str | None, watch: bool) -> None:
    """Migrations in a table, or migration NAME in detail."""
    namespace = namespace or current_namespace()
    api = _api()
    if name is None:

        def table() -> str:
            return render_migrations(_list(api, namespace), _now())

        if watch:
            _watch(table, lambda: False)
        else:
            click.echo(table().rstrip("\n"))
        return
    last: dict[str, Any] = {}

    def detail() -> str:
        last.clear()
        last.update(_migration(api, namespace, name))
        return render_migration(last, _now())

    if not watch:
        click.echo(detail().rstrip("\n"))
        return
    _watch(detail, lambda: _phase(last) in FINAL_PHASES)
    phase = _phase(last)
    if phase in FINAL_PHASES:
        sys.exit(0 if phase == "Succeeded" else 1)
