"""Name conflicts, decided per mode."""

from __future__ import annotations

import pytest

from controller.interop.conflicts import Decision, Taken, decide, free_name


def taken() -> Taken:
    return Taken(
        {"lead": "workflows/sales/lead.yaml"},
        {"workflows/sales/lead.yaml", "workflows/lead-2.yaml"},
    )


@pytest.mark.parametrize(
    ("name", "mode", "decision"),
    [
        ("fresh", "new", Decision("create", "fresh", "workflows/fresh.yaml")),
        (
            "lead",
            "new",
            Decision(
                "fail",
                "lead",
                "workflows/sales/lead.yaml",
                "workflow 'lead' already exists (workflows/sales/lead.yaml); "
                "use --mode rename, overwrite or skip",
            ),
        ),
        (
            "lead",
            "skip",
            Decision("skip", "lead", "workflows/sales/lead.yaml", "workflow 'lead' already exists"),
        ),
        (
            "lead",
            "overwrite",
            Decision(
                "overwrite",
                "lead",
                "workflows/sales/lead.yaml",
                "replaces workflow 'lead' in workflows/sales/lead.yaml",
            ),
        ),
        (
            "lead",
            "rename",
            Decision(
                "rename",
                "lead-2",
                "workflows/lead-2-2.yaml",
                "workflow 'lead' already exists; imported as 'lead-2'",
            ),
        ),
    ],
)
def test_decide(name: str, mode: str, decision: Decision) -> None:
    assert decide("Workflow", name, mode, taken()) == decision  # type: ignore[arg-type]


def test_decisions_claim_names_for_later_items() -> None:
    state = taken()
    assert decide("Workflow", "new", "new", state).action == "create"
    assert decide("Workflow", "new", "new", state).action == "fail"
    assert decide("Workflow", "new", "rename", state).name == "new-2"
    assert decide("Environment", "prod", "new", Taken()).path == "environments/prod.yaml"


def test_free_name_respects_the_length_limit() -> None:
    long = "a" * 63
    assert free_name(long, {long}) == "a" * 61 + "-2"
    assert free_name("x", {"x", "x-2"}) == "x-3"
