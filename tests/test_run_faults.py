"""Runs that survive what users do to them: checkpoints never non-finite, one writer per run
directory, metrics that cannot lose an epoch, options that bind on resume, every OS fault one clear
line, SIGTERM as Ctrl-C. Each fault is injected deterministically at the one function where it
happens (never a race on sleeps)."""
import errno
import io
import json
import os
import pickle
import signal
import tarfile

import numpy as np
import pytest

from minires import train as T
from minires.optim import SGD
from minires.train import trainer as TR
from minires import rundir
from minires.checkpoint import NonFiniteCheckpoint, load_checkpoint, save_checkpoint
from minires.models import cifar_resnet

TINY = ["--depth", "8", "--width", "4", "--batch-size", "8", "--train-limit", "64", "--no-progress",
        "--dataset", "synthetic"]


def run_cli(*args):
    return T.main([*TINY, *args])


def all_finite(path):
    ckpt = load_checkpoint(path)
    arrays = list(ckpt["model"].values())
    for part in ("optimizer", "schedule"):
        stack = [ckpt[part]]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                stack += node.values()
            elif isinstance(node, list):
                stack += node
            elif isinstance(node, np.ndarray):
                arrays.append(node)
    return all(np.isfinite(a).all() for a in arrays if a.dtype.kind == "f")


# --------------------------------------------------------------------------- 1. never non-finite

@pytest.mark.parametrize("lr", ["1e6", "1e3", "50"])
def test_every_checkpoint_written_is_finite_and_a_divergence_says_which_is_kept(tmp_path, lr, capsys):
    code = run_cli("--iterations", "30", "--lr", lr, "--out", str(tmp_path))
    printed = capsys.readouterr().out
    assert code in (0, 3)
    for name in ("last.npz", "best.npz"):
        if (tmp_path / name).exists():
            assert all_finite(tmp_path / name), f"{name} holds non-finite values (lr {lr})"
    if code == 3:
        assert "The last finite checkpoint" in printed or "No checkpoint was written" in printed
    rows = T.read_metrics(tmp_path)
    assert all(np.isfinite(r["test_loss"]) and np.isfinite(r["train_loss"]) for r in rows)


def test_save_checkpoint_refuses_non_finite_state_and_keeps_the_previous_file(tmp_path):
    model = cifar_resnet(8, width=4, seed=0)
    path = tmp_path / "m.npz"
    save_checkpoint(path, model)
    before = path.read_bytes()
    model.bn1.running_var[0] = np.inf
    with pytest.raises(NonFiniteCheckpoint, match=r"1 arrays hold NaN or infinite values \(model.bn1.running_var\)"):
        save_checkpoint(path, model)
    assert path.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["m.npz"]


def test_a_non_finite_test_loss_stops_the_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(TR, "evaluate", lambda *a, **k: (float("nan"), 0.9))
    assert run_cli("--iterations", "16", "--out", str(tmp_path)) == 3
    assert "the test loss became nan after iteration 8 (epoch 1)" in capsys.readouterr().out
    assert not (tmp_path / "last.npz").exists() and T.read_metrics(tmp_path) == []


# --------------------------------------------------------------------------- 2. one writer

def test_a_second_run_on_a_busy_directory_is_refused_with_the_owner(tmp_path, capsys):
    tmp_path.mkdir(exist_ok=True)
    with rundir.RunLock(str(tmp_path)):
        assert run_cli("--iterations", "2", "--out", str(tmp_path)) == 2
        err = capsys.readouterr().err
        assert f"is in use by another run ({{\"pid\": {os.getpid()}" in err and "choose another --out" in err
        assert not (tmp_path / "config.json").exists()
    assert run_cli("--iterations", "2", "--out", str(tmp_path)) == 0  # released: the next run goes on


def test_the_lock_dies_with_its_process(tmp_path):
    pid = os.fork()
    if pid == 0:  # the child takes the lock and is killed holding it
        rundir.RunLock(str(tmp_path)).__enter__()
        os.kill(os.getpid(), signal.SIGKILL)
    os.waitpid(pid, 0)
    with rundir.RunLock(str(tmp_path)):  # no stale lock
        pass


def test_a_full_disk_leaves_the_old_checkpoint_and_no_temporary_file(tmp_path, monkeypatch, capsys):
    assert run_cli("--iterations", "8", "--out", str(tmp_path)) == 0
    before = (tmp_path / "last.npz").read_bytes()

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "last.npz"))

    monkeypatch.setattr(np, "savez", full)
    assert run_cli("--iterations", "16", "--out", str(tmp_path), "--resume") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: No space left on device:") and err.endswith("free some space, or choose another --out")
    assert err.count("\n") == 0 and (tmp_path / "last.npz").read_bytes() == before
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


# --------------------------------------------------------------------------- 3. metrics

def test_a_kill_between_checkpoint_and_metrics_loses_no_epoch(tmp_path, monkeypatch):
    write = rundir.write_metrics
    calls = []

    def killed_on_the_second_epoch(out, rows):
        calls.append(len(rows))
        if len(rows) == 2:
            raise KeyboardInterrupt  # after last.npz of epoch 2, before its metrics row
        write(out, rows)

    monkeypatch.setattr(TR, "write_metrics", killed_on_the_second_epoch)
    assert run_cli("--iterations", "24", "--milestones", "12", "18", "--out", str(tmp_path)) == 130
    assert [r["epoch"] for r in T.read_metrics(tmp_path)] == [1]
    monkeypatch.setattr(TR, "write_metrics", write)
    assert run_cli("--iterations", "24", "--out", str(tmp_path), "--resume") == 0
    assert [r["epoch"] for r in T.read_metrics(tmp_path)] == [1, 2, 3]
    with open(tmp_path / "metrics.csv") as f:
        assert len(f.read().strip().splitlines()) == 4  # header and three epochs


