"""A character corpus that needs no download: the English documentation inside Python itself.

Two sources, both shipped with every CPython: the reference topics behind `help()`
(pydoc_data.topics, ~0.5 MB) and the docstrings of the standard library's modules, classes
and functions (~1.6 MB), read with `ast` from the source files, so nothing is imported or run.
Pieces with characters outside printable ASCII are skipped to keep the vocabulary small. The
result is deterministic for a given Python version.
"""

import ast
import platform
import sys
import sysconfig
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

from helpers.data import PrepareArguments, write_char_dataset  # noqa: E402
from helpers.errors import report_user_errors  # noqa: E402

HERE = Path(__file__).parent
SKIPPED_PACKAGES = {"site-packages", "test", "tests", "idlelib", "lib2to3", "turtledemo"}
PRINTABLE = set(map(chr, range(32, 127))) | {"\n"}


def reference_topics() -> list[str]:
    from pydoc_data.topics import topics

    return [topics[name] for name in sorted(topics)]


def stdlib_docstrings() -> list[str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    found = []
    for path in sorted(root.rglob("*.py")):
        if SKIPPED_PACKAGES & set(path.relative_to(root).parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc:
                    found.append(doc)
    return found


def corpus() -> str:
    pieces = [p.strip() for p in reference_topics() + stdlib_docstrings()]
    return "\n\n".join(p for p in pieces if p and set(p) <= PRINTABLE) + "\n"


@report_user_errors
def main():
    args = PrepareArguments(__doc__, HERE).parse()
    print(f"reading the documentation of Python {platform.python_version()}", flush=True)
    write_char_dataset(corpus(), args.out_dir, source="Python's documentation")


if __name__ == "__main__":
    main()
