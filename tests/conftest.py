import errno
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_SHAKESPEARE = ROOT.parent / "shared" / "data" / "tinyshakespeare" / "input.txt"
SHARED_STORIES = ROOT.parent / "shared" / "data" / "tinystories" / "sample.txt"
sys.path.insert(0, str(ROOT))
# Every script the tests launch, and the tests themselves, share one JAX compilation cache for
# the session: the same small shapes compile once, not once per launched training run. The
# workers of one parallel run (pytest -n) share one too: xdist gives them the same run id.
_run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID")
_cache = Path(tempfile.gettempdir()) / f"jax-cache-{_run_id}" if _run_id else Path(tempfile.mkdtemp(prefix="jax-cache-"))
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(_cache))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import components  # noqa: E402,F401 (the optional built-ins, registered as the scripts register them)
from helpers.cpu_runtime import cpu_backend_expected  # noqa: E402
from helpers.data import write_char_dataset  # noqa: E402
from helpers.tokenizer import EOT  # noqa: E402

if not cpu_backend_expected():
    # On a GPU, XLA multiplies float32 matrices in TF32 (10-bit mantissas) unless asked
    # otherwise, and the tests compare float32 paths to 1e-5: they ask for full float32, in the
    # scripts they launch too. A CPU computes full float32 anyway.
    os.environ.setdefault("JAX_DEFAULT_MATMUL_PRECISION", "highest")


def corpus_text() -> str:
    """Real Tiny Shakespeare where ../shared exists (this project's machines); a made-up text
    elsewhere (a clone anywhere else)."""
    if SHARED_SHAKESPEARE.exists():
        return SHARED_SHAKESPEARE.read_text()[:200_000]
    words = "the cat sat on a mat and the dog ran to the old red barn in the rain".split()
    return " ".join(words[(i * 7) % len(words)] for i in range(30_000)) + "\n"


@pytest.fixture(scope="session")
def char_dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "chars"
    write_char_dataset(corpus_text(), out)
    return out


def stories(n: int | None = 40) -> list[str]:
    """The first n stories (None: all) of the TinyStories sample where ../shared exists (this
    project's machines), made-up ones elsewhere."""
    if SHARED_STORIES.exists():
        return [s.strip() for s in SHARED_STORIES.read_text().split(EOT) if s.strip()][:n]
    names = ["Tom", "Lily", "Ben", "Mia"]
    return [f"Once upon a time, {names[i % 4]} found a {['red', 'big', 'small'][i % 3]} ball. "
            f"{names[i % 4]} was happy and played all day. The end." for i in range(n or 400)]


@pytest.fixture(scope="session")
def bpe_dataset(tmp_path_factory) -> Path:
    """Stories in a 512-token BPE trained on them, as data/tinystories/prepare.py makes it."""
    import datasets

    from helpers.documents import prepare

    out = tmp_path_factory.mktemp("data") / "stories"
    prepare(datasets.Dataset.from_dict({"text": stories(400)}), out, 0.1, seed=0, threads=2, vocab_size="512")
    return out


def run_script(*args, check=True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{args} failed:\n{result.stdout}\n{result.stderr}")
    return result


# A small run for train.py. Its MFU is against a given peak: measuring this CPU's (as a user's
# run does, and tests/test_flops.py checks) would add seconds to every launch.
TINY = ["--n_layer=2", "--n_head=2", "--n_embd=32", "--block_size=32", "--batch_size=8",
        "--eval_iters=2", "--log_interval=1", "--learning_rate=3e-3", "--warmup_iters=2",
        "--lr_decay_iters=20", "--min_lr=3e-4", "--peak_flops=1e11"]


def run_main(script: str, *args) -> subprocess.CompletedProcess:
    """A script's main() run in this process, as `python script args` would run it up to its first
    error: its exit code and what it printed. Each call loads the script afresh (its settings
    are module globals, which a run changes), so runs cannot see each other. For mistakes caught
    before training starts: far cheaper than a new process, which imports jax again."""
    import contextlib
    import io
    import runpy

    namespace = runpy.run_path(str(ROOT / script), run_name="run_main")
    stdout, stderr, code = io.StringIO(), io.StringIO(), 0
    argv, on_ctrl_c = sys.argv, signal.getsignal(signal.SIGINT)  # a script may take Ctrl-C over
    sys.argv = [str(ROOT / script), *map(str, args)]
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            namespace["main"]()
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else 1
    finally:
        sys.argv = argv
        signal.signal(signal.SIGINT, on_ctrl_c)
    return subprocess.CompletedProcess(args, code, stdout.getvalue(), stderr.getvalue())


def assert_one_line(result, message: str, code: int = 2):
    """The script exited with `code` and printed one line on stderr that contains `message`."""
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and result.stderr.strip().count("\n") == 0, result.stderr
    assert message in result.stderr, result.stderr


# A file that is no text: the PNG signature, then every byte value.
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


def launch(*args, env=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *map(str, args)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def stopped(proc: subprocess.Popen, printed: str = "") -> subprocess.CompletedProcess:
    """What a launched script printed and how it ended, after a Ctrl-C."""
    proc.send_signal(signal.SIGINT)
    try:
        stdout, stderr = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("Ctrl-C did not stop it within 60 s") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, printed + stdout, stderr)


def refuse(monkeypatch, method: str, name: str):
    """Path.`method` fails on paths through `name` as the OS fails a user without permission (a
    root user, as on CI machines, is never refused, so chmod cannot make the mistake)."""
    real = getattr(Path, method)

    def refused(path, *args, **kwargs):
        if name in path.parts:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(Path, method, refused)
