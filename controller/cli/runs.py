"""CLI commands for runs: start one, list them (the dead-letter view with --failed),
resume a failed one, cancel one."""

from __future__ import annotations

import datetime
import json
import sys
import time
from typing import Any

import click

from controller.api import kinds
from controller.cli.cluster import _api, _get, current_namespace, namespace_option
from controller.model.durations import parse_duration
from controller.model.triggers import run_object

TERMINAL = ("Succeeded", "Failed", "Cancelled")


def parse_inputs(pairs: tuple[str, ...], inputs_json: str | None) -> dict[str, Any]:
    """`key=value` pairs (a value that parses as JSON is taken as JSON: `count=3` is a
    number, `tags=["a"]` a list; anything else is a string), over `--inputs-json`."""
    found: dict[str, Any] = {}
    if inputs_json:
        try:
            loaded = json.loads(inputs_json)
        except ValueError as error:
            raise click.BadParameter(f"not JSON: {error}", param_hint="--inputs-json") from error
        if not isinstance(loaded, dict):
            raise click.BadParameter("must be a JSON object", param_hint="--inputs-json")
        found.update(loaded)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not key=value", param_hint="--input")
        try:
            found[key] = json.loads(value)
        except ValueError:
            found[key] = value
    return found


@click.command("run")
@click.argument("workflow")
@click.option("--env", "env", required=True, help="Environment.")
@click.option("--input", "pairs", multiple=True, help="An input, key=value (repeatable).")
@click.option("--inputs-json", default=None, help="All inputs as one JSON object.")
@click.option("--version", default=None, help="Version (default: the environment's active one).")
@click.option(
    "--wait", is_flag=True, help="Follow the run until it ends; exit 1 unless it succeeds."
)
@click.option("--timeout", default="10m", show_default=True, help="How long --wait waits.")
@namespace_option
def run_command(
    workflow: str,
    env: str,
    pairs: tuple[str, ...],
    inputs_json: str | None,
    version: str | None,
    wait: bool,
    timeout: str,
    namespace: str | None,
) -> None:
    """Start a run of WORKFLOW in an environment; prints the run's name."""
    namespace = namespace or current_namespace()
    inputs = parse_inputs(pairs, inputs_json)
    api = _api()
    created = api.create_namespaced_custom_object(
        kinds.GROUP,
        kinds.VERSION,
        namespace,
        kinds.WORKFLOW_RUN.plural,
        run_object(workflow, env, inputs, version, datetime.datetime.now(datetime.UTC)),
    )
    name = created["metadata"]["name"]
    click.echo(name)
    if not wait:
        return
    deadline = time.monotonic() + parse_duration(timeout).total_seconds()
    last = None
    while True:
        obj = _get(api, kinds.WORKFLOW_RUN.plural, namespace, name)
        status = obj.get("status") or {}
        seen = (status.get("phase"), status.get("currentStep"))
        if seen != last:
            click.echo(
                f"  {status.get('phase', 'Pending')}  {status.get('currentStep') or ''}", err=True
            )
            last = seen
        if status.get("phase") in TERMINAL:
            click.echo(f"{name}: {status['phase']}: {status.get('message', '')}")
            sys.exit(0 if status["phase"] == "Succeeded" else 1)
        if time.monotonic() > deadline:
            click.echo(f"{name}: still {status.get('phase', 'Pending')} after {timeout}", err=True)
            sys.exit(1)
        time.sleep(0.5)


@click.command("runs")
@click.argument("workflow", required=False)
@click.option("--env", "env", default=None, help="Only this environment.")
@click.option("--failed", is_flag=True, help="Only failed runs: the dead-letter view.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@namespace_option
def runs_command(
    workflow: str | None, env: str | None, failed: bool, fmt: str, namespace: str | None
) -> None:
    """List runs, newest first. --failed shows where each failed and why; resume one with
    `flowpin retry-run RUN`."""
    namespace = namespace or current_namespace()
    # Filtered here, not by label: runs created with kubectl need not carry the labels.
    items = _api().list_namespaced_custom_object(
        kinds.GROUP, kinds.VERSION, namespace, kinds.WORKFLOW_RUN.plural
    )["items"]
    items = [
        run
        for run in items
        if (not workflow or run["spec"].get("workflow") == workflow)
        and (not env or run["spec"].get("environment") == env)
        and (not failed or (run.get("status") or {}).get("phase") == "Failed")
    ]
    items.sort(key=lambda run: run["metadata"].get("creationTimestamp", ""), reverse=True)
    rows = []
    for run in items:
        status = run.get("status") or {}
        step = status.get("currentStep") or ""
        error = next(
            (
                e.get("error")
                for e in status.get("steps") or []
                if e.get("id") == step and e.get("error")
            ),
            None,
        )
        rows.append(
            {
                "name": run["metadata"]["name"],
                "workflow": run["spec"].get("workflow"),
                "environment": run["spec"].get("environment"),
                "version": status.get("version"),
                "phase": status.get("phase", "Pending"),
                "step": step,
                "message": error or status.get("message", ""),
                "created": run["metadata"].get("creationTimestamp"),
            }
        )
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no failed runs" if failed else "no runs")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None)
    for column in ("NAME", "WORKFLOW", "ENV", "VERSION", "PHASE", "STEP", "MESSAGE"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            *(
                str(row[k] or "")
                for k in ("name", "workflow", "environment", "version", "phase", "step", "message")
            )
        )
    Console(width=200).print(table)


def _annotate_run(namespace: str, name: str, annotations: dict[str, str]) -> None:
    _api().patch_namespaced_custom_object(
        kinds.GROUP,
        kinds.VERSION,
        namespace,
        kinds.WORKFLOW_RUN.plural,
        name,
        {"metadata": {"annotations": annotations}},
    )


@click.command("retry-run")
@click.argument("run")
@namespace_option
def retry_run(run: str, namespace: str | None) -> None:
    """Resume a failed run at the step that failed, with fresh retries."""
    namespace = namespace or current_namespace()
    api = _api()
    obj = _get(api, kinds.WORKFLOW_RUN.plural, namespace, run)
    status = obj.get("status") or {}
    if status.get("phase") != "Failed":
        raise click.UsageError(
            f"{run} is {status.get('phase', 'Pending')}; only a Failed run can be retried"
        )
    requested = datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds")
    _annotate_run(namespace, run, {kinds.ANNOTATION_RETRY_RUN: requested})
    click.echo(f"{run}: resuming at step {status.get('currentStep')}")


@click.command("cancel")
@click.argument("run")
@namespace_option
def cancel_run(run: str, namespace: str | None) -> None:
    """Cancel a run (sets spec.cancel); it stops at the next step boundary."""
    namespace = namespace or current_namespace()
    api = _api()
    _get(api, kinds.WORKFLOW_RUN.plural, namespace, run)
    api.patch_namespaced_custom_object(
        kinds.GROUP,
        kinds.VERSION,
        namespace,
        kinds.WORKFLOW_RUN.plural,
        run,
        {"spec": {"cancel": True}},
    )
    click.echo(f"{run}: cancel requested")