def test_a_partial_last_row_is_dropped_with_a_message_naming_the_file(tmp_path):
    rundir.write_metrics(str(tmp_path), [{"epoch": 1}, {"epoch": 2}])
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 3, "iteration": 2')  # what a full disk leaves
    said = []
    assert [r["epoch"] for r in rundir.read_metrics(str(tmp_path), warn=said.append)] == [1, 2]
    assert said == [f"read_metrics: dropping the incomplete last row of {tmp_path / 'metrics.jsonl'} (line 3)"]
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1}\n{"epo\n{"epoch": 3}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl, line 2, is not a metrics row"):
        rundir.read_metrics(str(tmp_path))


# --------------------------------------------------------------------------- 4. options on resume

def test_options_that_differ_from_the_saved_run_are_refused_on_resume(tmp_path, capsys):
    assert run_cli("--iterations", "8", "--out", str(tmp_path)) == 0
    assert T.main(["--depth", "14", "--lr", "0.5", "--out", str(tmp_path), "--resume", "--iterations", "16"]) == 2
    err = capsys.readouterr().err
    assert "--resume: --depth is 14 here but 8 in the saved run" in err
    assert run_cli("--lr", "0.1", "--iterations", "16", "--out", str(tmp_path), "--resume") == 0  # the same: fine
    assert T.main(["--out", str(tmp_path), "--resume", "--iterations", "24", "--no-progress"]) == 0


# --------------------------------------------------------------------------- 5. one clear line

def test_eval_only_and_resume_on_a_bare_model_checkpoint(tmp_path, capsys):
    path = tmp_path / "bare.npz"
    save_checkpoint(path, cifar_resnet(14, width=4, seed=0))
    assert T.main(["--eval-only", str(path), "--dataset", "synthetic"]) == 0
    printed = capsys.readouterr().out
    assert "ResNet-14 from" in printed and "(a bare model checkpoint)" in printed
    (tmp_path / "run").mkdir()
    save_checkpoint(tmp_path / "run" / "last.npz", cifar_resnet(8, width=4, seed=0))
    assert run_cli("--out", str(tmp_path / "run"), "--resume") == 2
    assert "is a bare model checkpoint, not a training run's" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["out", "below"])
def test_out_that_is_a_file_is_one_line(tmp_path, where, capsys):
    (tmp_path / "file").write_text("not a folder")
    out = tmp_path / "file" if where == "out" else tmp_path / "file" / "run"  # EEXIST, ENOTDIR
    assert run_cli("--iterations", "2", "--out", str(out)) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    assert err.endswith("--out must be a directory (or a new name), not a file")


def test_a_read_only_file_system_is_one_line(tmp_path, monkeypatch, capsys):
    def read_only(path, *a, **k):
        raise OSError(errno.EROFS, "Read-only file system", path)

    monkeypatch.setattr(os, "makedirs", read_only)
    assert run_cli("--iterations", "2", "--out", str(tmp_path / "ro")) == 2
    assert capsys.readouterr().err.strip().endswith("choose an --out on a writable file system")


def test_a_malicious_cifar_pickle_is_one_line(tmp_path, capsys):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tar:
        for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"):
            raw = pickle.dumps(Evil(), protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    args = [a for a in TINY if a not in ("--dataset", "synthetic")]
    assert T.main([*args, "--data-dir", str(tmp_path), "--iterations", "2", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "refusing to unpickle it" in err and "Traceback" not in err


def test_more_threads_than_cpus_is_refused(capsys):
    with pytest.raises(SystemExit) as info:
        run_cli("--threads", "100000")
    assert info.value.code == 2 and f"more than this machine's {os.cpu_count()} CPUs" in capsys.readouterr().err


# --------------------------------------------------------------------------- 6. SIGTERM

def test_sigterm_saves_a_checkpoint_like_ctrl_c_and_exits_143(tmp_path, monkeypatch):
    step = SGD.step

    def step_then_term(self, *a, **k):
        step(self, *a, **k)
        if not hasattr(self, "_steps"):
            self._steps = 0
        self._steps += 1
        if self._steps == 5:
            signal.raise_signal(signal.SIGTERM)

    monkeypatch.setattr(SGD, "step", step_then_term)
    assert run_cli("--iterations", "16", "--out", str(tmp_path)) == 143
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is put back
    meta = load_checkpoint(tmp_path / "last.npz")["meta"]
    assert (meta["iteration"], meta["batch_in_epoch"]) == (5, 5)
    monkeypatch.setattr(SGD, "step", step)
    assert run_cli("--iterations", "16", "--out", str(tmp_path), "--resume") == 0
    assert [r["iteration"] for r in T.read_metrics(tmp_path)] == [8, 16]


def test_a_budget_that_ends_mid_epoch_leaves_its_row_to_the_longer_run(tmp_path):
    assert run_cli("--iterations", "4", "--milestones", "12", "18", "--out", str(tmp_path)) == 0
    assert [r["iteration"] for r in T.read_metrics(tmp_path)] == [4]  # half of epoch 1 (8 batches)
    assert run_cli("--iterations", "16", "--out", str(tmp_path), "--resume") == 0
    assert [r["iteration"] for r in T.read_metrics(tmp_path)] == [8, 16]
