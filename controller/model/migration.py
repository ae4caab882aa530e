"""The plan of a migration of in-flight runs onto a target version, and its application.

Pure: the operator gathers the runs (`run_facts`) and the definitions, calls
`plan_migration`, writes `plan.as_status()`, then feeds the runs `next_batch` names through
`apply_migration` and writes the statuses it returns. Nothing here does I/O or reads the clock.

Where a run goes, for a run on a version other than the target:
1. the `map` of the target's first `migrations` entry whose `from` range holds the run's
   version (npm rules: a pre-release is held only by a range that names one);
2. else the same step id, when the target has it with the same type;
3. else nowhere: the run is *blocked* with the reason and stays on its version, which keeps
   working, so a blocked run is never harmed.

Validation follows Camunda 8's process-instance migration, checked on the entries a run
actually uses (an entry that holds no run's version moves nothing, so it cannot do harm here;
`flowpin validate` checks every entry at pull-request time):
- a `map` key must be a step of a source version it is used for, a `map` value a step of the
  target, a `set` expression must compile: otherwise the plan has an *error* and moves
  nothing, because a typo in a key could quietly send runs through the same-id fallback;
- a step keeps its type (an http step never becomes a wait step): a mapping that changes it
  is an error; a same-id step whose type changed blocks the runs parked on it;
- every step on which runs are parked needs a target: the uncovered ones are reported
  (`unmapped`) and their runs are blocked, while the runs that are covered still move
  (as a Camunda batch migrates the instances that validate);
- a source step maps at most once: `map` is a mapping (the manifest loader refuses duplicate
  keys) and only the first entry holding a version applies, so this holds by construction.
  Several source steps may map to one target step (Zeebe refuses duplicate *source* ids only).

A run moves only at a safe point: `Waiting`, or `Running` between steps. The engine saves a
run only after an http call, so its status cannot show a call in progress; the caller, which
knows which runs its workers hold, says so with `in_flight`. Such a run is *deferred*, not
failed: it stays eligible and the next plan moves it.
"""

from __future__ import annotations

import copy
import datetime
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from controller.api import kinds
from controller.model import cel
from controller.model.conditions import phase_conditions
from controller.model.durations import parse_duration
from controller.model.runs import (
    TERMINAL_PHASES,
    Definition,
    Status,
    is_terminal,
    parse_time,
    rfc3339,
    step_entry,
    steps_of,
)
from controller.model.semver import Version, VersionRange, parse_range, parse_version

Strategy = Literal["immediate", "gradual", "manual"]
STRATEGIES: tuple[str, ...] = ("immediate", "gradual", "manual")
DEFAULT_BATCH_SIZE = 100  # runs per batch of a gradual migration
# Runs per batch of an immediate (or approved manual) migration. The API server sees at most
# the client's few concurrent patches either way; a batch bounds what a crash leaves to settle
# and how often progress is written, and a larger one waits less on its slowest run.
IMMEDIATE_BATCH_SIZE = 500
BLOCKED_LIMIT = 100  # blocked runs listed in status.plan; the count is always complete
SAFE_PHASES = frozenset({"Running", "Waiting"})
IN_PROGRESS = frozenset({"Running", "Retrying"})  # step entries of a step not finished yet


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class RunFacts:
    """What the plan needs to know about one run, read from its WorkflowRun object."""

    name: str
    version: str
    phase: str
    current_step: str
    wake_at: datetime.datetime | None = None
    vars: Mapping[str, Any] = field(default_factory=dict, hash=False)
    in_flight: bool = False
    inputs: Mapping[str, Any] = field(default_factory=dict, hash=False)


def run_facts(run: Mapping[str, Any], *, in_flight: bool = False) -> RunFacts:
    """The facts of a WorkflowRun object. `in_flight` comes from the caller: whether a worker
    holds the run right now (the status alone cannot tell, see the module docstring)."""
    status = run.get("status") or {}
    spec = run.get("spec") or {}
    try:
        wake_at = parse_time(status.get("wakeAt"))
    except ValueError:
        wake_at = None  # unreadable: the plan does not depend on it
    return RunFacts(
        name=str((run.get("metadata") or {}).get("name", "")),
        version=str(status.get("version") or ""),
        phase=str(status.get("phase") or "Pending"),
        current_step=str(status.get("currentStep") or ""),
        wake_at=wake_at,
        vars=dict(status.get("vars") or {}),
        in_flight=in_flight,
        inputs=dict(spec.get("inputs") or {}),
    )


