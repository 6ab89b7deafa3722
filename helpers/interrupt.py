"""Ctrl-C during training: the first press asks the run to stop cleanly, a second quits at once.

A terminal's Ctrl-C sends SIGINT, which Python turns into a KeyboardInterrupt wherever the
program happens to be: possibly halfway through a checkpoint write, always losing the steps
since the last one. Here the first SIGINT only raises a flag; the training loop looks at it
after each compiled call, saves a checkpoint and exits. The handler also restores the default
action, so a second SIGINT ends the process at once, even while it waits inside a long call
(where a Python handler would not run until the call returns). Checkpoints are written
atomically, so even that loses nothing but the steps since the last save.
"""

import signal
import sys


class StopRequest:
    """Created once, at the start of a run: `requested` turns True at the first Ctrl-C."""

    def __init__(self):
        self.requested = False
        signal.signal(signal.SIGINT, self.request)

    def request(self, signum, frame) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        print("\nCtrl-C: stopping after the steps under way, with a checkpoint (Ctrl-C again quits at once)",
              flush=True)


EXIT_CODE = 130  # the shell's code for a program ended by SIGINT (128 + 2)


def stopped(message: str) -> None:
    """One line on stderr, and the exit code that says "interrupted"."""
    print(message, file=sys.stderr)
    sys.exit(EXIT_CODE)
