import json
import math

from helpers.run_log import RunLog, TimeSplit, duration


def test_the_eta_reads_as_hours_minutes_or_seconds():
    assert [duration(s) for s in (45.9, 200, 3720)] == ["45s", "3m20s", "1h02m"]


def test_only_the_main_process_prints_and_writes(tmp_path, capsys):
    settings = {"max_iters": 10, "wandb_log": False}
    for main_process in (True, False):
        out = tmp_path / str(main_process)
        out.mkdir()
        log = RunLog(out, settings, main_process)
        log.iteration(5, 2.5, 1e-3, 0.5, 1000, 0.25)
        log.evaluation(10, {"train": 2.0, "val": 2.25}, {"val": 1.5})
        printed = capsys.readouterr().out
        records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()] if main_process else []
        if main_process:
            assert "iter 5/10: loss 2.5000, lr 1.00e-03, 500.0 ms/iter (2.0 it/s), 2,000 tokens/s, MFU 25.0%, ETA 2s" in printed
            assert "step 10: train loss 2.0000, val loss 2.2500 (1.5000 bpb)\n" in printed
            assert records[0] == {"iter": 5, "loss": 2.5, "lr": 1e-3, "ms_per_iter": 500.0, "tokens_per_s": 2000.0,
                                  "mfu": 0.25}
            assert records[1] == {"iter": 10, "train_loss": 2.0, "val_loss": 2.25, "val_bpb": 1.5}
            assert (out / "loss.png").exists()  # the last evaluation always draws
        else:
            assert printed == "" and list(out.iterdir()) == []


def test_the_pace_counts_from_the_last_restart(monkeypatch):
    clock = iter([100.0, 100.0, 130.0, 150.0])
    monkeypatch.setattr("helpers.run_log.time.perf_counter", lambda: next(clock))
    log = RunLog(None, {"max_iters": 10, "wandb_log": False}, main_process=False)  # the clock reads 100 (twice)
    log.restart_clock(4)  # 130: an evaluation ended at iteration 4
    assert math.isclose(log.seconds_per_iter(9), 20.0 / 5)  # 150


def test_a_broken_log_line_or_a_failed_drawing_never_stops_the_run(tmp_path, capsys, monkeypatch):
    log = RunLog(tmp_path, {"max_iters": 10, "wandb_log": False}, main_process=True)
    log.iteration(5, 2.5, 1e-3, 0.5, 1000, 0.25)
    with open(tmp_path / "log.jsonl", "a") as f:
        f.write('{"iter": 7, "lo\n')  # a line cut short, as a crash can leave it
    log.evaluation(10, {"val": 2.25}, {})
    captured = capsys.readouterr()
    assert "line 2 is not a JSON record: skipped" in captured.err and (tmp_path / "loss.png").exists()

    def broken(*args, **kwargs):
        raise RuntimeError("no backend")

    monkeypatch.setattr("helpers.figures.plot_losses", broken)
    log.evaluation(10, {"val": 2.0}, {})
    assert "warning: could not draw" in (printed := capsys.readouterr().out) and "RuntimeError: no backend" in printed
    assert json.loads((tmp_path / "log.jsonl").read_text().splitlines()[-1]) == {"iter": 10, "val_loss": 2.0}


def test_the_time_split_gives_each_stretch_to_its_part(monkeypatch):
    now = iter([101.0, 103.5, 104.0, 110.0])
    monkeypatch.setattr("helpers.run_log.time.time", lambda: next(now))
    split = TimeSplit(started=100.0)
    for part in ("start-up", "compiling", "start-up", "training"):
        split.charge(part)
    assert split.parts == {"start-up": 1.5, "compiling": 2.5, "training": 6.0}
    assert str(split) == "10.0 s: start-up 1.5 s, compiling 2.5 s, training 6.0 s"