# --------------------------------------------------------------------------- the plan

BlockCode = Literal[
    "unknown-version",  # no definition of the run's version, or not a semantic version
    "unknown-step",  # the run is parked on a step its own version does not have
    "unmapped",  # the target lacks the step and no migration maps it
    "unknown-target",  # a migration maps the step to a step the target lacks
    "type-changed",  # the target step has another type
    "cel-error",  # a `set` expression failed for this run
]
#: Codes meaning "this parked step has no valid target": they feed `MigrationPlan.unmapped`.
NO_TARGET: frozenset[str] = frozenset({"unmapped", "unknown-target", "type-changed"})


@dataclass(frozen=True)
class RunMove:
    """One run that can migrate: where it goes and what `set` assigns. `deferred` says why
    it cannot move yet (not at a safe point); empty when it can move now."""

    run: str
    from_version: str
    from_step: str
    to_version: str
    to_step: str
    to_type: str
    set: Mapping[str, str] = field(default_factory=dict, hash=False)
    inputs: Mapping[str, Any] = field(default_factory=dict, hash=False)
    entry: int | None = None  # the target's `migrations` entry holding the run's version
    deferred: str = ""


@dataclass(frozen=True)
class Blocked:
    """A run that cannot migrate, and why."""

    run: str
    version: str
    step: str
    code: BlockCode
    reason: str


@dataclass(frozen=True)
class MoveCount:
    from_version: str
    from_step: str
    to_step: str
    count: int


@dataclass(frozen=True)
class UnmappedStep:
    """A step with parked runs and no valid target (Camunda: an active element without a
    mapping instruction)."""

    version: str
    step: str
    count: int
    reason: str


@dataclass(frozen=True)
class MigrationPlan:
    """Every run not on the target, sorted into moves, blocked and skipped, by run name."""

    target_version: str
    moves: tuple[RunMove, ...] = ()
    blocked: tuple[Blocked, ...] = ()
    skipped: tuple[str, ...] = ()  # finished runs
    errors: tuple[str, ...] = ()  # invalid migration entries: nothing moves

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def eligible(self) -> int:
        """Runs that migrate, now or at their next safe point."""
        return len(self.moves)

    @cached_property
    def ready(self) -> tuple[str, ...]:
        return tuple(m.run for m in self.moves if not m.deferred)

    @cached_property
    def deferred(self) -> tuple[str, ...]:
        return tuple(m.run for m in self.moves if m.deferred)

    @cached_property
    def by_run(self) -> Mapping[str, RunMove]:
        return {m.run: m for m in self.moves}

    @cached_property
    def counts(self) -> tuple[MoveCount, ...]:
        """Runs per (source version, source step → target step)."""
        tally: dict[tuple[str, str, str], int] = {}
        for m in self.moves:
            key = (m.from_version, m.from_step, m.to_step)
            tally[key] = tally.get(key, 0) + 1
        ordered = sorted(tally.items(), key=lambda kv: (_version_key(kv[0][0]), kv[0]))
        return tuple(MoveCount(v, s, t, n) for (v, s, t), n in ordered)

    @cached_property
    def unmapped(self) -> tuple[UnmappedStep, ...]:
        """Parked steps without a valid target, with the runs on them."""
        found: dict[tuple[str, str], tuple[int, str]] = {}
        for b in self.blocked:
            if b.code in NO_TARGET:
                count, reason = found.get((b.version, b.step), (0, b.reason))
                found[(b.version, b.step)] = (count + 1, reason)
        ordered = sorted(found.items(), key=lambda kv: (_version_key(kv[0][0]), kv[0]))
        return tuple(UnmappedStep(v, s, n, r) for (v, s), (n, r) in ordered)

    def as_status(self, limit: int = BLOCKED_LIMIT) -> dict[str, Any]:
        """`status.plan` of the WorkflowMigration; the blocked list is bounded by `limit`,
        `blockedCount` is not."""
        return {
            "toVersion": self.target_version,
            "eligible": self.eligible,
            "ready": len(self.ready),
            "deferred": len(self.deferred),
            "skipped": len(self.skipped),
            "moves": [
                {
                    "fromVersion": c.from_version,
                    "fromStep": c.from_step,
                    "toStep": c.to_step,
                    "count": c.count,
                }
                for c in self.counts
            ],
            "blockedCount": len(self.blocked),
            "blocked": [
                {"run": b.run, "version": b.version, "step": b.step, "reason": b.reason}
                for b in self.blocked[:limit]
            ],
            "unmapped": [
                {"fromVersion": u.version, "fromStep": u.step, "count": u.count, "reason": u.reason}
                for u in self.unmapped
            ],
            "errors": list(self.errors),
        }


