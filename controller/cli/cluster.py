"""CLI commands against the cluster of the current kubeconfig context."""

from __future__ import annotations

import datetime
import sys
import time
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
