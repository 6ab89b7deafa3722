"""Every ```python block in docs/ runs, in order, one shared namespace per page."""

import re
from pathlib import Path

import pytest

from conftest import TINY, run_script
from helpers import checkpoint

DOCS = Path(__file__).resolve().parents[1] / "docs"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


@pytest.mark.parametrize("page", sorted(DOCS.glob("*.md")), ids=lambda p: p.name)
def test_code_blocks_run(page):
    blocks = BLOCK.findall(page.read_text())
    assert blocks, f"{page.name} has no python blocks"
    namespace = {"__name__": f"docs.{page.stem}", "__file__": str(page)}
    for number, code in enumerate(blocks, 1):
        exec(compile(code, f"{page.name} block {number}", "exec"), namespace)


def test_the_guides_model_file_trains_and_samples_through_the_scripts(tmp_path, char_dataset):
    # docs/adding_a_model.md section 3: its first two blocks in a file of one's own, passed
    # first to train.py and then to sample.py, exactly as a reader would.
    blocks = BLOCK.findall((DOCS / "adding_a_model.md").read_text())
    model_file = tmp_path / "my_model.py"
    model_file.write_text("\n".join(blocks[:2]))
    out = tmp_path / "out"
    run_script("train.py", model_file, "--arch=tiny-shift", f"--dataset={char_dataset}", f"--out_dir={out}",
               *[arg for arg in TINY if not arg.startswith("--n_layer")], "--max_iters=4", "--eval_interval=4")
    header = checkpoint.read_header(out / "ckpt.eqx")
    assert header["iter_num"] == 4 and header["model_config"]["layers"] == ["attention", "shift", "attention", "shift"]
    sampled = run_script("sample.py", model_file, f"--out_dir={out}", "--start=the ", "--max_new_tokens=20")
    assert sampled.stdout.startswith("the ") and len(sampled.stdout) > len("the ") + 20
    # Without the file, the checkpoint names a mixer this process does not know: one clear line.
    refused = run_script("sample.py", f"--out_dir={out}", "--max_new_tokens=5", check=False)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "unknown mixer 'shift'" in refused.stderr and "pass the file that registers them" in refused.stderr