def _version_key(text: str) -> tuple[object, ...]:
    try:
        return (0, parse_version(text).precedence_key)
    except ValueError:
        return (1, text)


# --------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class _Entry:
    index: int
    text: str
    range: VersionRange | None
    map: Mapping[str, str] = field(hash=False)
    set: Mapping[str, str] = field(hash=False)

    @property
    def label(self) -> str:
        return f"migrations[{self.index}] (from {self.text!r})"


def _entries(target: Definition) -> tuple[list[_Entry], list[str]]:
    entries: list[_Entry] = []
    errors: list[str] = []
    for index, raw in enumerate(target.get("migrations") or []):
        raw = raw if isinstance(raw, Mapping) else {}
        text = str(raw.get("from", ""))
        try:
            selector: VersionRange | None = parse_range(text)
        except ValueError as exc:
            selector = None  # it holds no version; the plan is invalid, see below
            errors.append(f"migrations[{index}]: {exc}")
        mapping = {str(k): str(v) for k, v in (raw.get("map") or {}).items()}
        assigns = {str(k): str(v) for k, v in (raw.get("set") or {}).items()}
        entries.append(_Entry(index, text, selector, mapping, assigns))
    return entries, errors


def _entry_for(version: Version, entries: Sequence[_Entry]) -> _Entry | None:
    return next((e for e in entries if e.range is not None and e.range.contains(version)), None)


def _activation(
    inputs: Mapping[str, Any], variables: Mapping[str, Any], run: Mapping[str, Any]
) -> dict[str, Any]:
    return {"inputs": dict(inputs), "vars": dict(variables), "run": dict(run)}


def _assign(
    assigns: Mapping[str, str], entry: int | None, activation: dict[str, Any]
) -> dict[str, Any]:
    """The `set` values, all computed from the vars before the migration (a simultaneous
    assignment, so their order does not matter). Raises CelError naming the variable."""
    out: dict[str, Any] = {}
    for name, expression in assigns.items():
        try:
            out[name] = cel.evaluate(expression, activation)
        except cel.CelError as exc:
            where = f"migrations[{entry}].set.{name}" if entry is not None else f"set.{name}"
            raise cel.CelError(f"{where}: {exc.message}") from None
    return out


def _decide(
    run: RunFacts,
    target_version: str,
    target_steps: Mapping[str, Mapping[str, Any]],
    entries: Sequence[_Entry],
    sources: Mapping[str, Definition],
    used: dict[int, set[str]],
) -> RunMove | Blocked:
    def blocked(code: BlockCode, reason: str) -> Blocked:
        return Blocked(run.name, run.version, run.current_step, code, reason)

    source = sources.get(run.version)
    if source is None:
        return blocked("unknown-version", f"the definition of version {run.version} is unknown")
    try:
        version = parse_version(run.version)
    except ValueError as exc:
        return blocked("unknown-version", str(exc))
    source_steps = steps_of(source)
    step = run.current_step
    if step not in source_steps:
        return blocked("unknown-step", f"step {step!r} is not a step of version {run.version}")
    old_type = str(source_steps[step].get("type", ""))
    entry = _entry_for(version, entries)
    if entry is not None:
        used.setdefault(entry.index, set()).add(run.version)
    if entry is not None and step in entry.map:
        to_step = entry.map[step]
        if to_step not in target_steps:
            return blocked(
                "unknown-target",
                f"{entry.label} maps {step!r} to {to_step!r}, "
                f"which is not a step of version {target_version}",
            )
        how = f"{entry.label} maps {step!r} ({old_type}) to {to_step!r}"
    elif step in target_steps:
        to_step, how = step, f"step {step!r} ({old_type})"
    else:
        return blocked(
            "unmapped",
            f"step {step!r} does not exist in version {target_version} and no migration "
            f"for version {run.version} maps it",
        )
    new_type = str(target_steps[to_step].get("type", ""))
    if new_type != old_type:
        return blocked(
            "type-changed",
            f"{how} is {new_type} in version {target_version}: "
            "a migration cannot change a step's type",
        )
    assigns = entry.set if entry is not None else {}
    index = entry.index if entry is not None else None
    if assigns:
        activation = _activation(
            run.inputs, run.vars, _run_view(run.name, run.version, step, run.phase)
        )
        try:
            _assign(assigns, index, activation)
        except cel.CelError as exc:
            return blocked("cel-error", exc.message)
    deferred = ""
    if run.in_flight:
        deferred = "not at a safe point yet: a step is executing; it moves at the next plan"
    return RunMove(
        run.name,
        run.version,
        step,
        target_version,
        to_step,
        new_type,
        assigns,
        run.inputs,
        index,
        deferred,
    )


