"""An Environment's status from its deployments (issue 14: environments never had one)."""

from __future__ import annotations

from typing import Any

from controller.model.environment_status import environment_status

NOW = "2026-12-04T12:00:00Z"


def deployment(ready: str, reason: str) -> dict[str, Any]:
    return {"conditions": [{"type": "Ready", "status": ready, "reason": reason}]}


def ready(status: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == "Ready")


def test_every_deployment_ready_makes_the_environment_ready() -> None:
    status = environment_status(
        {}, 3, [("a", deployment("True", "Verified")), ("b", deployment("True", "Verified"))], NOW
    )
    assert (status["deployments"], status["ready"], status["observedGeneration"]) == (2, 2, 3)
    assert (ready(status)["status"], ready(status)["reason"]) == ("True", "AllReady")


def test_the_message_names_what_waits_and_why() -> None:
    deployments = [
        ("onboarding", deployment("False", "AwaitingApproval")),
        ("lead-nurture", deployment("True", "Verified")),
        ("billing", {}),
        *[(f"w{i}", deployment("False", "SoakPending")) for i in range(3)],
    ]
    status = environment_status({}, 1, deployments, NOW)
    assert (status["deployments"], status["ready"]) == (6, 1)
    condition = ready(status)
    assert (condition["status"], condition["reason"]) == ("False", "DeploymentsNotReady")
    assert condition["message"] == (
        "5 of 6 not ready: billing (Pending), onboarding (AwaitingApproval), w0 (SoakPending)"
        " and 2 more"
    )


def test_no_deployments_is_ready_and_an_unchanged_status_is_the_same_object() -> None:
    first = environment_status({}, 1, [], NOW)
    assert (ready(first)["reason"], first["deployments"], first["ready"]) == (
        "NoDeployments",
        0,
        0,
    )
    assert environment_status(first, 1, [], "2026-12-05T00:00:00Z") == first  # idle: no write


def test_stalled_and_progressing_deployments_show_on_the_environment() -> None:
    stuck = {
        "conditions": [
            {"type": "Ready", "status": "False", "reason": "UpstreamNotFound"},
            {"type": "Stalled", "status": "True", "reason": "UpstreamNotFound"},
        ]
    }
    moving = {
        "conditions": [
            {"type": "Ready", "status": "False", "reason": "SoakPending"},
            {"type": "Reconciling", "status": "True", "reason": "SoakPending"},
        ]
    }
    status = environment_status({}, 1, [("a", stuck), ("b", moving)], NOW)
    kinds = {c["type"]: (c["status"], c["reason"], c["message"]) for c in status["conditions"]}
    assert kinds["Stalled"] == ("True", "DeploymentsStalled", "stalled: a (UpstreamNotFound)")
    assert kinds["Reconciling"] == ("True", "DeploymentsProgressing", "1 of 2 on their way")
