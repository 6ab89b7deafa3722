"""Every package the code imports is named in requirements.txt or requirements-dev.txt.

A package that happens to be installed on the machine makes the tests pass there and the
project fail on a fresh install; this test reads the imports themselves, so it fails first.
"""

import ast
import importlib.metadata
import os
import re
import sys
from pathlib import Path

from packaging.requirements import Requirement  # in requirements-dev.txt for this file (pytest needs it too)
from packaging.utils import canonicalize_name

from conftest import ROOT

# Imported only when a user asks for it, so it is no requirement; must stay inside functions.
OPTIONAL = {
    "wandb",  # train.py's wandb_log: logging to a service most runs never use
}


def python_files() -> list[Path]:
    """The project's own modules: every .py file under ROOT outside git's store, caches and
    virtual environments."""
    files = []
    for folder, subfolders, names in os.walk(ROOT):
        subfolders[:] = [name for name in subfolders if name not in {".git", "__pycache__"}
                         and not (Path(folder) / name / "pyvenv.cfg").exists()]
        files += [Path(folder) / name for name in names if name.endswith(".py")]
    return sorted(files)


def own_modules() -> set[str]:
    """Names that resolve to this repository: ROOT's modules and packages, and tests/ modules
    (tests import each other, with tests/ on sys.path)."""
    names = {path.stem for folder in (ROOT, ROOT / "tests") for path in folder.glob("*.py")}
    return names | {path.parent.name for path in ROOT.glob("*/__init__.py")}


def imports(path: Path) -> list[tuple[str, bool]]:
    """(top-level module name, whether the import sits inside a function) for each absolute
    import in the file."""
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        if isinstance(node, ast.Import):
            found.extend((alias.name.split(".")[0], in_function) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found.append((node.module.split(".")[0], in_function))
        inner = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(ast.parse(path.read_text(), filename=str(path)), False)
    return found


def third_party_imports() -> dict[str, list[tuple[Path, bool]]]:
    """Each imported module that is neither the standard library nor this repository's, with
    the files importing it and whether each import is inside a function."""
    own = own_modules()
    modules: dict[str, list[tuple[Path, bool]]] = {}
    for path in python_files():
        for name, in_function in imports(path):
            if name not in sys.stdlib_module_names and name not in own:
                modules.setdefault(name, []).append((path.relative_to(ROOT), in_function))
    return modules


def requirement_names(path: Path) -> set[str]:
    """Normalised (PEP 503) names of the distributions a requirements file installs, following
    -r includes."""
    names = set()
    for line in path.read_text().splitlines():
        line = re.sub(r"(^|\s)#.*", "", line).strip()  # pip's comments: a # at the start or after a space
        include = re.fullmatch(r"(?:-r|--requirement)[\s=]*(\S+)", line)
        if include:
            names |= requirement_names(path.parent / include[1])
        elif line and not line.startswith("-"):  # other pip options name no distribution
            names.add(canonicalize_name(Requirement(line).name))
    return names


def test_every_imported_package_is_a_requirement():
    required = requirement_names(ROOT / "requirements.txt")
    required |= requirement_names(ROOT / "requirements-dev.txt")
    distributions = importlib.metadata.packages_distributions()
    problems = []
    for module, uses in sorted(third_party_imports().items()):
        if module in OPTIONAL:
            continue
        files = sorted({str(path) for path, _ in uses})
        # Users install requirements.txt alone; the dev file is for what only the tests import.
        only_tests = all(path.parts[0] == "tests" for path, _ in uses)
        target = "requirements-dev.txt" if only_tests else "requirements.txt"
        providers = distributions.get(module)
        if not providers:
            problems.append(f"{module} (imported by {', '.join(files)}) is provided by no installed "
                            f"package: install it and add its package name to {target}")
        elif not {canonicalize_name(d) for d in providers} & required:
            problems.append(f"{module} (imported by {', '.join(files)}) is in no requirements file: "
                            f"add {' or '.join(sorted(set(providers)))} to {target}")
    assert not problems, "\n".join(problems)


def test_optional_packages_are_imported_only_inside_functions():
    uses = third_party_imports()
    for module in sorted(OPTIONAL):
        assert module in uses, f"nothing imports {module} any more: remove it from OPTIONAL"
        top_level = sorted({str(path) for path, in_function in uses[module] if not in_function})
        assert not top_level, (f"{module} is optional but imported at module level in "
                               f"{', '.join(top_level)}: import it inside the function that uses it, "
                               f"so the module still imports without it")
