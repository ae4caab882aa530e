"""The `flowpin` command. Thin: parse arguments, call the library, print."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Literal

import click
import yaml

from controller import __version__
from controller.api.schemas import load_schema


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="flowpin")
def cli() -> None:
    """flowpin: versioned automation workflows, promoted by git."""


@cli.command()
@click.option(
    "--namespace",
    "namespaces",
    multiple=True,
    help="Watch only this namespace (repeatable). Default: every namespace.",
)
@click.option("--port", default=8080, show_default=True, help="HTTP port (health, webhooks).")
@click.option("--identity", default=None, help="Name of this replica in the leader Lease.")
@click.option(
    "--lease-name", default="flowpin-operator", show_default=True, help="Leader Lease name."
)
@click.option(
    "--lease-namespace",
    default=None,
    help="Namespace of the leader Lease. Default: $POD_NAMESPACE or flowpin-system.",
)
@click.option(
    "--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option("--verbose", is_flag=True, help="Debug logging.")
def operator(
    namespaces: tuple[str, ...],
    port: int,
    identity: str | None,
    lease_name: str,
    lease_namespace: str | None,
    log_format: Literal["text", "json"],
    verbose: bool,
) -> None:
    """Run the operator against the cluster of the current kubeconfig."""
    # Imported here: kopf and the Kubernetes client are slow to import and only this needs them.
    from controller.operator.main import main as run_operator
    from controller.operator.settings import OperatorSettings

    settings = OperatorSettings(
        namespaces=namespaces,
        http_port=port,
        lease_name=lease_name,
        log_format=log_format,
        verbose=verbose,
    )
    if identity:
        settings = replace(settings, identity=identity)
    if lease_namespace:
        settings = replace(settings, lease_namespace=lease_namespace)
    run_operator(settings)


@cli.command()
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


def main() -> None:
    cli(prog_name="flowpin")
