"""The six flowpin kinds, their names, labels and annotations: the vocabulary shared by
the CRD generator, the operator, the CLI and the tests."""

from __future__ import annotations

from dataclasses import dataclass, field

GROUP = "flowpin.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CATEGORY = "flowpin"

LABEL_SOURCE = f"{GROUP}/source"
LABEL_WORKFLOW = f"{GROUP}/workflow"
LABEL_ENVIRONMENT = f"{GROUP}/environment"
LABEL_VERSION = f"{GROUP}/version"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "flowpin"

ANNOTATION_REQUESTED_AT = f"{GROUP}/requestedAt"
ANNOTATION_APPROVED_VERSION = f"{GROUP}/approved-version"
# `flowpin retry-run`: a failed run resumes at its failed step when this changes.
ANNOTATION_RETRY_RUN = f"{GROUP}/retry-run"
# Canary control (`flowpin promote --full`, `flowpin abort`): the canary version they act on.
ANNOTATION_PROMOTE_FULL = f"{GROUP}/promote-full"
ANNOTATION_ABORT = f"{GROUP}/abort"
# Holds a run until its outcome is folded into its version's counts (model/runstats.py).
FINALIZER_RUN_COUNTS = f"{GROUP}/run-counts"


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    json_path: str
    type: str = "string"
    description: str = ""
    priority: int = 0


@dataclass(frozen=True)
class Kind:
    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    description: str
    columns: tuple[PrinterColumn, ...] = field(default_factory=tuple)

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


def _age() -> PrinterColumn:
    return PrinterColumn("Age", ".metadata.creationTimestamp", "date")


def _ready() -> PrinterColumn:
    return PrinterColumn(
        "Ready", '.status.conditions[?(@.type=="Ready")].status', description="Ready condition"
    )


WORKFLOW_SOURCE = Kind(
    kind="WorkflowSource",
    plural="workflowsources",
    singular="workflowsource",
    short_names=("wfsrc",),
    description=(
        "Where flowpin reads workflows: a git repository, a ref and a path. The controller "
        "mirrors every workflow version, environment and deployment found there."
    ),
    columns=(
        PrinterColumn("URL", ".spec.url"),
        PrinterColumn("Ref", ".spec.ref.branch"),
        PrinterColumn("Commit", ".status.artifact.commit", description="last synced commit"),
        PrinterColumn("Versions", ".status.counts.versions", "integer"),
        _ready(),
        PrinterColumn(
            "Status",
            '.status.conditions[?(@.type=="Ready")].message',
            priority=1,
        ),
        _age(),
    ),
)

WORKFLOW_VERSION = Kind(
    kind="WorkflowVersion",
    plural="workflowversions",
    singular="workflowversion",
    short_names=("wfv",),
    description=(
        "An immutable snapshot of one version of a workflow, mirrored from git. Its spec "
        "cannot change once created."
    ),
    columns=(
        PrinterColumn("Workflow", ".spec.workflow"),
        PrinterColumn("Version", ".spec.version"),
        PrinterColumn("Change", ".spec.facts.changeClass", description="vs the previous version"),
        PrinterColumn("Phase", ".status.phase"),
        PrinterColumn("Runs", ".status.runs.total", "integer"),
        PrinterColumn(
            "Orphaned", ".status.orphaned", "boolean", description="gone from git history"
        ),
        PrinterColumn("Commit", ".spec.git.commit", priority=1),
        _age(),
    ),
)

ENVIRONMENT = Kind(
    kind="Environment",
    plural="environments",
    singular="environment",
    short_names=("wfenv",),
    description=(
        "An environment (dev, staging, prod, ...): its promotion policy, rollout and "
        "in-flight defaults, and the version each workflow is pinned to. Mirrored from git."
    ),
    columns=(
        PrinterColumn("From", ".spec.promotion.from", description="upstream environment"),
        PrinterColumn("Approval", ".spec.promotion.approval"),
        PrinterColumn("Rollout", ".spec.rollout.strategy"),
        PrinterColumn("Deployments", ".status.deployments", "integer"),
        _ready(),
        _age(),
    ),
)

WORKFLOW_DEPLOYMENT = Kind(
    kind="WorkflowDeployment",
    plural="workflowdeployments",
    singular="workflowdeployment",
    short_names=("wfd",),
    description=(
        "One workflow in one environment: the version git pins (spec.version) and the version "
        "that is active, with the gates, rollout and runs that lie between them."
    ),
    columns=(
        PrinterColumn("Workflow", ".spec.workflow"),
        PrinterColumn("Env", ".spec.environment"),
        PrinterColumn("Desired", ".spec.version"),
        PrinterColumn("Active", ".status.activeVersion"),
        PrinterColumn("Phase", ".status.phase"),
        PrinterColumn("Reason", ".status.reason"),
        PrinterColumn("Canary", ".status.canary.version", priority=1),
        PrinterColumn("Weight", ".status.canary.weight", "integer", priority=1),
        PrinterColumn("Runs", ".status.runs.active", "integer", priority=1),
        _age(),
    ),
)

WORKFLOW_RUN = Kind(
    kind="WorkflowRun",
    plural="workflowruns",
    singular="workflowrun",
    short_names=("wfr",),
    description=(
        "One execution of a workflow in an environment, pinned to the version it started on "
        "unless a migration moves it."
    ),
    columns=(
        PrinterColumn("Workflow", ".spec.workflow"),
        PrinterColumn("Env", ".spec.environment"),
        PrinterColumn("Version", ".status.version"),
        PrinterColumn("Phase", ".status.phase"),
        PrinterColumn("Step", ".status.currentStep"),
        _age(),
    ),
)

WORKFLOW_MIGRATION = Kind(
    kind="WorkflowMigration",
    plural="workflowmigrations",
    singular="workflowmigration",
    short_names=("wfmig",),
    description=(
        "A migration of in-flight runs of one workflow in one environment from one version "
        "to another, with a step mapping, a dry-run plan and progress."
    ),
    columns=(
        PrinterColumn("Workflow", ".spec.workflow"),
        PrinterColumn("Env", ".spec.environment"),
        PrinterColumn("From", ".spec.fromVersion"),
        PrinterColumn("To", ".spec.toVersion"),
        PrinterColumn("Strategy", ".spec.strategy", priority=1),
        PrinterColumn("Phase", ".status.phase"),
        PrinterColumn("Migrated", ".status.progress.migrated", "integer"),
        PrinterColumn("Failed", ".status.progress.failed", "integer", priority=1),
        PrinterColumn("Remaining", ".status.progress.remaining", "integer"),
        PrinterColumn("Total", ".status.progress.total", "integer"),
        _age(),
    ),
)

ALL_KINDS: tuple[Kind, ...] = (
    WORKFLOW_SOURCE,
    WORKFLOW_VERSION,
    ENVIRONMENT,
    WORKFLOW_DEPLOYMENT,
    WORKFLOW_RUN,
    WORKFLOW_MIGRATION,
)


def version_object_name(workflow: str, version: str) -> str:
    """`lead-nurture.v1.4.0`: a DNS subdomain; `+build` metadata is not allowed in names."""
    return f"{workflow}.v{version.replace('+', '-')}"


def deployment_object_name(workflow: str, environment: str) -> str:
    return f"{workflow}.{environment}"
