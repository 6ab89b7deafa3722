"""What a training run reports: a line on stdout, a record in out_dir/log.jsonl, out_dir/loss.png,
and wandb when asked. In a multi-process run only process 0 reports; the others stay quiet."""

import json
import time
from pathlib import Path

from helpers.errors import UserError

# loss.png is drawn at an evaluation once this long has passed since the last drawing (or the
# start), and always at the last one: frequent evaluations do not spend their time drawing, and
# a short run draws once.
PLOT_INTERVAL_S = 30.0


def duration(seconds: float) -> str:
    """1h02m, 3m20s or 45s: how long training has left, at the current pace (evaluations aside)."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def start_wandb(settings: dict):
    """The wandb module, with a run started; a missing package is the user's one-line fix."""
    try:
        import wandb
    except ImportError:
        raise UserError("wandb_log=True needs the wandb package: pip install wandb (or drop --wandb_log)") from None
    wandb.init(project=settings["wandb_project"], name=settings["wandb_run_name"], config=settings)
    return wandb


class TimeSplit:
    """Where a run's wall time went, from the process's start: each `charge(part)` gives the time
    since the previous charge to that part. train.py prints it when the run ends."""

    def __init__(self, started: float):
        self.last, self.parts = started, {}

    def charge(self, part: str) -> None:
        now = time.time()
        self.parts[part] = self.parts.get(part, 0.0) + now - self.last
        self.last = now

    def __str__(self) -> str:
        shares = ", ".join(f"{part} {seconds:.1f} s" for part, seconds in self.parts.items() if seconds >= 0.05)
        return f"{sum(self.parts.values()):.1f} s: {shares}"


class RunLog:
    def __init__(self, out: Path, settings: dict, main_process: bool):
        self.out, self.main_process, self.max_iters = out, main_process, settings["max_iters"]
        self.wandb = start_wandb(settings) if settings["wandb_log"] and main_process else None
        if main_process:  # a log that cannot be written fails now, not at the first evaluation
            try:
                open(out / "log.jsonl", "a").close()
            except OSError as error:
                raise UserError(f"cannot write {out / 'log.jsonl'} ({error.strerror or error}): make it writable "
                                "or pass another --out_dir") from None
        self.last_drawn = time.perf_counter()
        self.pace_from = (time.perf_counter(), 0)  # (time, iter_num) the pace is measured from

    def say(self, text: str) -> None:
        if self.main_process:
            print(text)

    def record(self, record: dict) -> None:
        if self.main_process:
            with open(self.out / "log.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")

    def restart_clock(self, iter_num: int) -> None:
        """Time spent from here on counts toward the pace (evaluations do not)."""
        self.pace_from = (time.perf_counter(), iter_num)

    def seconds_per_iter(self, iter_num: int) -> float:
        """The pace since the clock last started, which restarts from here."""
        start, first = self.pace_from
        self.restart_clock(iter_num)
        return (self.pace_from[0] - start) / (iter_num - first)

    def iteration(self, iter_num: int, loss: float, lr: float, seconds_per_iter: float, tokens_per_iter: int,
                  mfu: float) -> None:
        record = {"iter": iter_num, "loss": loss, "lr": lr, "ms_per_iter": 1000 * seconds_per_iter,
                  "tokens_per_s": tokens_per_iter / seconds_per_iter, "mfu": mfu}
        self.say(f"iter {iter_num}/{self.max_iters}: loss {loss:.4f}, lr {lr:.2e}, "
                 f"{record['ms_per_iter']:.1f} ms/iter ({1 / seconds_per_iter:.1f} it/s), "
                 f"{record['tokens_per_s']:,.0f} tokens/s, MFU {mfu:.1%}, "
                 f"ETA {duration((self.max_iters - iter_num) * seconds_per_iter)}")
        self.record(record)
        if self.wandb:
            self.wandb.log({"train/loss": loss, **{k: record[k] for k in ("lr", "tokens_per_s", "mfu", "ms_per_iter")}},
                           step=iter_num)

    def evaluation(self, iter_num: int, losses: dict, bits_per_byte: dict) -> None:
        """One evaluation: the loss of each split evaluated, and its bits per byte where the
        dataset counts its bytes."""
        self.say(f"step {iter_num}: " + ", ".join(
            f"{split} loss {loss:.4f}" + (f" ({bits_per_byte[split]:.4f} bpb)" if split in bits_per_byte else "")
            for split, loss in losses.items()))
        self.record({"iter": iter_num} | {f"{split}_loss": loss for split, loss in losses.items()}
                    | {f"{split}_bpb": bpb for split, bpb in bits_per_byte.items()})
        if self.main_process and (iter_num == self.max_iters or time.perf_counter() - self.last_drawn >= PLOT_INTERVAL_S):
            self.draw_losses()
            self.last_drawn = time.perf_counter()
        if self.wandb:
            self.wandb.log({"iter": iter_num} | {f"{split}/loss": loss for split, loss in losses.items()}
                           | {f"{split}/bpb": bpb for split, bpb in bits_per_byte.items()}, step=iter_num)

    def target_reached(self, iter_num: int, seconds: float, measure: str, value: float, target: float) -> None:
        """The run ends at a target: say when it got there, and draw its picture to the end."""
        self.say(f"reached val {measure} {value:.4f} <= {target} at iteration {iter_num} in {seconds:.1f} s")
        self.record({"iter": iter_num, f"target_{measure}": target, "reached_s": seconds})
        if self.main_process:
            self.draw_losses()

    def draw_losses(self) -> None:
        """out_dir/loss.png from the log so far. A picture is not worth stopping a run for: any
        failure is reported in a line and training goes on."""
        from helpers import figures  # matplotlib takes a good part of a second to import: only when drawing

        try:
            figures.plot_losses({self.out.resolve().name: figures.read_log(self.out)}, self.out / "loss.png")
        except Exception as error:  # noqa: BLE001 (whatever it is, the run is worth more than its picture)
            print(f"warning: could not draw {self.out / 'loss.png'}: {type(error).__name__}: {error}")
