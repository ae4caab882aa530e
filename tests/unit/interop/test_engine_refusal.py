"""An imported n8n step reaches the engine: the run fails saying which node, no crash."""

from __future__ import annotations

import asyncio

from controller.engine.breaker import CircuitBreakers
from controller.engine.steps import execute
from controller.interop.n8n import from_n8n
from tests.unit.engine import CONTEXT, T0, ScriptedHttp
from tests.unit.interop.n8nfixtures import intake


def test_an_imported_n8n_step_fails_the_run_naming_the_node_type() -> None:
    manifest = from_n8n(intake()).manifest
    assert manifest is not None
    spec = manifest["spec"]
    status = {"phase": "Running", "currentStep": "tell-sales"}
    outcome = asyncio.run(
        execute(spec, status, CONTEXT, T0, ScriptedHttp(), CircuitBreakers(), "k" * 32)
    )
    assert not outcome.ok and outcome.fail_run
    assert outcome.error == (
        "n8n node n8n-nodes-base.slack cannot run in flowpin; replace it with flowpin steps"
    )
