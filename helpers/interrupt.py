"""Ctrl-C at any moment: one line and exit code 130, never a traceback, never a lost checkpoint.

A terminal's Ctrl-C sends SIGINT, which Python turns into a KeyboardInterrupt wherever the
program happens to be: possibly halfway through a checkpoint write, or inside a callback, where
it is printed and ignored. So the scripts take SIGINT over, in two ways:

- exit_on_ctrl_c, where there is nothing to save (sampling, plotting, benchmarking, a training
  run before its first step): the process ends at once, from inside the handler.
- StopRequest, from the first training call on: the first SIGINT only raises a flag; the
  training loop looks at it after each compiled call, saves a checkpoint and exits. The handler
  also restores the default action, so a second SIGINT ends the process at once, even while it
  waits inside a long call (where a Python handler would not run until the call returns).
  Checkpoints are written atomically, so even that loses nothing but the steps since the last
  save.
"""

import contextlib
import os
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


def restore_default_ctrl_c() -> None:
    """Python's own Ctrl-C (a KeyboardInterrupt) again, for a run of several processes."""
    signal.signal(signal.SIGINT, signal.default_int_handler)


EXIT_CODE = 130  # the shell's code for a program ended by SIGINT (128 + 2)


def stopped(message: str) -> None:
    """One line on stderr, and the exit code that says "interrupted"."""
    print(message, file=sys.stderr)
    sys.exit(EXIT_CODE)


def exit_on_ctrl_c(message: str) -> None:
    """From here on, Ctrl-C prints `message` and ends the process at once with EXIT_CODE: for a
    script (or a phase of one) with nothing to save. The process ends inside the handler, with
    no KeyboardInterrupt: one raised in a callback (jax runs some during garbage collection) is
    printed as "Exception ignored" and lost, and the script would run on."""

    def quit_now(signum, frame) -> None:
        with contextlib.suppress(Exception):  # a half-written stdout line must not stop the exit
            sys.stdout.flush()
        os.write(sys.stderr.fileno(), f"\n{message}\n".encode())
        os._exit(EXIT_CODE)

    signal.signal(signal.SIGINT, quit_now)
