"""Settings and fixtures of the fuzz suite (tests/fuzz/).

Budget and reproducibility come from the environment:

- `FUZZ_EXAMPLES` (default 60): the base number of hypothesis examples per test; each test
  scales it by its own weight (`fuzz(weight)`), so the default keeps the whole folder, the
  real control plane included, at 70-80 s on the project's 2-core machine.
- `FUZZ_SEED` (default 0): the hypothesis seed of every test; `random` draws one, printed in
  the pytest header (`fuzz: FUZZ_SEED=...`), so that any failure of a long campaign is
  reproduced with `FUZZ_SEED=<that> FUZZ_EXAMPLES=<same>`.
- `FUZZ_DEADLINE` (default 10 s): per example, only a guard against hangs and blow-ups.
- `FUZZ_SHRINK` (default 0; 1 in `make fuzz`): shrink a failure to a minimal input.

`make test` runs it with the defaults (fixed seed, fixed number of examples: the same cases
on every run); `make fuzz` runs a campaign: `FUZZ_EXAMPLES=2000 FUZZ_SEED=random
FUZZ_SHRINK=1`.

The webhook fuzzers (marked e2e) run against a real operator on the real local control
plane: the session fixtures of tests/e2e/conftest.py are imported here (a conftest's
fixtures only reach its own folder). Run alone, `pytest tests/fuzz` starts one control
plane; in a full `pytest` run the fuzz folder starts its own beside the e2e one (about
4 s); `pytest -m "not e2e" tests/fuzz` needs none.

Each test file ends with regressions: the failures its fuzzers found, minimised, as plain
tests that run whatever the seed.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from typing import Any, TypeVar

import hypothesis
import pytest
from hypothesis import HealthCheck

from tests.e2e.conftest import (  # noqa: F401 (fixtures, registered by being imported here)
    control_plane,
    kubectl,
    operator_kubeconfig_path,
)


def _seed() -> int:
    text = os.environ.get("FUZZ_SEED", "0").strip() or "0"
    if text.lower() == "random":
        return random.SystemRandom().randrange(2**32)
    return int(text)


FUZZ_SEED = _seed()
FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))
FUZZ_DEADLINE_MS = float(os.environ.get("FUZZ_DEADLINE", "10")) * 1000
# Shrinking a failure to a minimal input takes minutes when an example costs a second (a
# git clone, a validate): `make fuzz` shrinks; `make test` reports the failing input as
# found, within pytest's per-test timeout.
FUZZ_SHRINK = os.environ.get("FUZZ_SHRINK", "0") not in ("", "0", "no", "false")
PHASES = [
    hypothesis.Phase.explicit,
    hypothesis.Phase.reuse,
    hypothesis.Phase.generate,
    hypothesis.Phase.target,
    *([hypothesis.Phase.shrink, hypothesis.Phase.explain] if FUZZ_SHRINK else []),
]

hypothesis.settings.register_profile(
    "flowpin-fuzz",
    deadline=FUZZ_DEADLINE_MS,
    database=None,  # the seed alone decides the cases: CI runs are reproducible
    derandomize=False,
    print_blob=True,
    phases=PHASES,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.function_scoped_fixture,  # fixtures here are set up once per test, on purpose
        HealthCheck.filter_too_much,
    ],
)

F = TypeVar("F", bound=Callable[..., Any])


def examples(weight: float) -> int:
    return max(1, round(FUZZ_EXAMPLES * weight))


def fuzz(weight: float = 1.0) -> Callable[[F], F]:
    """The suite's hypothesis settings for one test: `weight` times FUZZ_EXAMPLES examples,
    the campaign's seed, the hang-guard deadline."""

    def apply(test: F) -> F:
        configured = hypothesis.settings(
            hypothesis.settings.get_profile("flowpin-fuzz"), max_examples=examples(weight)
        )(test)
        return hypothesis.seed(FUZZ_SEED)(configured)  # type: ignore[no-any-return]

    return apply


def pytest_report_header(config: pytest.Config) -> str:
    return f"fuzz: FUZZ_SEED={FUZZ_SEED} FUZZ_EXAMPLES={FUZZ_EXAMPLES}"
