"""The mistakes the tests make on purpose, and what each prints: the tests check every row, and
docs/mistakes.md is this table written out (tests/test_docs.py checks it is up to date).

    python tests/mistakes.py > docs/mistakes.md

A test module lists its rows as MISTAKES and names itself in MODULES below.
"""

import dataclasses
import importlib
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]  # tests/ and the repository

MODULES = ("test_bad_input", "test_data", "test_prepare", "test_tokenizer", "test_sample", "test_plot", "test_bench",
           "test_interrupt")


@dataclasses.dataclass(frozen=True)
class Mistake:
    """One mistake: the script it is made with, what is wrong, the arguments (or the damage to a
    file) that make it, and the part of the one line printed that the test asserts."""

    script: str
    what: str
    args: tuple[str, ...]
    prints: str
    setup: str = ""  # a file damaged before the script runs, in words; the test's fixture does it

    @property
    def id(self) -> str:
        return self.what


def rows() -> list[Mistake]:
    return [row for name in MODULES for row in importlib.import_module(name).MISTAKES]


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "\\n")


def render() -> str:
    lines = ["# Mistakes and what they print", "",
             "Every mistake below ends the script with one line on stderr, `error: ...`, and exit code 2;",
             "Ctrl-C prints its own line and exits with 130. The tests make each mistake and check the",
             "line; this page is written from their table (`python tests/mistakes.py > docs/mistakes.md`),",
             "so it cannot drift from what the code prints.",
             "", "| script | mistake | arguments or setup | the line says |", "|---|---|---|---|"]
    for row in rows():
        made = " ".join(f"`{cell(arg)}`" for arg in row.args) or ""
        if row.setup:
            made = f"{made}; {row.setup}" if made else row.setup
        lines.append(f"| {row.script} | {cell(row.what)} | {made} | `{cell(row.prints)}` |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