def _run_view(name: str, version: str, step: str, phase: str) -> dict[str, Any]:
    """`run` in `set` expressions: the run as it is before the migration."""
    return {"name": name, "version": version, "step": step, "phase": phase}


def _entry_errors(
    entries: Sequence[_Entry],
    used: Mapping[int, set[str]],
    target_version: str,
    target_steps: Mapping[str, Mapping[str, Any]],
    sources: Mapping[str, Definition],
) -> list[str]:
    """Camunda's checks on the mapping instructions, for the entries some run uses."""
    errors: list[str] = []
    for entry in entries:
        versions = sorted(used.get(entry.index, set()), key=_version_key)
        if not versions:
            continue
        source_steps = {v: steps_of(sources[v]) for v in versions}
        for old, new in entry.map.items():
            holders = [v for v in versions if old in source_steps[v]]
            if not holders:
                errors.append(
                    f"{entry.label}: map key {old!r} is not a step of version {', '.join(versions)}"
                )
            if new not in target_steps:
                errors.append(
                    f"{entry.label}: maps {old!r} to {new!r}, which is not a step of "
                    f"version {target_version}"
                )
                continue
            new_type = str(target_steps[new].get("type", ""))
            for v in holders:
                old_type = str(source_steps[v][old].get("type", ""))
                if old_type != new_type:
                    errors.append(
                        f"{entry.label}: maps {old!r} ({old_type} in {v}) to {new!r} "
                        f"({new_type} in {target_version}): a migration cannot change a "
                        "step's type"
                    )
        for name, expression in entry.set.items():
            problem = cel.check(expression)
            if problem is not None:
                errors.append(f"{entry.label}: set.{name}: {problem}")
    return errors


def plan_migration(
    target_version: str,
    target_definition: Definition,
    runs: Iterable[RunFacts],
    source_definitions: Mapping[str, Definition],
) -> MigrationPlan:
    """Where every run on a version other than the target goes, or why it cannot.

    Runs on the target are left out; finished runs are skipped; runs not started yet (no
    version, or a phase other than Running and Waiting) are left out: they start on the
    version the deployment assigns, and a later plan sees them if that is not the target.
    """
    target_steps = steps_of(target_definition)
    entries, errors = _entries(target_definition)
    used: dict[int, set[str]] = {}
    moves: list[RunMove] = []
    blocked: list[Blocked] = []
    skipped: list[str] = []
    for run in sorted(runs, key=lambda r: r.name):
        if not run.version or run.version == target_version:
            continue
        if run.phase in TERMINAL_PHASES:
            skipped.append(run.name)
            continue
        if run.phase not in SAFE_PHASES:
            continue
        decision = _decide(run, target_version, target_steps, entries, source_definitions, used)
        if isinstance(decision, RunMove):
            moves.append(decision)
        else:
            blocked.append(decision)
    errors += _entry_errors(entries, used, target_version, target_steps, source_definitions)
    return MigrationPlan(
        target_version, tuple(moves), tuple(blocked), tuple(skipped), tuple(errors)
    )


# --------------------------------------------------------------------------- applying


class MigrationRefused(Exception):
    """A run cannot be migrated by this plan item. `outcome` is how progress counts it:
    `skipped` (finished, or already on the target), `failed` (a `set` expression failed), or
    `stale` (the run moved since the plan: plan it again, it is not counted yet)."""

    def __init__(self, outcome: Literal["skipped", "failed", "stale"], reason: str) -> None:
        super().__init__(reason)
        self.outcome = outcome
        self.reason = reason


