"""The training command end to end: outputs, resume bit for bit, Ctrl-C, NaN, eval-only."""
import csv
import json
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest

from minires import data as datasets
from minires import train as T
from minires.optim import SGD
from minires.train import trainer as TR
from minires.checkpoint import load_checkpoint

# A tiny net and a short run keep each case to a second or two on a 2-core CPU.
TINY = ["--depth", "8", "--width", "4", "--batch-size", "32", "--train-limit", "256", "--no-progress"]


def run_cli(*args):
    return T.main([*TINY, *args])


def checkpoint_arrays(path):
    ckpt = load_checkpoint(path)
    return ckpt["model"], ckpt["optimizer"], ckpt["meta"]


def test_cli_synthetic_writes_every_output(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli("--dataset", "synthetic", "--iterations", "12", "--out", str(out)) == 0
    for name in ("config.json", "metrics.csv", "metrics.jsonl", "last.npz", "best.npz", "curves.png"):
        assert (out / name).is_file(), name
    rows = T.read_metrics(out)
    # 256 images / 32 = 8 batches per epoch: 12 iterations are one full epoch and half of the next.
    assert [r["iteration"] for r in rows] == [8, 12]
    with open(out / "metrics.csv") as f:
        assert [int(r["iteration"]) for r in csv.DictReader(f)] == [8, 12]
    printed = capsys.readouterr().out
    assert "epoch   1" in printed and "final test error" in printed
    # lr drops at 1/2 and 3/4 of the run (iterations 6 and 9): the last epoch ends at 0.001
    assert rows[-1]["lr"] == pytest.approx(0.001)
    assert json.loads((out / "config.json").read_text())["depth"] == 8


def test_training_error_falls_on_synthetic_data(tmp_path):
    out = tmp_path / "run"
    assert run_cli("--dataset", "synthetic", "--epochs", "4", "--lr", "0.05", "--out", str(out)) == 0
    errs = [r["train_err"] for r in T.read_metrics(out)]
    assert errs[-1] < errs[0] - 0.1, errs


@pytest.mark.genuine_data
def test_cli_on_the_learners_subset_of_genuine_images(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli("--subset", "4000", "1000", "--iterations", "3", "--out", str(out)) == 0
    rows = T.read_metrics(out)
    assert rows[-1]["iteration"] == 3 and 0 <= rows[-1]["test_err"] <= 1
    assert json.loads((out / "config.json").read_text())["data"]["sha256"] == datasets.SAMPLE_SHA256
    assert "the learner's subset" in capsys.readouterr().out
    assert T.main(["--eval-only", str(out / "last.npz")]) == 0


def test_cli_on_a_cifar10_archive_records_its_identity_never_its_path(tmp_path, cifar_archive, capsys):
    folder, path, _, arrays = cifar_archive
    out = tmp_path / "run"
    assert run_cli("--data-dir", str(path), "--subset", "300", "60", "--iterations", "3", "--out", str(out)) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["data"] == datasets.identity_of("cifar10", (arrays[0][:300], arrays[1][:300], arrays[2][:60],
                                                                arrays[3][:60]), [300, 60])
    assert "data_dir" not in config and str(folder) not in (out / "config.json").read_text()
    meta = load_checkpoint(out / "last.npz")["meta"]
    assert meta["data"] == config["data"] and "data_dir" not in meta["config"]
    assert "data: CIFAR-10, the first 300 training and 60 test images" in capsys.readouterr().out
    assert T.main(["--eval-only", str(out / "last.npz"), "--data-dir", str(folder)]) == 0
    assert "on 60 images" in capsys.readouterr().out


def test_resume_finds_moved_data_and_refuses_other_data(tmp_path, cifar_archive, capsys):
    folder, path, _, _ = cifar_archive
    out, moved = tmp_path / "run", tmp_path / "moved"
    moved.mkdir()
    (moved / "renamed.tar.gz").write_bytes(path.read_bytes())
    common = ["--subset", "300", "60", "--milestones", "6", "9", "--out", str(out)]
    assert run_cli("--data-dir", str(folder), "--iterations", "3", *common) == 0
    assert run_cli("--data-dir", str(moved), "--iterations", "6", "--resume", "--out", str(out)) == 0  # moved: fine
    other = tmp_path / "other"
    other.mkdir()
    from cifar_archive import write_cifar_archive
    write_cifar_archive(other, seed=1)
    capsys.readouterr()
    assert run_cli("--data-dir", str(other), "--iterations", "9", "--resume", "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert "resume: the run in" in err and "point --data-dir at the run's data" in err


def test_missing_data_leaves_no_run_directory_and_gives_three_ways(tmp_path, no_data, capsys):
    out = tmp_path / "runs" / "resnet8"
    assert run_cli("--iterations", "2", "--out", str(out)) == 2
    err = capsys.readouterr().err
    for way in ("Three ways forward", str(no_data / "cifar-10-python.tar.gz"), "--data-dir", "$MINIRES_DATA_DIR",
                "--dataset synthetic"):
        assert way in err, way
    assert not (tmp_path / "runs").exists() and not no_data.exists()
    assert run_cli("--data-dir", str(tmp_path / "nowhere"), "--iterations", "2", "--out", str(out)) == 2
    assert "which does not exist" in capsys.readouterr().err and not (tmp_path / "nowhere").exists()


def test_bad_subset_is_an_argument_error(capsys):
    with pytest.raises(SystemExit) as info:
        run_cli("--subset", "4000", "0")
    assert info.value.code == 2 and "subset must be two positive ints" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_cli("--dataset", "synthetic", "--subset", "40", "10")
    assert "dataset 'synthetic' has none" in capsys.readouterr().err


def test_training_without_matplotlib_ends_with_one_line_naming_the_extra(tmp_path, monkeypatch, capsys):
    import builtins
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ModuleNotFoundError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    out = tmp_path / "run"
    assert run_cli("--dataset", "synthetic", "--iterations", "3", "--out", str(out)) == 0
    printed = capsys.readouterr().out
    assert "curves.png not drawn: matplotlib is not installed (pip install 'minires[train]' adds it)" in printed
    assert "final test error" in printed and not (out / "curves.png").exists()


def test_a_long_cpu_run_says_its_estimated_time_up_front(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(TR, "ESTIMATE_AFTER", 3)
    monkeypatch.setattr(TR, "ESTIMATE_ABOVE_S", 0.0)
    assert run_cli("--dataset", "synthetic", "--iterations", "12", "--out", str(tmp_path / "a")) == 0
    printed = capsys.readouterr().out
    assert printed.count("estimated time: about") == 1 and "for the 9 iterations left" in printed
    assert "--epochs N or --iterations N" in printed and "--device gpu" in printed
    monkeypatch.setattr(TR, "ESTIMATE_ABOVE_S", 1e9)  # a short run says nothing
    assert run_cli("--dataset", "synthetic", "--iterations", "12", "--out", str(tmp_path / "b")) == 0
    assert "estimated time" not in capsys.readouterr().out


def test_resume_is_bit_for_bit(tmp_path):
    common = ["--dataset", "synthetic", "--milestones", "6", "9"]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert run_cli(*common, "--iterations", "12", "--out", str(whole)) == 0
    assert run_cli(*common, "--iterations", "6", "--out", str(parts)) == 0
    assert run_cli("--iterations", "12", "--out", str(parts), "--resume") == 0
    a_model, a_opt, a_meta = checkpoint_arrays(whole / "last.npz")
    b_model, b_opt, b_meta = checkpoint_arrays(parts / "last.npz")
    assert a_meta["iteration"] == b_meta["iteration"] == 12
    for k in a_model:
        np.testing.assert_array_equal(a_model[k], b_model[k], err_msg=k)
    for i, s in a_opt["state"].items():
        np.testing.assert_array_equal(s["momentum_buffer"], b_opt["state"][i]["momentum_buffer"])
    assert T.read_metrics(whole)[-1]["train_loss"] == T.read_metrics(parts)[-1]["train_loss"]


def _interrupt_after(trainer, iteration):
    """Send a real SIGINT right after the optimiser step of ``iteration`` (1-based)."""
    step = trainer.optimizer.step

    def step_then_interrupt(*a, **kw):
        result = step(*a, **kw)
        if trainer.iteration + 1 == iteration:
            signal.raise_signal(signal.SIGINT)
        return result

    trainer.optimizer.step = step_then_interrupt


def test_ctrl_c_saves_a_checkpoint_and_resume_matches(tmp_path):
    def cfg(out, iterations):
        return T.TrainConfig(depth=8, width=4, batch_size=32, train_limit=256, dataset="synthetic",
                             iterations=iterations, milestones=[6, 9], out=str(out), progress=False)

    whole = T.train(cfg(tmp_path / "whole", 12), log=lambda *a: None)["trainer"]

    trainer = T.Trainer(cfg(tmp_path / "cut", 12), log=lambda *a: None)
    os.makedirs(trainer.cfg.out, exist_ok=True)
    _interrupt_after(trainer, 5)  # in the middle of the first epoch (8 batches)
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    meta = load_checkpoint(tmp_path / "cut" / "last.npz")["meta"]
    assert (meta["iteration"], meta["batch_in_epoch"], meta["epoch"]) == (5, 5, 0)

    resumed = T.train(cfg(tmp_path / "cut", 12), resume=True, log=lambda *a: None)["trainer"]
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_nan_loss_stops_with_message_and_keeps_last_good_checkpoint(tmp_path, capsys):
    cfg = T.TrainConfig(depth=8, width=4, batch_size=32, train_limit=256, dataset="synthetic",
                        iterations=16, out=str(tmp_path), progress=False)
    trainer = T.Trainer(cfg, log=print)
    step = trainer.optimizer.step

    def poisoned_step(*a, **kw):
        step(*a, **kw)
        if trainer.iteration + 1 == 10:  # in the second epoch, after last.npz of epoch 1 exists
            trainer.model.fc.weight.data[...] = np.nan

    trainer.optimizer.step = poisoned_step
    with pytest.raises(T.NonFiniteLoss, match="iteration 11"):
        trainer.run()
    meta = load_checkpoint(tmp_path / "last.npz")["meta"]
    assert meta["iteration"] == 8
    assert all(np.isfinite(v).all() for v in load_checkpoint(tmp_path / "last.npz")["model"].values())


def test_cli_reports_nan_with_exit_code(tmp_path, capsys):
    # An absurd learning rate blows the logits up within a few steps.
    code = run_cli("--dataset", "synthetic", "--iterations", "16", "--lr", "1e30", "--out", str(tmp_path))
    assert code == 3
    printed = capsys.readouterr().out
    assert "The last finite checkpoint" in printed or "No checkpoint was written" in printed


def test_bad_options_give_clear_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:  # a bad value: argparse usage message, exit code 2
        run_cli("--dataset", "synthetic", "--depth", "21", "--iterations", "1", "--out", str(tmp_path))
    assert exit_info.value.code == 2
    assert "6n+2" in capsys.readouterr().err
    assert T.main(["--resume", "--out", str(tmp_path / "nothing"), "--no-progress"]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        T.main(["--epochs", "1", "--iterations", "2"])


def test_plan_budgets_and_milestones():
    cfg = T.TrainConfig()
    assert T.plan(cfg, 391) == (64000, [32000, 48000])  # the paper's
    cfg = T.TrainConfig(epochs=10)
    assert T.plan(cfg, 32) == (320, [160, 240])
    cfg = T.TrainConfig(epochs=10, milestones=[5, 8])
    assert T.plan(cfg, 32) == (320, [160, 256])


def test_warmup_is_on_for_resnet110_only():
    from minires.optim import WarmupUntil
    opt = None  # schedules work without an optimiser (lr_at only)
    assert isinstance(T.make_schedule(T.TrainConfig(depth=110), opt, [50]), WarmupUntil)
    assert not isinstance(T.make_schedule(T.TrainConfig(depth=56), opt, [50]), WarmupUntil)


# ----------------------------------------------------------------------------- the command line

def test_val_split_holds_out_images_and_reports_validation_error(tmp_path):
    # README: `--val-split 5000`; this once died with "too many values to unpack".
    out = tmp_path / "run"
    assert run_cli("--dataset", "synthetic", "--val-split", "64", "--iterations", "6", "--out", str(out)) == 0
    row = T.read_metrics(out)[-1]
    assert row["val_err"] is not None and 0 <= row["val_err"] <= 1
    meta = load_checkpoint(out / "last.npz")["meta"]
    assert (meta["epoch"], meta["iteration"]) == (1, 6)  # 256 - 64 = 192 images: 6 batches of 32
    trainer = T.Trainer(T.TrainConfig(dataset="synthetic", train_limit=256, val_split=0.25, depth=8, width=4))
    assert (len(trainer.x_train), len(trainer.x_val)) == (192, 64)


@pytest.mark.parametrize("option,value,message", [
    ("--batch-size", "0", "batch_size must be an integer >= 1"),
    ("--eval-batch-size", "-5", "eval_batch_size must be an integer >= 1"),
    ("--width", "0", "width must be an integer >= 1"),
    ("--iterations", "0", "iterations must be an integer >= 1"),
    ("--epochs", "-1", "epochs must be an integer >= 1"),
    ("--train-limit", "0", "train_limit must be an integer >= 1"),
    ("--lr", "-0.1", "invalid lr=-0.1"),
    ("--momentum", "nan", "momentum must be finite"),
    ("--val-split", "2.5", "val_split is a number of images"),
    ("--milestones", "-3", "invalid each milestone=-3.0"),
    ("--depth", "21", "6n+2"),
    ("--batch-size", "x", "invalid int value"),
])
def test_bad_values_give_a_usage_error_not_a_traceback(option, value, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        T.main(["--dataset", "synthetic", option, value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "usage: python -m minires.train" in err and message in err and "Traceback" not in err


def test_every_option_is_generated_from_the_config_with_its_default():
    from dataclasses import fields

    from minires.train.cli import build_parser, config_from_args
    parser = build_parser()
    assert config_from_args(parser.parse_args([])) == T.TrainConfig()
    flags = {a.dest for a in parser._actions}
    assert {f.name for f in fields(T.TrainConfig)} <= flags
    cfg = config_from_args(parser.parse_args(["--warmup", "on", "--no-progress", "--plain", "--milestones", "2", "3"]))
    assert (cfg.warmup, cfg.progress, cfg.plain, cfg.milestones) == (True, False, True, [2.0, 3.0])


def test_degradation_reuses_the_training_defaults():
    from minires.experiments import degradation
    args = degradation.build_parser().parse_args([])
    default = T.TrainConfig()
    for name in ("batch_size", "width", "train_limit", "dataset", "data_dir", "cuda_graph"):
        assert getattr(args, name) == getattr(default, name), name
    # The preset decides the device, warm-up and seeds unless they are given.
    assert args.device is None and args.warmup is None and args.seeds is None


# ----------------------------------------------------------------------------- checkpoints

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "run_before_restructure"


def test_checkpoint_carries_the_pixel_mean_and_eval_only_uses_it(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    assert run_cli("--dataset", "synthetic", "--iterations", "2", "--out", str(out)) == 0
    meta = load_checkpoint(out / "last.npz")["meta"]
    x_train = T.load_data(T.config_from_dict(meta["config"]))[0]
    np.testing.assert_array_equal(meta["pixel_mean"], datasets.per_pixel_mean(x_train))
    # --eval-only no longer recomputes the mean from the training set.
    monkeypatch.setattr(datasets, "per_pixel_mean", lambda x: pytest.fail("recomputed the pixel mean"))
    assert T.main(["--eval-only", str(out / "last.npz")]) == 0
    assert "test error" in capsys.readouterr().out


def test_a_checkpoint_from_before_the_restructuring_resumes_and_evaluates(tmp_path, capsys):
    # tests/fixtures/run_before_restructure: written by the code before this layout (commit
    # 25dd115): python -m minires.train --dataset synthetic --depth 8 --width 4 --batch-size 32
    #     --train-limit 64 --iterations 2 --no-progress --out run
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    assert "pixel_mean" not in load_checkpoint(run / "last.npz")["meta"]
    assert T.main(["--eval-only", str(run / "last.npz")]) == 0
    out = capsys.readouterr().out
    assert "predates the stored pixel mean" in out and "test error 90.00%" in out  # as it reported then
    assert T.main(["--out", str(run), "--resume", "--iterations", "4", "--no-progress"]) == 0
    rows = T.read_metrics(run)
    assert [r["iteration"] for r in rows] == [2, 4]
    assert "pixel_mean" in load_checkpoint(run / "last.npz")["meta"]
