"""Data-parallel training over MPI (minires.distributed, nn.SyncBatchNorm, train --distributed).

The MPI tests launch ``mpiexec -n 2 python ...`` subprocesses (with timeouts, so a hang fails
instead of blocking CI) and skip, with the reason, where mpi4py or mpiexec is missing. The
others need no MPI.
"""
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import minires.functional as F
from minires import data, distributed, gpu_available, nn
from minires import train as T
from minires.checkpoint import load_checkpoint
from minires.engine import Tensor

REPO = Path(__file__).resolve().parents[1]
WORKER = REPO / "tests" / "distributed_worker.py"
sys.path.insert(0, str(REPO / "tests"))
import distributed_worker as W  # noqa: E402


def _mpiexec():
    beside_python = Path(sys.executable).parent / "mpiexec"
    return str(beside_python) if beside_python.exists() else shutil.which("mpiexec")


MPIEXEC = _mpiexec()
MPI_MISSING = ("mpi4py is not installed (pip install 'minires[mpi]')" if importlib.util.find_spec("mpi4py") is None
               else "mpiexec not found (pip install mpich)" if MPIEXEC is None else None)
needs_mpi = pytest.mark.skipif(MPI_MISSING is not None, reason=str(MPI_MISSING))

# A tiny net and a short run (as in test_train.py): each 2-rank launch takes a few seconds.
TINY = ["--depth", "8", "--width", "4", "--batch-size", "32", "--train-limit", "256", "--no-progress",
        "--dataset", "synthetic", "--milestones", "6", "9"]