def apply_migration(
    run_status: Status, item: RunMove, now: datetime.datetime, migration_name: str
) -> Status | None:
    """The run's status after the migration; None when this migration already moved it
    (its `versionHistory` names it), so a batch repeated after a crash writes nothing.

    The run keeps its step results; the entry of the step it is parked on (a wait under way,
    a retry backoff) moves to the target step, so the wait keeps its `wakeAt` and the retry
    its count. A waiting run keeps `wakeAt` only at a wait step, else it runs the target step
    now; a running run keeps a retry backoff's `wakeAt`.
    """
    history = list(run_status.get("versionHistory") or [])
    if any(h.get("migration") == migration_name for h in history if isinstance(h, Mapping)):
        return None
    if is_terminal(run_status):
        raise MigrationRefused("skipped", f"run finished ({run_status.get('phase')})")
    version, step = run_status.get("version"), run_status.get("currentStep")
    if version == item.to_version:
        raise MigrationRefused("skipped", f"run is on version {item.to_version} already")
    phase = str(run_status.get("phase") or "")
    if version != item.from_version or step != item.from_step or phase not in SAFE_PHASES:
        raise MigrationRefused(
            "stale",
            f"run is at {version}/{step} ({phase}), planned at {item.from_version}/"
            f"{item.from_step}",
        )
    variables = dict(run_status.get("vars") or {})
    try:
        assigned = _assign(
            item.set,
            item.entry,
            _activation(
                item.inputs, variables, _run_view(item.run, str(version), str(step), phase)
            ),
        )
    except cel.CelError as exc:
        raise MigrationRefused("failed", exc.message) from None

    new = copy.deepcopy(run_status)
    if item.to_step != item.from_step:
        entry = step_entry(new, item.from_step)
        if entry is not None and entry.get("phase") in IN_PROGRESS:
            rest = [
                e
                for e in new.get("steps") or []
                if e.get("id") not in (item.from_step, item.to_step)
            ]
            new["steps"] = [*rest, {**entry, "id": item.to_step}]
    if phase == "Waiting" and item.to_type != "wait":
        new["phase"] = "Running"
        new.pop("wakeAt", None)
    new.update(
        version=item.to_version,
        versionReason=f"migrated by {migration_name}",
        currentStep=item.to_step,
        vars={**variables, **assigned},
        message=f"migrated from {item.from_version}/{item.from_step} to "
        f"{item.to_version}/{item.to_step} by {migration_name}",
        versionHistory=[
            *history,
            {
                "from": item.from_version,
                "to": item.to_version,
                "fromStep": item.from_step,
                "toStep": item.to_step,
                "at": rfc3339(now),
                "migration": migration_name,
            },
        ],
    )
    return new


# --------------------------------------------------------------------------- pacing


