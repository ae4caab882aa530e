"""`flowpin plan` with a cluster: runs parked on steps that a new version removes or retypes.

At pull-request time a reviewer wants to know, for each deployment the merge changes, whether
runs still in flight on older versions sit on steps the new version drops (or turns into
another type), and whether the new version's `migrations` carry them. The decision is the
migration planner's own (`plan_migration`), so the pull-request comment and the controller
cannot disagree about which runs move.

Pure: the caller reads the runs (`run_facts`) and the old versions' definitions from the
cluster, and the new version's definition from the pull request.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from controller.model.migration import RunFacts, plan_migration
from controller.model.runs import TERMINAL_PHASES, steps_of
from controller.model.semver import parse_version

Change = Literal["removed", "retyped"]
NOT_REACHABLE = "cluster not reachable: parked runs not checked"
REASONS_LIMIT = 3  # distinct reasons listed per step; runs are always counted in full


@dataclass(frozen=True)
class ParkedStep:
    """Runs of one old version parked on one step the new version lacks or retypes."""

    version: str
    step: str
    change: Change
    old_type: str
    new_type: str  # "" when removed
    runs: int
    covered: int  # runs the new version's migrations move
    targets: tuple[str, ...]  # where the covered runs go
    reasons: tuple[str, ...]  # why the others do not move (distinct, bounded)

    @property
    def covers(self) -> bool:
        return self.covered == self.runs


@dataclass(frozen=True)
class ParkedReport:
    """One deployment that changes (from → to), and the runs at risk on it."""

    environment: str
    workflow: str
    from_version: str | None
    to_version: str
    unfinished: int  # unfinished runs on versions other than the new one
    steps: tuple[ParkedStep, ...] = ()
    unknown_versions: tuple[tuple[str, int], ...] = ()  # (version, runs): no definition
    errors: tuple[str, ...] = ()  # the new version's migrations are invalid: nothing moves

    @property
    def parked(self) -> int:
        return sum(s.runs for s in self.steps)

    @property
    def covers(self) -> bool:
        """Every parked run moves and nothing is left unchecked."""
        return not self.errors and not self.unknown_versions and all(s.covers for s in self.steps)


@dataclass(frozen=True)
class ParkedCheck:
    """The whole check: `checked` is False with `note` saying why when the cluster was not
    asked (not reachable, no permission)."""

    checked: bool
    namespace: str = ""
    note: str = ""
    reports: tuple[ParkedReport, ...] = ()


def _version_key(text: str) -> tuple[object, ...]:
    try:
        return (0, parse_version(text).precedence_key)
    except ValueError:
        return (1, text)


def parked_runs(
    environment: str,
    workflow: str,
    from_version: str | None,
    to_version: str,
    target_definition: Mapping[str, Any] | None,
    runs: Iterable[RunFacts],
    source_definitions: Mapping[str, Mapping[str, Any]],
) -> ParkedReport:
    """Which unfinished runs (on versions other than `to_version`) are parked on a step
    their version has and `to_version` removes or retypes, and whether the new version's
    `migrations` move them. Runs not started yet (no version) start on the new version and
    are left out; runs on steps that the new version keeps with the same type move by id."""
    waiting = sorted(
        (
            r
            for r in runs
            if r.version and r.version != to_version and r.phase not in TERMINAL_PHASES
        ),
        key=lambda r: r.name,
    )
    if target_definition is None:
        return ParkedReport(
            environment,
            workflow,
            from_version,
            to_version,
            len(waiting),
            errors=(f"the definition of version {to_version} is unknown: runs not checked",),
        )
    target = dict(target_definition)
    sources = {v: dict(d) for v, d in source_definitions.items()}
    plan = plan_migration(to_version, target, waiting, sources)
    blocked = {b.run: b.reason for b in plan.blocked}
    target_steps = steps_of(target)
    unknown: dict[str, int] = {}
    groups: dict[tuple[str, str], list[RunFacts]] = {}
    kinds: dict[tuple[str, str], tuple[Change, str, str]] = {}
    for run in waiting:
        if run.version not in sources:
            unknown[run.version] = unknown.get(run.version, 0) + 1
            continue
        old = steps_of(sources[run.version]).get(run.current_step)
        if old is None:
            continue  # not a step of its own version: the planner blocks it, not our question
        new = target_steps.get(run.current_step)
        old_type = str(old.get("type", ""))
        new_type = "" if new is None else str(new.get("type", ""))
        if new is not None and new_type == old_type:
            continue
        key = (run.version, run.current_step)
        groups.setdefault(key, []).append(run)
        kinds[key] = ("removed" if new is None else "retyped", old_type, new_type)
    steps: list[ParkedStep] = []
    for key in sorted(groups, key=lambda k: (_version_key(k[0]), k[1])):
        covered = 0
        targets: list[str] = []
        reasons: list[str] = []
        for run in groups[key]:
            move = plan.by_run.get(run.name)
            if move is not None and plan.ok:
                covered += 1
                if move.to_step not in targets:
                    targets.append(move.to_step)
                continue
            if move is not None:
                reason = "the new version's migrations have errors: nothing moves"
            else:
                reason = blocked.get(run.name) or f"run is {run.phase}, not at a safe point"
            if reason not in reasons and len(reasons) < REASONS_LIMIT:
                reasons.append(reason)
        change, old_type, new_type = kinds[key]
        steps.append(
            ParkedStep(
                key[0],
                key[1],
                change,
                old_type,
                new_type,
                len(groups[key]),
                covered,
                tuple(targets),
                tuple(reasons),
            )
        )
    return ParkedReport(
        environment,
        workflow,
        from_version,
        to_version,
        len(waiting),
        tuple(steps),
        tuple(sorted(unknown.items(), key=lambda kv: _version_key(kv[0]))),
        plan.errors,
    )


# --------------------------------------------------------------------------- rendering


def _runs(count: int) -> str:
    return f"{count} run{'s' if count != 1 else ''}"


def _are(count: int) -> str:
    return f"{_runs(count)} {'is' if count == 1 else 'are'}"


def _change(step: ParkedStep) -> str:
    if step.change == "removed":
        return "removed"
    return f"retyped {step.old_type} → {step.new_type}"


def _verdict(step: ParkedStep) -> str:
    """'the mapping covers them (→ wait-2d)' or why it does not."""
    where = f" (→ {', '.join(step.targets)})" if step.targets else ""
    them = "it" if step.runs == 1 else "them"
    if step.covers:
        return f"the mapping covers {them}{where}"
    why = "; ".join(step.reasons)
    if step.covered:
        return f"the mapping covers {step.covered}{where} but not {step.runs - step.covered}: {why}"
    return f"the mapping does not cover {them}: {why}"


def describe_step(step: ParkedStep) -> str:
    """One sentence: 'step X (1.4.0) removed; N runs are parked there; the mapping …'."""
    return (
        f"step {step.step} ({step.version}) {_change(step)}; {_are(step.runs)} parked there; "
        f"{_verdict(step)}"
    )


def _title(report: ParkedReport) -> str:
    return (
        f"{report.environment}: {report.workflow} {report.from_version or '-'} → "
        f"{report.to_version}"
    )


def _report_lines(report: ParkedReport, with_steps: bool = True) -> list[str]:
    """The facts of one deployment, one per line, without markup."""
    lines: list[str] = []
    if not report.unfinished:
        lines.append("no unfinished runs on other versions")
    elif not report.steps and not report.unknown_versions and not report.errors:
        lines.append(
            f"{_runs(report.unfinished)} unfinished on other versions; "
            "none parked on a removed or retyped step"
        )
    if with_steps:
        lines += [describe_step(step) for step in report.steps]
    lines += [
        f"{_runs(count)} on version {version}, whose definition is unknown: not checked"
        for version, count in report.unknown_versions
    ]
    lines += [f"error: {error}" for error in report.errors]
    return lines


def render_text(check: ParkedCheck | None) -> str:
    if check is None:
        return ""
    if not check.checked:
        return f"{check.note}\n"
    if not check.reports:
        return ""
    lines = [f"parked runs (cluster namespace {check.namespace}):"]
    for report in check.reports:
        lines.append(f"  {_title(report)}")
        lines += [f"    {line}" for line in _report_lines(report)]
    return "\n".join(lines) + "\n"


def _md(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(check: ParkedCheck | None) -> str:
    if check is None:
        return ""
    lines = ["### Parked runs", ""]
    if not check.checked:
        return "\n".join([*lines, f"> {_md(check.note)}"]) + "\n"
    if not check.reports:
        return ""
    lines.append(
        f"Runs in flight on older versions, on steps the new version removes or retypes "
        f"(cluster namespace `{_md(check.namespace)}`)."
    )
    for report in check.reports:
        mark = "✓" if report.covers else "✗"
        lines += ["", f"#### {mark} {_md(_title(report))}", ""]
        if report.steps:
            lines += ["| Version | Step | Change | Runs | Migrations |", "|---|---|---|---|---|"]
            for step in report.steps:
                lines.append(
                    f"| {_md(step.version)} | {_md(step.step)} | {_md(_change(step))} | "
                    f"{step.runs} | {'✓' if step.covers else '✗'} {_md(_verdict(step))} |"
                )
            lines.append("")
        lines += [f"- {_md(line)}" for line in _report_lines(report, with_steps=False)]
        if lines[-1] == "":
            lines.pop()
    return "\n".join(lines) + "\n"


def as_json(check: ParkedCheck) -> dict[str, Any]:
    """The check as plain JSON data (lists, not tuples), for `flowpin plan --format json`."""
    return {
        "checked": check.checked,
        "namespace": check.namespace,
        "note": check.note,
        "deployments": [
            {
                "environment": report.environment,
                "workflow": report.workflow,
                "from_version": report.from_version,
                "to_version": report.to_version,
                "unfinished": report.unfinished,
                "parked": report.parked,
                "covers": report.covers,
                "steps": [
                    {
                        **asdict(step),
                        "targets": list(step.targets),
                        "reasons": list(step.reasons),
                        "covers": step.covers,
                    }
                    for step in report.steps
                ],
                "unknown_versions": [{"version": v, "runs": n} for v, n in report.unknown_versions],
                "errors": list(report.errors),
            }
            for report in check.reports
        ],
    }


def render_json(check: ParkedCheck) -> str:
    return json.dumps(as_json(check), indent=2)
