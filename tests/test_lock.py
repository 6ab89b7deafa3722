"""One run per out_dir: a second launch refuses, naming the first; a killed run frees it."""

import json
import signal
import subprocess
import sys
import time

from conftest import ROOT, TINY, run_script


def test_a_second_run_in_the_same_out_dir_refuses_and_a_killed_one_frees_it(tmp_path, char_dataset):
    out = tmp_path / "run"
    common = [f"--dataset={char_dataset}", *TINY, f"--out_dir={out}"]
    first = subprocess.Popen([sys.executable, "train.py", *common, "--max_iters=100000"], cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log = out / "log.jsonl"
    deadline = time.time() + 120
    while not (log.exists() and any("loss" in json.loads(line) for line in log.read_text().splitlines())):
        assert first.poll() is None and time.time() < deadline, "the first run did not start training"
        time.sleep(0.05)

    second = run_script("train.py", *common, "--max_iters=10", check=False)
    assert second.returncode == 2 and "Traceback" not in second.stderr
    assert second.stderr.strip().count("\n") == 0 and "in use by another training run" in second.stderr
    assert f"pid {first.pid} " in second.stderr

    first.send_signal(signal.SIGKILL)  # no chance to clean up: the kernel releases the lock
    first.wait()
    third = run_script("train.py", *common, "--max_iters=10", "--overwrite")  # the killed run may have saved
    assert "iter 10/10" in third.stdout