def next_batch(
    plan: MigrationPlan,
    done: Set[str],
    strategy: str,
    batch_size: int | None = None,
) -> list[str]:
    """The runs to migrate next: up to `batch_size` (default 100) ready runs not in `done`,
    in plan order. `immediate` and `manual` (once approved) repeat this until nothing is
    left; `gradual` waits `interval` between batches, which is the caller's clock. An invalid
    plan gives nothing."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}: expected {', '.join(STRATEGIES)}")
    size = DEFAULT_BATCH_SIZE if batch_size is None else batch_size
    if size < 1:
        raise ValueError(f"batch size must be at least 1, not {size}")
    if not plan.ok:
        return []
    batch: list[str] = []
    for name in plan.ready:
        if name not in done:
            batch.append(name)
            if len(batch) == size:
                break
    return batch


def progress(
    total: int,
    migrated: int,
    failed: int,
    skipped: int,
    started_at: datetime.datetime | None,
    now: datetime.datetime,
) -> dict[str, Any]:
    """`status.progress`: the counts, what remains, and an estimated finish from the rate
    so far (so a gradual migration's pauses are in it). No `eta` before the first run is
    done or after the last."""
    processed = migrated + failed + skipped
    remaining = max(total - processed, 0)
    out: dict[str, Any] = {
        "total": total,
        "migrated": migrated,
        "failed": failed,
        "skipped": skipped,
        "remaining": remaining,
    }
    if started_at is not None and remaining and processed:
        elapsed = (now - started_at).total_seconds()
        if elapsed > 0:
            eta = now + datetime.timedelta(seconds=elapsed * remaining / processed)
            out["eta"] = eta.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return out


# --------------------------------------------------------------------------- lifecycle
#
# A WorkflowMigration goes Planned (dry run) / AwaitingApproval (manual) → Running ⇄ Paused →
# Succeeded, Failed (plan errors, maxFailures) or Cancelled. The controller calls `next_step`
# with a plan of the runs as they are now and the runs it has handled since that plan; it
# writes the status it returns, which names the batch (`currentBatch`) *before* moving any of
# it, moves the batch, and folds the outcomes in with `finish_batch`. A batch cut short by a
# crash is therefore still named in the status after a restart: its runs are settled first
# (`settled_outcome`: a run this migration moved says so in its `versionHistory`), so no run
# is moved or counted twice.

FINAL_PHASES = frozenset({"Succeeded", "Failed", "Cancelled"})
WAITING_PHASES = frozenset({"Planned", "AwaitingApproval", "Paused"})
DEFAULT_INTERVAL = datetime.timedelta(seconds=30)
DEFERRED_RECHECK = datetime.timedelta(seconds=1)  # runs mid-step reach a safe point soon
Outcome = Literal["migrated", "failed", "skipped", "stale"]


@dataclass(frozen=True)
class MigrationSettings:
    """The spec of a WorkflowMigration with its defaults applied."""

    strategy: str = "immediate"
    batch_size: int = DEFAULT_BATCH_SIZE
    interval: datetime.timedelta = DEFAULT_INTERVAL
    max_failures: int | None = None  # None: no limit
    dry_run: bool = False
    approved: bool = False
    paused: bool = False
    cancel: bool = False


def settings_of(spec: Mapping[str, Any]) -> MigrationSettings:
    """Raises ValueError naming the field when the spec cannot be followed."""
    strategy = str(spec.get("strategy") or "immediate")
    if strategy not in STRATEGIES:
        raise ValueError(
            f"spec.strategy: unknown strategy {strategy!r}; expected {', '.join(STRATEGIES)}"
        )
    try:
        interval = parse_duration(str(spec.get("interval") or "30s"))
    except ValueError as exc:
        raise ValueError(f"spec.interval: {exc}") from None
    max_failures = spec.get("maxFailures")
    return MigrationSettings(
        strategy=strategy,
        batch_size=max(
            int(
                spec.get("batchSize")
                or (DEFAULT_BATCH_SIZE if strategy == "gradual" else IMMEDIATE_BATCH_SIZE)
            ),
            1,
        ),
        interval=interval,
        max_failures=None if max_failures is None else int(max_failures),
        dry_run=bool(spec.get("dryRun")),
        approved=bool(spec.get("approved")),
        paused=bool(spec.get("paused")),
        cancel=bool(spec.get("cancel")),
    )


@dataclass
class MigrationStep:
    """What the controller does now: write `status`; then move `batch` (named in
    `status.currentBatch`), or look again at `wake_at`, or wait for a spec change."""

    status: dict[str, Any]
    batch: list[str] = field(default_factory=list)
    wake_at: datetime.datetime | None = None


def _counts(status: Mapping[str, Any]) -> tuple[int, int, int]:
    found = status.get("progress") or {}
    return (
        int(found.get("migrated") or 0),
        int(found.get("failed") or 0),
        int(found.get("skipped") or 0),
    )


def failed_runs(status: Mapping[str, Any]) -> set[str]:
    """Runs this migration failed to move: never tried again by it."""
    return {str(f.get("run")) for f in status.get("failures") or [] if isinstance(f, Mapping)}


def _finish(status: dict[str, Any], phase: str, message: str, now: datetime.datetime) -> None:
    """The final record. The numbers add up: `total` is what was handled, nothing remains,
    and the runs the plan still had (a cancel, a failure) are `notMoved`."""
    status.update(phase=phase, message=message, finishedAt=_stamp(now))
    status.pop("currentBatch", None)
    status.pop("nextBatchAt", None)
    progress = dict(status.get("progress") or {})
    progress.pop("eta", None)
    left = int(progress.get("remaining") or 0)
    if left:
        progress["notMoved"] = left
    progress["remaining"] = 0
    progress["total"] = sum(int(progress.get(k) or 0) for k in ("migrated", "failed", "skipped"))
    status["progress"] = progress


def next_step(
    spec: Mapping[str, Any],
    status: Mapping[str, Any],
    plan: MigrationPlan,
    handled: Set[str],
    generation: int,
    now: datetime.datetime,
) -> MigrationStep:
    """The migration's next move. `plan` is of the runs as they are now; `handled` the runs
    this process has already moved or counted since that plan was made (their moves in the
    plan are out of date). Pure: the caller writes the status and moves the batch."""
    new: dict[str, Any] = copy.deepcopy(dict(status))
    new["observedGeneration"] = generation
    if new.get("phase") in FINAL_PHASES:
        return MigrationStep(_with_conditions(new, generation, now))
    migrated, failed, skipped = _counts(new)
    if not new.get("startedAt"):
        # Until runs move, the plan shown is of the runs as they are now; from the first
        # batch on it is the record of what this migration set out to do, kept as it was
        # (a finished migration must not read "eligible 0, no runs to move").
        new["plan"] = plan.as_status()
    done = failed_runs(new) | set(handled)
    remaining = [m for m in plan.moves if m.run not in done]
    new["progress"] = progress(
        migrated + failed + skipped + len(remaining),
        migrated,
        failed,
        skipped,
        parse_time(new.get("startedAt")),
        now,
    )
    blocked = (
        f"; {len(plan.blocked)} runs cannot migrate and stay on their versions"
        if (plan.blocked)
        else ""
    )

    def step(phase: str, message: str, **more: Any) -> MigrationStep:
        new.update(phase=phase, message=message)
        batch = more.pop("batch", [])
        wake = more.pop("wake_at", None)
        if batch:
            new["currentBatch"] = batch
        else:
            new.pop("currentBatch", None)
        return MigrationStep(_with_conditions(new, generation, now), batch, wake)

    try:
        settings = settings_of(spec)
    except ValueError as exc:
        _finish(new, "Failed", str(exc), now)
        return step("Failed", str(exc))
    if settings.cancel:
        message = f"cancelled: {migrated} runs moved stay on {plan.target_version}"
        _finish(new, "Cancelled", message, now)
        return step("Cancelled", message)
    if not plan.ok:
        message = "the plan has errors; nothing moves: " + "; ".join(plan.errors)
        _finish(new, "Failed", message, now)
        return step("Failed", message)
    if settings.max_failures is not None and failed > settings.max_failures:
        message = (
            f"aborted: {failed} runs failed to migrate, more than maxFailures "
            f"({settings.max_failures}); {migrated} runs moved stay moved"
        )
        _finish(new, "Failed", message, now)
        return step("Failed", message)
    if settings.dry_run:
        if not remaining:
            return step(
                "Planned",
                f"dry run: no run would move to {plan.target_version}{blocked}; nothing to approve",
            )
        return step(
            "Planned",
            f"dry run: {len(remaining)} runs would move to {plan.target_version}{blocked}; "
            "approve to start (flowpin migrate approve)",
        )
    if settings.strategy == "manual" and not settings.approved:
        return step(
            "AwaitingApproval",
            f"{len(remaining)} runs would move to {plan.target_version}{blocked}; "
            "waiting for approval (flowpin migrate approve)",
        )
    if not remaining:
        message = (
            f"{migrated} runs migrated to {plan.target_version}"
            f" ({skipped} skipped, {failed} failed){blocked}"
        )
        _finish(new, "Succeeded", message, now)
        return step("Succeeded", message)
    if settings.paused:
        new.pop("nextBatchAt", None)
        return step("Paused", f"paused with {len(remaining)} runs to go; resume to continue")
    new.setdefault("startedAt", _stamp(now))
    due = parse_time(new.get("nextBatchAt"))
    if settings.strategy == "gradual" and due is not None and due > now:
        return step(
            "Running",
            f"{len(remaining)} runs to go; next batch at {_stamp(due)}",
            wake_at=due,
        )
    batch = next_batch(plan, done, settings.strategy, settings.batch_size)
    if not batch:
        return step(
            "Running",
            f"waiting for {len(remaining)} runs to reach a safe point",
            wake_at=now + DEFERRED_RECHECK,
        )
    if settings.strategy == "gradual":
        new["nextBatchAt"] = _stamp(now + settings.interval)
    else:
        new.pop("nextBatchAt", None)
    return step(
        "Running",
        f"moving {len(batch)} of {len(remaining)} runs to {plan.target_version}",
        batch=batch,
    )


def fail(
    status: Mapping[str, Any], message: str, generation: int, now: datetime.datetime
) -> dict[str, Any]:
    """The status of a migration that cannot go on (its target version does not exist)."""
    new = copy.deepcopy(dict(status))
    new["observedGeneration"] = generation
    _finish(new, "Failed", message, now)
    return _with_conditions(new, generation, now)


def finish_batch(
    status: Mapping[str, Any],
    outcomes: Mapping[str, tuple[Outcome, str]],
    now: datetime.datetime,
) -> dict[str, Any]:
    """The status after a batch: its outcomes counted (a `stale` run is not: it is planned
    again), failures listed, `currentBatch` gone. Counting and clearing the batch happen in
    one write, so a batch is counted once."""
    new = copy.deepcopy(dict(status))
    migrated, failed, skipped = _counts(new)
    failures = list(new.get("failures") or [])
    for run, (outcome, reason) in sorted(outcomes.items()):
        if outcome == "migrated":
            migrated += 1
        elif outcome == "skipped":
            skipped += 1
        elif outcome == "failed":
            failed += 1
            failures.append({"run": run, "reason": reason})
    progress_now = dict(new.get("progress") or {})
    progress_now.update(migrated=migrated, failed=failed, skipped=skipped)
    new["progress"] = progress_now
    if failures:
        new["failures"] = failures
    new.pop("currentBatch", None)
    return new


def settled_outcome(
    run_status: Mapping[str, Any] | None, migration_name: str, target_version: str
) -> tuple[Outcome, str]:
    """How a run of an interrupted batch counts when the plan no longer moves it: moved by
    this migration (its `versionHistory` says so), skipped (gone, finished, on the target),
    or `stale`: not counted, so that it is counted once, when a later plan moves it or it
    finishes, or never, while it is blocked."""
    if run_status is None:
        return "skipped", "the run no longer exists"
    for item in run_status.get("versionHistory") or []:
        if isinstance(item, Mapping) and item.get("migration") == migration_name:
            return "migrated", ""
    if is_terminal(dict(run_status)):
        return "skipped", f"run finished ({run_status.get('phase')})"
    if run_status.get("version") == target_version:
        return "skipped", f"run is on version {target_version} already"
    return "stale", "the run cannot migrate now (see status.plan.blocked)"


def _with_conditions(
    status: dict[str, Any], generation: int, now: datetime.datetime
) -> dict[str, Any]:
    """kstatus: Ready once Succeeded; Reconciling while moving runs; Stalled when it failed.
    A migration waiting for a person (approval, resume) is not stalled: reason Waiting."""
    phase = str(status.get("phase") or "Pending")
    conditions = phase_conditions(
        list(status.get("conditions") or []),
        phase,
        str(status.get("message") or phase),
        generation,
        _stamp(now),
        reconciling=phase == "Running",
        stalled=phase == "Failed",
        idle=("NotReconciling", "Not moving runs."),
        not_stalled_reason=(
            "Waiting" if phase in ("AwaitingApproval", "Paused", "Planned") else "NotStalled"
        ),
    )
    return {**status, "conditions": conditions}


def automatic_migration(
    workflow: str,
    environment: str,
    deployment_status: Mapping[str, Any],
    counts: Mapping[str, Mapping[str, Any]],
    environment_spec: Mapping[str, Any],
) -> dict[str, Any] | None:
    """The WorkflowMigration that `inflight: migrate` asks for, or None: once a version is
    Verified (active after its gates and its canary) while runs of other versions are
    unfinished. Its name is fixed by the activation (version and `verifiedAt`), so asking
    again, after a restart, finds the same object; a later activation gets a new one. A
    rollback (phase Held) moves no runs back: runs on the newer version finish there."""
    if environment_spec.get("inflight") != "migrate":
        return None
    active = deployment_status.get("activeVersion")
    verified = str(deployment_status.get("verifiedAt") or "")
    if not active or not verified or deployment_status.get("phase") != "Verified":
        return None
    if not any(c.get("active") for v, c in counts.items() if v != active):
        return None
    stamp = "".join(ch for ch in verified if ch.isdigit())
    name = f"{kinds.deployment_object_name(workflow, environment)}.to-{active}.{stamp}"
    policy = environment_spec.get("migration") or {}
    spec: dict[str, Any] = {
        "workflow": workflow,
        "environment": environment,
        "toVersion": str(active),
        "strategy": str(policy.get("strategy") or "immediate"),
    }
    for field_name in ("batchSize", "interval", "maxFailures"):
        if policy.get(field_name) is not None:
            spec[field_name] = policy[field_name]
    return {
        "apiVersion": kinds.API_VERSION,
        "kind": kinds.WORKFLOW_MIGRATION.kind,
        "metadata": {
            "name": name.lower(),
            "labels": {
                kinds.LABEL_WORKFLOW: workflow,
                kinds.LABEL_ENVIRONMENT: environment,
                kinds.LABEL_VERSION: str(active),
                kinds.LABEL_MANAGED_BY: kinds.MANAGED_BY,
            },
        },
        "spec": spec,
    }


def _stamp(moment: datetime.datetime) -> str:
    """Times in a migration's status, to the second (as kubectl shows them)."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
