"""Ctrl-C and SIGTERM for the demo and `python -m controller.testing start`: each raises
`Stop` in the main thread, so the program unwinds through its `finally` blocks, which stop
every process it started and remove its directories."""

from __future__ import annotations

import signal
import sys

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stop(KeyboardInterrupt):
    """Ctrl-C or SIGTERM; `128 + signum` is the exit code a shell expects."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _stop(signum: int, frame: object) -> None:
    # Only once: a second Ctrl-C must not cut the stopping short (children would be SIGKILLed
    # by the kernel anyway, but the work directories would stay until the next start).
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    print(f"\n{signal.Signals(signum).name}: stopping", file=sys.stderr, flush=True)
    raise Stop(signum)


def stop_on_signals() -> None:
    """Raise `Stop` on SIGINT or SIGTERM from now on, even if our parent blocked them."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, _stop)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
