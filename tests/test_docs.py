"""Every ```python block in docs/ runs, in order, one shared namespace per page; every ```py
block (an excerpt) is, line for line, in one of the examples it quotes; docs/mistakes.md is the
table of the mistakes the tests make."""

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
EXAMPLES = DOCS.parent / "examples"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
EXCERPT = re.compile(r"^```py\n(.*?)^```", re.MULTILINE | re.DOTALL)


GENERATED = DOCS / "mistakes.md"  # written from tests/mistakes.py's table, not by hand


@pytest.mark.parametrize("page", sorted(set(DOCS.glob("*.md")) - {GENERATED}), ids=lambda p: p.name)
def test_code_blocks_run(page):
    blocks = BLOCK.findall(page.read_text())
    assert blocks, f"{page.name} has no python blocks"
    namespace = {"__name__": f"docs.{page.stem}", "__file__": str(page)}
    for number, code in enumerate(blocks, 1):
        exec(compile(code, f"{page.name} block {number}", "exec"), namespace)


def test_excerpts_are_the_examples_own_lines():
    excerpts = EXCERPT.findall((DOCS / "adding_a_model.md").read_text())
    examples = [path.read_text() for path in EXAMPLES.glob("*.py")]
    assert len(excerpts) == 5
    for excerpt in excerpts:
        assert any(excerpt in example for example in examples), excerpt


def test_the_page_of_mistakes_is_the_tests_own_table():
    import mistakes

    assert GENERATED.read_text() == mistakes.render(), "run: python tests/mistakes.py > docs/mistakes.md"
