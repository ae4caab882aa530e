"""Running the operator: HTTP server, leader election, then kopf.

Order matters: the HTTP server starts first so that liveness probes pass while a standby
waits; kopf starts only once this replica holds the Lease, and the process exits when the
Lease is lost (the Deployment restarts it as a standby), as controller-runtime managers do.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import kopf
from kubernetes import client, config

from controller.api import kinds
from controller.engine.http import AiohttpCaller
from controller.operator import deployments, migrations, runs, sources, triggers
from controller.operator.deployments import DeploymentController
from controller.operator.http import OperatorHttpServer
from controller.operator.kube import Kube
from controller.operator.leader import LeaderElector
from controller.operator.metrics import Metrics
from controller.operator.migrations import MigrationController
from controller.operator.runs import RunController
from controller.operator.settings import OperatorSettings
from controller.operator.sync import SourceSyncer
from controller.operator.webhooks import add_git_push_route, kube_secret_reader

logger = logging.getLogger("flowpin.operator")


def kopf_settings_for(settings: OperatorSettings) -> kopf.OperatorSettings:
    """Production settings for kopf: bounded watches, events posted, no peering."""
    kopf_settings = kopf.OperatorSettings()
    kopf_settings.watching.server_timeout = settings.watch_server_timeout
    kopf_settings.watching.client_timeout = settings.watch_client_timeout
    kopf_settings.watching.connect_timeout = settings.connect_timeout
    kopf_settings.networking.request_timeout = settings.connect_timeout * 2
    kopf_settings.posting.enabled = True
    kopf_settings.posting.level = logging.WARNING  # our own events say what happened
    # Per-object workers are cheap tasks: no limit, and let idle ones go quickly (kopf's 5 s
    # default with a limit throttled the caches to a few objects per second).
    kopf_settings.queueing.worker_limit = settings.max_workers
    kopf_settings.queueing.idle_timeout = 0.5
    kopf_settings.persistence.finalizer = "flowpin.dev/finalizer"
    # kopf hides annotations under its storage prefix from change detection, so its
    # bookkeeping must not share `flowpin.dev/` with annotations users set (requestedAt).
    kopf_settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix="kopf.flowpin.dev"
    )
    kopf_settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="kopf.flowpin.dev", key="last-handled-configuration"
    )
    kopf_settings.peering.standalone = True
    return kopf_settings


async def prime_caches(
    kube: Kube,
    namespaces: tuple[str, ...],
    deployment_controller: DeploymentController,
    run_controller: RunController,
    migration_controller: MigrationController,
) -> None:
    """Fill the caches with one LIST each before any worker runs: kopf delivers its initial
    listing one object at a time, and a run decided against a half-filled cache would be
    failed ("no active version") or counted from a partial view."""
    for environment in await kube.list_everywhere("Environment", namespaces):
        deployment_controller.on_environment("ADDED", environment)
    for deployment in await kube.list_everywhere("WorkflowDeployment", namespaces):
        deployment_controller.on_deployment("ADDED", deployment)
    for run in await kube.list_everywhere("WorkflowRun", namespaces):
        run_controller.on_run("ADDED", run)
    for migration in await kube.list_everywhere("WorkflowMigration", namespaces):
        migration_controller.on_migration("ADDED", migration)
    run_controller.start()
    migration_controller.start()


async def run(
    settings: OperatorSettings, *, stop: asyncio.Event | None = None, signals: bool = False
) -> None:
    """The operator until `stop` is set (or the Lease is lost). `signals`: SIGINT and SIGTERM
    set `stop`, also while kopf runs (it installs handlers of its own)."""
    config.load_config()  # type: ignore[no-untyped-call]
    elector = LeaderElector(client.CoordinationV1Api(), settings)
    kopf_ready = asyncio.Event()  # set by kopf once its startup is done
    metrics = Metrics()
    kube = Kube()

    def leading() -> bool:
        return elector.is_leader and kopf_ready.is_set()

    server = OperatorHttpServer(
        settings.http_host,
        settings.http_port,
        # Ready = able to serve: the API server answers and, on the leader, kopf is up. A
        # standby is ready too (readiness is not leadership; see docs/install.md).
        is_ready=lambda: elector.connected and (not elector.is_leader or kopf_ready.is_set()),
        is_leader=leading,
        identity=settings.identity,
        leader_address=lambda: elector.leader_address,
        metrics=lambda: metrics.render({"flowpin_api_writes_total": kube.writes}),
    )
    syncer = SourceSyncer(kube, settings.cache_dir, metrics=metrics)
    source_registry = sources.SourceRegistry()
    handlers = kopf.OperatorRegistry()
    # A registry of our own (not kopf's global one) starts empty: add kopf's login via the
    # Kubernetes client, which reads the same kubeconfig or in-cluster token as we do.
    kopf.on.login(registry=handlers)(kopf.login_via_client)
    sources.register(handlers, syncer, source_registry)
    deployment_controller = DeploymentController(kube, metrics, notes=syncer.record_note)
    deployments.register(handlers, deployment_controller)
    http_caller = AiohttpCaller()
    run_controller = RunController(
        kube,
        http_caller,
        deployment_of=lambda ns, name: deployment_controller.cache.deployments.get((ns, name)),
        environment_of=lambda ns, name: deployment_controller.cache.environments.get((ns, name)),
        metrics=metrics,
        workers=settings.run_workers,
    )
    runs.register(handlers, run_controller)
    deployment_controller.run_counts = run_controller.counts_by_version
    deployment_controller.cancel_runs = run_controller.cancel_runs
    deployment_controller.canary_runs = run_controller.canary_runs
    run_controller.on_counts_changed = lambda ns, workflow, env: deployment_controller.enqueue(
        [(ns, kinds.deployment_object_name(workflow, env))]
    )
    migration_controller = MigrationController(kube, run_controller, metrics)
    migrations.register(handlers, migration_controller)
    deployment_controller.create_migration = migration_controller.create
    scheduler = triggers.Scheduler(run_controller)
    triggers.register(handlers, scheduler)
    triggers.add_run_webhook_route(server.app, run_controller)
    add_git_push_route(server.app, source_registry, kube_secret_reader(kube))
    port = await server.start()
    # Where a standby forwards webhooks to while this replica leads (the Deployment sets
    # POD_IP); without it, a standby answers webhooks 503.
    pod_ip = os.environ.get("POD_IP")
    if pod_ip:
        host = f"[{pod_ip}]" if ":" in pod_ip else pod_ip
        elector.advertise = f"http://{host}:{port}"
    logger.info("http server on %s:%d (/healthz, /readyz, /leaderz)", settings.http_host, port)
    stop = stop or asyncio.Event()
    try:
        acquiring = asyncio.create_task(elector.acquire())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({acquiring, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            acquiring.cancel()
            return
        stopping.cancel()

        kopf_stop = asyncio.Event()

        async def stop_workers() -> None:
            """Our workers stop before kopf: when the lease is lost, so that two replicas
            never call out for the same run; on SIGTERM, because kopf waits 5 s for tasks it
            did not start before it cancels them."""
            await migration_controller.stop()
            await run_controller.stop()
            await deployment_controller.stop()
            await scheduler.queue.stop()

        async def watch_leadership() -> None:
            try:
                await elector.keep()  # returns (never raises) once this replica stops leading
                await stop_workers()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("stopping after the lease was lost")
            finally:
                kopf_stop.set()

        async def watch_stop() -> None:
            await stop.wait()
            try:
                await stop_workers()
            finally:
                kopf_stop.set()

        async def reclaim_signals() -> None:
            """kopf's own handlers would stop kopf first and leave our workers to its 5 s
            wait for tasks it did not start; once it is ready, the signals are ours again."""
            await kopf_ready.wait()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)

        # Renewal starts before the caches are primed: the term runs from the acquisition.
        tasks = [
            asyncio.create_task(watch_leadership()),
            asyncio.create_task(watch_stop()),
        ]
        if signals:
            tasks.append(asyncio.create_task(reclaim_signals()))
        try:
            await prime_caches(
                kube,
                settings.namespaces,
                deployment_controller,
                run_controller,
                migration_controller,
            )
            if not kopf_stop.is_set():  # not stopped nor lost while priming
                await kopf.operator(
                    settings=kopf_settings_for(settings),
                    registry=handlers,
                    clusterwide=not settings.namespaces,
                    namespaces=settings.namespaces,
                    standalone=True,
                    stop_flag=kopf_stop,
                    ready_flag=kopf_ready,
                )
        finally:
            lost = not elector.is_leader
            for task in tasks:
                task.cancel()
            await stop_workers()
            await http_caller.close()
        if not stop.is_set() and lost:
            raise SystemExit("lost the leader lease; exiting so that a standby can lead")
        if not lost:  # stopped cleanly (SIGTERM): let a standby lead without waiting 15 s
            await elector.release()
    finally:
        await server.stop()


class RetriesAreWarnings(logging.Filter):
    """kopf logs every retried API request at ERROR ("Request attempt 1 failed; will retry"),
    such as the 429 "storage is (re)initializing" of an API server that is starting. A retry
    is not an error: it is shown as a WARNING; the last attempt ("escalating") stays ERROR."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and "failed; will retry" in record.getMessage():
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def main(settings: OperatorSettings) -> None:
    """Blocking entry point for `flowpin operator`; SIGINT/SIGTERM stop it cleanly."""
    kopf.configure(
        verbose=settings.verbose,
        log_format=kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.FULL,
        log_prefix=True,
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(RetriesAreWarnings())
    if not settings.verbose:
        # kopf logs a line per handled watch event ("Handler 'cache-…' succeeded"): noise
        # that costs a sixth of the event loop under load. Our own loggers say what matters.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)

    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run(settings, stop=stop, signals=True)

    asyncio.run(_main())
