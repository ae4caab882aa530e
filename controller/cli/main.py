"""The `flowpin` command. Thin: parse arguments, call the library, print."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import replace
from typing import Literal

import click

from controller import __version__
from controller.cli import cluster, interop, language, migrate, runs


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="flowpin")
def cli() -> None:
    """flowpin: versioned automation workflows, promoted by git."""


def _http_address(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """An address to listen on (IPv4, IPv6 with or without brackets, or a host name that
    resolves), without brackets."""
    address = value.strip()
    if address.startswith("[") and address.endswith("]"):
        address = address[1:-1]
    try:
        ipaddress.ip_address(address)
    except ValueError:
        try:
            socket.getaddrinfo(address, None, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as error:
            message = f"{value!r} is not an address to listen on: {error}"
            raise click.BadParameter(message) from None
    return address


@cli.command()
@click.option(
    "--namespace",
    "namespaces",
    multiple=True,
    help="Watch only this namespace (repeatable). Default: every namespace.",
)
@click.option("--port", default=8080, show_default=True, help="HTTP port (health, webhooks).")
@click.option(
    "--http-address",
    default="0.0.0.0",
    show_default=True,
    callback=_http_address,
    help="Address the HTTP server (health, metrics, webhooks) listens on, e.g. 127.0.0.1 "
    "for loopback only or :: for IPv6.",
)
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
    http_address: str,
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
        http_host=http_address,
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


for command in (
    language.validate,
    language.versions,
    language.schema,
    language.diff_command,
    language.plan,
    cluster.sync,
    cluster.status,
    cluster.approve,
    cluster.rollback,
    cluster.release,
    cluster.retry,
    cluster.history,
    cluster.promote,
    cluster.abort,
    migrate.migrate,
    runs.run_command,
    runs.runs_command,
    runs.retry_run,
    runs.cancel_run,
    interop.export_command,
    interop.import_command,
):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="flowpin")