def mpirun(*args, ranks=2, timeout=120, check=True):
    """``mpiexec -n ranks python *args`` from the repository root, one BLAS thread per rank."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([MPIEXEC, "-n", str(ranks), sys.executable, *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"mpiexec exited with {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def train_2_ranks(*args, **kw):
    return mpirun("-m", "minires.train", *TINY, "--distributed", *args, **kw)


# --------------------------------------------------------------------------- no MPI needed

def test_import_minires_never_imports_mpi4py():
    code = ("import sys, minires, minires.train, minires.distributed, minires.nn; "
            "assert 'mpi4py' not in sys.modules, 'mpi4py was imported'")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)


def test_distributed_without_mpi4py_says_how_to_install(tmp_path):
    # sys.modules["mpi4py"] = None makes "import mpi4py" fail as if it were not installed
    code = ("import sys; sys.modules['mpi4py'] = None; from minires import train; "
            f"sys.exit(train.main(['--dataset', 'synthetic', '--iterations', '1', '--out', {str(tmp_path)!r}, '--distributed']))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "needs mpi4py" in proc.stderr and "pip install 'minires[mpi]'" in proc.stderr


def test_without_distributed_the_group_is_this_process_alone():
    group = distributed.setup(T.TrainConfig())
    assert (group.rank, group.size, group.is_root) == (0, 1, True)
    loader = data.Loader(*data.synthetic_cifar(64, 8)[:2], 16)
    assert group.shard(loader) is loader
    assert group.average_gradients(None, (1.5, 3)) == (1.5, 3.0)


def test_sharded_loader_slices_partition_each_global_batch():
    x, y = data.synthetic_cifar(72, 8)[:2]
    make = lambda: data.Loader(x, y, 16, shuffle=True, augment=True, rng=3)  # noqa: E731; 4 batches of 16, one of 8
    whole = list(make())
    shards = [list(distributed.ShardedLoader(make(), rank, 4)) for rank in range(4)]
    assert len(distributed.ShardedLoader(make(), 0, 4)) == len(whole) == 5
    for b, (xb, yb) in enumerate(whole):
        np.testing.assert_array_equal(np.concatenate([s[b][0] for s in shards]), xb)  # same augmentation too
        np.testing.assert_array_equal(np.concatenate([s[b][1] for s in shards]), yb)
    assert [len(s[-1][1]) for s in shards] == [2, 2, 2, 2]


def test_sharded_loader_refuses_unequal_slices():
    x, y = data.synthetic_cifar(72, 8)[:2]
    with pytest.raises(ValueError, match="3 ranks cannot share a batch of 16"):
        distributed.ShardedLoader(data.Loader(x, y, 16), 0, 3)
    with pytest.raises(ValueError, match=r"last batch of each epoch has 8 images.*--train-limit 64"):
        distributed.ShardedLoader(data.Loader(x, y, 16), 0, 16)


def test_sync_batchnorm_alone_is_batchnorm2d_and_converts_in_place():
    x = np.random.default_rng(0).standard_normal((8, 3, 5, 5))
    bn = nn.BatchNorm2d(3).double()
    bn.weight.data[...] = [0.5, 1.5, 2.0]
    ref = bn(Tensor(x)).data
    model = nn.Sequential(nn.Conv2d(3, 3, 1), bn)
    weight = bn.weight
    model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    sync = model[1]
    assert type(sync) is nn.SyncBatchNorm and sync.weight is weight  # the optimiser's arrays live on
    np.testing.assert_allclose(sync(Tensor(x)).data, ref, rtol=1e-12)
    assert set(sync.state_dict()) == set(bn.state_dict())


class CountingGroup:
    """A stand-in process group of one rank that counts the allreduces it is asked for."""

    def __init__(self):
        self.calls = 0

    def all_reduce_sum(self, array):
        self.calls += 1
        return array


@pytest.mark.parametrize("track_running_stats", [True, False])
def test_sync_batchnorm_communicates_in_training_mode_only(track_running_stats):
    """Evaluation may run on rank 0 alone (the trainer does), so eval mode must never wait for
    other ranks, even without running statistics (each rank then normalises its own batch)."""
    group = CountingGroup()
    bn = nn.SyncBatchNorm(3, track_running_stats=track_running_stats, process_group=group).double()
    x = Tensor(np.random.default_rng(1).standard_normal((4, 3, 5, 5)), requires_grad=True)
    bn(x).sum().backward()
    assert group.calls == 3  # forward: sums, then sums of squares; backward: the two dx sums in one
    bn.eval()
    y = bn(x)
    assert group.calls == 3, "eval mode communicated"
    if not track_running_stats:
        ref = nn.BatchNorm2d(3, track_running_stats=False).double().eval()
        np.testing.assert_allclose(y.data, ref(x).data, rtol=1e-12)


# --------------------------------------------------------------------------- under mpiexec -n 2

def _single_process_step(halves):
    """The reference for the 2-rank step: one process, on the whole batch or on its two halves."""
    x, y, model = W.one_step_inputs()
    opt = W.sgd(model)
    if halves:  # batch norm sees each half alone, as local BN on 2 ranks does
        loss = (F.cross_entropy(model(Tensor(x[:64])), y[:64]) + F.cross_entropy(model(Tensor(x[64:])), y[64:])) * 0.5
    else:
        loss = F.cross_entropy(model(Tensor(x)), y)
    loss.backward()
    grads = {n: p.grad.copy() for n, p in model.named_parameters()}
    opt.step()
    return loss.item(), grads, {n: p.data for n, p in model.named_parameters()}, dict(model.named_buffers())


@needs_mpi
@pytest.mark.parametrize("bn", ["sync", "local"])
@pytest.mark.parametrize("device", ["cpu", pytest.param("gpu", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not gpu_available(), reason="no GPU: CuPy is not installed or no CUDA device answers")])])
def test_one_step_on_2_ranks_equals_one_process(bn, device, tmp_path):
    """On the GPU both ranks share the device; the sums travel through host buffers unless MPI is CUDA-aware."""
    mpirun(WORKER, f"step-{bn}", tmp_path, device)
    loss, grads, params, buffers = _single_process_step(halves=bn == "local")
    for rank in (0, 1):
        got = np.load(tmp_path / f"rank{rank}.npz")
        assert got["loss_sum"] == pytest.approx(loss * 128, rel=1e-12)
        for n in grads:
            np.testing.assert_allclose(got[f"grad.{n}"], grads[n], rtol=1e-10, atol=1e-10, err_msg=f"rank {rank}: grad {n}")
            np.testing.assert_allclose(got[f"param.{n}"], params[n], rtol=1e-10, atol=1e-10, err_msg=f"rank {rank}: {n}")
        if bn == "sync":  # the running statistics are the whole batch's too (unbiased with the global count)
            for n in buffers:
                np.testing.assert_allclose(got[f"buffer.{n}"], buffers[n], rtol=1e-10, atol=1e-12, err_msg=n)


@needs_mpi
def test_2_rank_run_and_its_resume_continue_exactly_as_one_run(tmp_path):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    out = train_2_ranks("--iterations", "12", "--out", whole).stdout
    assert "data-parallel over 2 MPI ranks" in out and out.count("epoch   1") == 1  # rank 0 alone logs
    train_2_ranks("--iterations", "6", "--out", parts)
    train_2_ranks("--iterations", "12", "--out", parts, "--resume")
    a, b = load_checkpoint(whole / "last.npz"), load_checkpoint(parts / "last.npz")
    assert a["meta"]["iteration"] == b["meta"]["iteration"] == 12
    for k in a["model"]:
        np.testing.assert_array_equal(a["model"][k], b["model"][k], err_msg=k)
    for i, s in a["optimizer"]["state"].items():
        np.testing.assert_array_equal(s["momentum_buffer"], b["optimizer"]["state"][i]["momentum_buffer"])
    untimed = lambda rows: [{k: v for k, v in r.items() if k not in ("epoch_time_s", "img_per_s")} for r in rows]  # noqa: E731
    assert untimed(T.read_metrics(whole)) == untimed(T.read_metrics(parts))


@needs_mpi
def test_a_number_of_ranks_that_does_not_divide_the_batch_is_a_clear_error(tmp_path):
    proc = mpirun("-m", "minires.train", *TINY, "--distributed", "--iterations", "1", "--out", tmp_path,
                  ranks=3, timeout=60, check=False)
    assert proc.returncode == 2
    assert "3 ranks cannot share a batch of 32 images equally" in proc.stderr, proc.stderr


@needs_mpi
def test_sync_bn_run_resumes_on_another_number_of_ranks(tmp_path):
    """A 2-rank --sync-bn run resumed by one process trains the model of an uninterrupted 2-rank run
    (up to float32 summation order), as synchronised statistics do not depend on the number of ranks."""
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    train_2_ranks("--sync-bn", "--iterations", "12", "--out", whole)
    train_2_ranks("--sync-bn", "--iterations", "6", "--out", parts)
    assert T.main(["--iterations", "12", "--out", str(parts), "--resume", "--no-progress"]) == 0
    a, b = load_checkpoint(whole / "last.npz"), load_checkpoint(parts / "last.npz")
    assert b["meta"]["config"]["sync_bn"] and not b["meta"]["config"]["distributed"]
    for k in a["model"]:
        # measured: differences up to 2e-5 after 12 float32 steps; local BN would differ by 2e-2
        np.testing.assert_allclose(a["model"][k], b["model"][k], rtol=1e-3, atol=1e-4, err_msg=k)


@needs_mpi
@pytest.mark.parametrize("case, reason", [("raise", "RuntimeError: rank 1 breaks on purpose"),
                                          ("nan", "NonFiniteLoss: the loss became nan at iteration 4")])
def test_a_failing_rank_stops_both_within_seconds(case, reason, tmp_path):
    start = time.monotonic()
    proc = mpirun(WORKER, case, tmp_path, timeout=60, check=False)
    elapsed = time.monotonic() - start
    assert proc.returncode != 0
    assert f"rank 1 of 2 failed with {reason}" in proc.stderr and "MPI Abort" in proc.stderr, proc.stderr
    assert elapsed < 30, f"took {elapsed:.0f} s"  # a start-up of a few seconds, then the abort


@needs_mpi
def test_ctrl_c_stops_every_rank_at_the_same_step_and_saves(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [MPIEXEC, "-n", "2", sys.executable, "-m", "minires.train", *TINY, "--distributed",
           "--iterations", "4000", "--out", str(tmp_path)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "metrics.jsonl").exists() and time.monotonic() < deadline:
            time.sleep(0.1)  # wait for the end of epoch 1: both ranks are deep in the loop
        assert (tmp_path / "metrics.jsonl").exists(), "the 2-rank run wrote no epoch within 120 s"
        proc.send_signal(signal.SIGINT)  # as Ctrl-C in a terminal: mpiexec forwards it to every rank
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    meta = load_checkpoint(tmp_path / "last.npz")["meta"]
    assert f"interrupted at iteration {meta['iteration']}; checkpoint saved" in out
    assert meta["iteration"] > 8 and "MPI Abort" not in err
