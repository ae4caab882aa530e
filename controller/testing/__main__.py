"""`python -m controller.testing build|start`: build the control plane, or run one until
Ctrl-C (prints the KUBECONFIG to use), for developers poking at the operator by hand."""

from __future__ import annotations

import argparse
import signal
import sys

from controller.testing.cluster import Kubectl, install_flowpin
from controller.testing.controlplane import (
    ControlPlane,
    ControlPlaneError,
    ControlPlaneSettings,
    ensure_binary,
)
from controller.testing.signals import Stop, stop_on_signals


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m controller.testing")
    parser.add_argument("command", choices=["build", "start"])
    args = parser.parse_args()
    stop_on_signals()
    try:
        if args.command == "build":
            print(ensure_binary(ControlPlaneSettings()))
            return 0
        with ControlPlane() as plane:
            install_flowpin(Kubectl(env=plane.env()))
            print(f"control plane ready: export KUBECONFIG={plane.kubeconfig}", flush=True)
            while True:
                signal.pause()
    except ControlPlaneError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except Stop as stop:
        return 128 + stop.signum


if __name__ == "__main__":
    sys.exit(main())
