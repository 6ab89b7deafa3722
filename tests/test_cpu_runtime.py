import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.cpu_runtime import HUGE_PAGES, NO_YNNPACK, YNN_FLAG

ROOT = Path(__file__).resolve().parent.parent
# Prints what the process sees after tune_cpu_runtime, and appends a line per start to a file.
SCRIPT = """
import os, sys
with open(sys.argv[1], "a") as starts:
    starts.write("start\\n")
from helpers.cpu_runtime import tune_cpu_runtime
tune_cpu_runtime(restart_env={"HANDED_ON": "by the first start"})
print(os.environ.get("GLIBC_TUNABLES"), "|", os.environ.get("XLA_FLAGS"), "|", sys.argv[2], "|",
      os.environ.get("HANDED_ON"))
"""
COUNT_FLAG = "--xla_force_host_platform_device_count=8"
linux_only = pytest.mark.skipif(sys.platform != "linux", reason="glibc's huge pages are a Linux setting")


def run(tmp_path, env_updates, packages=None):
    """Runs SCRIPT in a fresh process; `packages` is a folder put first on its import path."""
    settings = ("GLIBC_TUNABLES", "XLA_FLAGS", "JAX_PLATFORMS", "JAX_PLATFORM_NAME")
    env = {k: v for k, v in os.environ.items() if k not in settings}
    env.update(env_updates, PYTHONPATH=os.pathsep.join(str(p) for p in (packages, ROOT) if p))
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    starts = tmp_path / "starts.txt"
    out = subprocess.run([sys.executable, "-u", str(script), str(starts), "an argument"], env=env,
                         capture_output=True, text=True, check=True).stdout
    return out.strip().split(" | "), starts.read_text().count("start")


def fake_packages(tmp_path, files: dict[str, bytes]) -> Path:
    """A folder of stand-in packages, each file given by its path and contents."""
    folder = tmp_path / "packages"
    for name, contents in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(contents)
    return folder


@linux_only
def test_restarts_once_with_both_settings_and_the_same_arguments(tmp_path):
    (tunables, flags, argument, handed_on), starts = run(tmp_path, {"XLA_FLAGS": COUNT_FLAG})
    assert starts == 2 and tunables == HUGE_PAGES and argument == "an argument" and handed_on == "by the first start"
    assert flags == f"{COUNT_FLAG} {NO_YNNPACK}"


def test_leaves_what_the_user_set(tmp_path):
    mine = {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2", "XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=dot"}
    (tunables, flags, _, handed_on), starts = run(tmp_path, mine)
    assert (tunables, flags, starts) == (mine["GLIBC_TUNABLES"], mine["XLA_FLAGS"], 1)
    assert handed_on == "None"  # no restart: the process's environment stays its own


@pytest.mark.parametrize("platforms, plugin", [
    ({"JAX_PLATFORMS": "cuda"}, None),
    ({"JAX_PLATFORMS": "tpu,cpu"}, None),
    ({"JAX_PLATFORM_NAME": "gpu"}, None),
    ({}, "jax_cuda12_plugin/__init__.py"),
    ({}, "jax_rocm60_plugin/__init__.py"),
    ({}, "libtpu/__init__.py"),
    ({}, "jax_plugins/xla_cuda12/__init__.py"),
], ids=["JAX_PLATFORMS=cuda", "JAX_PLATFORMS=tpu,cpu", "JAX_PLATFORM_NAME=gpu", "cuda12", "rocm60", "libtpu",
        "jax_plugins"])
def test_does_nothing_when_jax_will_run_on_an_accelerator(tmp_path, platforms, plugin):
    packages = fake_packages(tmp_path, {plugin: b""}) if plugin else None
    (tunables, flags, *_), starts = run(tmp_path, {**platforms, "XLA_FLAGS": COUNT_FLAG}, packages)
    assert (tunables, flags, starts) == ("None", COUNT_FLAG, 1)


@linux_only
@pytest.mark.parametrize("platforms", [{"JAX_PLATFORMS": "cpu"}, {"JAX_PLATFORMS": "cpu,cuda"},
                                       {"JAX_PLATFORM_NAME": "CPU"}], ids=["cpu", "cpu,cuda", "NAME=CPU"])
def test_tunes_when_the_cpu_is_asked_for_though_an_accelerator_is_installed(tmp_path, platforms):
    packages = fake_packages(tmp_path, {"jax_cuda12_plugin/__init__.py": b""})
    (tunables, flags, *_), starts = run(tmp_path, platforms, packages)
    assert (tunables, flags, starts) == (HUGE_PAGES, NO_YNNPACK, 2)


@linux_only
@pytest.mark.parametrize("library, knows", [
    ("jaxlib/libjax_common.so", False),
    ("jaxlib/libjax_common.so", True),
    ("jaxlib/some/other/layout/_xla.so", True),  # found in any of the package's libraries
])
def test_adds_the_flag_only_if_jaxlib_knows_it(tmp_path, library, knows):
    # A stand-in jaxlib shadows the real one (nothing here imports it); its empty library is
    # one that mmap cannot map, so the search must pass over it.
    contents = b"\x7fELF other flags: xla_dump_to xla_cpu_use_thunk_runtime "
    packages = fake_packages(tmp_path, {"jaxlib/__init__.py": b"", "jaxlib/empty.so": b"",
                                        library: contents + (YNN_FLAG.encode() if knows else b"")})
    (tunables, flags, *_), starts = run(tmp_path, {"XLA_FLAGS": COUNT_FLAG}, packages)
    assert (tunables, starts) == (HUGE_PAGES, 2)  # huge pages either way
    assert flags == (f"{COUNT_FLAG} {NO_YNNPACK}" if knows else COUNT_FLAG)
