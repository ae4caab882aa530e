"""Prometheus metrics of the operator, served at `/metrics` in the text format.

A handful of counters, so no client library: sync rounds by result, API writes, webhook
deliveries by answer.
"""

from __future__ import annotations

from collections import Counter

HELP = {
    "flowpin_source_syncs_total": "WorkflowSource sync rounds, by result.",
    "flowpin_api_writes_total": "Write calls (create, update, patch, delete) to the API server.",
    "flowpin_webhook_requests_total": "Webhook requests, by endpoint and HTTP status.",
    "flowpin_run_steps_total": "Step results recorded by the run engine.",
    "flowpin_runs_finished_total": "Runs that finished, by phase.",
    "flowpin_runs_started_total": "Runs started by triggers, by trigger type.",
    "flowpin_schedule_fires_total": "Schedule fires: run created, or it existed (seen before).",
}


class Metrics:
    def __init__(self) -> None:
        self._counters: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()

    def inc(self, name: str, amount: int = 1, **labels: str) -> None:
        self._counters[(name, tuple(sorted(labels.items())))] += amount

    def value(self, name: str, **labels: str) -> int:
        return self._counters[(name, tuple(sorted(labels.items())))]

    def render(self, extra: dict[str, int] | None = None) -> str:
        lines: list[str] = []
        values = dict(self._counters)
        for name, value in (extra or {}).items():
            values[(name, ())] = value
        for name in sorted({key[0] for key in values}):
            lines.append(f"# HELP {name} {HELP.get(name, name)}")
            lines.append(f"# TYPE {name} counter")
            for (metric, labels), value in sorted(values.items()):
                if metric != name:
                    continue
                label_text = ",".join(f'{k}="{v}"' for k, v in labels)
                lines.append(f"{name}{{{label_text}}} {value}" if labels else f"{name} {value}")
        return "\n".join(lines) + "\n"
