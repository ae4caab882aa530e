"""`make demo` keeps working: run it to the end (without waiting for Ctrl-C)."""

from __future__ import annotations

import re
import subprocess
import sys

from controller.testing.controlplane import REPO_ROOT


def test_demo_runs_to_the_end() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "controller.testing.demo", "--no-wait"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=480,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "examples" in out and "Synced commit" in out
    # Everything flowpin, as `kubectl get flowpin -A` lists it: once the source is applied,
    # and again at the end.
    assert out.count("$ kubectl get flowpin -A\n") == 2
    listing = out.split("$ kubectl get flowpin -A\n", 1)[1].split("\n==> ", 1)[0]
    assert re.search(r"^NAMESPACE +NAME +URL +REF +COMMIT +VERSIONS +READY", listing, re.M)
    assert re.search(r"^flowpin-demo +workflowsource\.flowpin\.dev/examples +/", listing, re.M)
    assert re.search(
        r"^flowpin-demo +workflowdeployment\.flowpin\.dev/lead-nurture\.prod +lead-nurture +prod ",
        listing,
        re.M,
    )
    assert re.search(r"^flowpin-demo +environment\.flowpin\.dev/staging ", listing, re.M)
    assert re.search(
        r"^flowpin-demo +workflowversion\.flowpin\.dev/onboarding\.v2\.1\.3 ", listing, re.M
    )
    assert "AwaitingApproval" in out and "approved lead-nurture 1.5.0 in prod" in out
    assert "git pins 1.5.0, running 1.4.0" in out  # the rollback, as kubectl shows it
    assert "RolledBack" in out and "Activated" in out  # flowpin history after the release
    # The schedule fires every minute: a scheduled run may be parked on 1.6.0 too.
    assert re.search(r"eligible [45] \(ready \d, deferred \d\), skipped \d+, blocked 2", out)
    assert "step 'wait-vip' does not exist in version 2.0.0" in out  # the dry run's reason
    assert re.search(r"progress: +\[#+\.+\] \d+% \d/[45]", out)  # a gradual migration
    assert re.search(r"[45] runs migrated to 2.0.0", out)
    assert "CanaryAborted" in out and "more than maxFailedRuns 1" in out
    assert "Stopped the operator and the control plane" in out
