"""Mistakes a user can fix, and how scripts report them: one line, no traceback, non-zero exit."""

import contextlib
import functools
import sys


class UserError(Exception):
    """Something the user asked for cannot work; the message says what and how to fix it."""


def report_user_errors(main):
    """Run a script's main(); a UserError becomes `error: <message>` on stderr and exit code 2.

    Anything else is a bug in this repository, so it keeps its full traceback.
    """

    @functools.wraps(main)
    def guarded(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)

    return guarded


@contextlib.contextmanager
def memory_is_the_users(fix: str):
    """An allocation that the device (or the host, for a CPU) refuses ends the script with one line
    saying `fix`: the sizes the user chose are what to change, and a traceback would not say so."""
    try:
        yield
    except Exception as error:
        if "RESOURCE_EXHAUSTED" not in str(error):  # XLA's status for an allocation it could not make
            raise
        raise UserError(f"out of memory ({str(error).splitlines()[0]}): {fix}") from None
