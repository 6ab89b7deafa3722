import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.cpu_runtime import HUGE_PAGES, NO_YNNPACK

ROOT = Path(__file__).resolve().parent.parent
# Prints what the process sees after tune_cpu_runtime, and appends a line per start to a file.
SCRIPT = """
import os, sys
with open(sys.argv[1], "a") as starts:
    starts.write("start\\n")
from helpers.cpu_runtime import tune_cpu_runtime
tune_cpu_runtime()
print(os.environ.get("GLIBC_TUNABLES"), "|", os.environ.get("XLA_FLAGS"), "|", sys.argv[2])
"""


def run(tmp_path, env_updates):
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "XLA_FLAGS")}
    env.update(env_updates, PYTHONPATH=str(ROOT))
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    starts = tmp_path / "starts.txt"
    out = subprocess.run([sys.executable, "-u", str(script), str(starts), "an argument"], env=env,
                         capture_output=True, text=True, check=True).stdout
    return out.strip().split(" | "), starts.read_text().count("start")


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's huge pages are a Linux setting")
def test_restarts_once_with_both_settings_and_the_same_arguments(tmp_path):
    (tunables, flags, argument), starts = run(tmp_path, {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"})
    assert starts == 2 and tunables == HUGE_PAGES and argument == "an argument"
    assert flags == f"--xla_force_host_platform_device_count=8 {NO_YNNPACK}"


def test_leaves_what_the_user_set(tmp_path):
    mine = {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2", "XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=dot"}
    (tunables, flags, _), starts = run(tmp_path, mine)
    assert (tunables, flags, starts) == (mine["GLIBC_TUNABLES"], mine["XLA_FLAGS"], 1)
