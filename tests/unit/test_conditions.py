from __future__ import annotations

from controller.model.conditions import accepted_source_conditions, get_condition, set_condition


def test_transition_time_changes_only_with_status() -> None:
    first = set_condition([], "Ready", "False", "A", "a", 1, now="2026-01-01T00:00:00Z")
    same = set_condition(first, "Ready", "False", "B", "b", 2, now="2026-01-02T00:00:00Z")
    flipped = set_condition(same, "Ready", "True", "C", "c", 2, now="2026-01-03T00:00:00Z")
    assert get_condition(same, "Ready") == {
        "type": "Ready",
        "status": "False",
        "reason": "B",
        "message": "b",
        "observedGeneration": 2,
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }
    assert get_condition(flipped, "Ready")["lastTransitionTime"] == "2026-01-03T00:00:00Z"  # type: ignore[index]


def test_other_conditions_are_kept_and_sorted() -> None:
    conditions = set_condition([], "Stalled", "False", "A", "a", 1)
    conditions = set_condition(conditions, "Ready", "True", "B", "b", 1)
    assert [c["type"] for c in conditions] == ["Ready", "Stalled"]


def test_accepted_source_is_reconciling_and_not_ready() -> None:
    conditions = accepted_source_conditions([], 3)
    assert get_condition(conditions, "Ready")["status"] == "Unknown"  # type: ignore[index]
    assert get_condition(conditions, "Reconciling")["status"] == "True"  # type: ignore[index]
    assert accepted_source_conditions(conditions, 3) is conditions  # nothing to write again
