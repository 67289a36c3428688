"""What one MPI rank runs for tests/test_distributed.py: ``mpiexec -n 2 python tests/distributed_worker.py CASE OUT``.

Cases (a third argument, 'gpu', runs the step cases on CuPy):
  step-sync, step-local   one SGD step of a float64 ResNet-8 on the same 128 images: this rank's
                          averaged gradients and updated parameters go to OUT/rank<r>.npz
  raise, nan              a training run in which rank 1 raises (or its loss becomes NaN) at
                          iteration 3; the job must end, non-zero, within seconds
  raise-stalled-launcher  as raise, on a machine too busy to run the launcher in time (see
                          stall_the_launcher): OUT/unread_at_abort.txt holds how many bytes of
                          rank 1's output its launcher had not read when rank 1 sent MPI Abort
"""
import os
import signal
import sys
import threading

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from minires import distributed  # noqa: E402
from minires.backend import to_numpy  # noqa: E402
from minires import train as T  # noqa: E402
from minires.engine import Tensor  # noqa: E402
import minires.functional as F  # noqa: E402
from minires.models import cifar_resnet  # noqa: E402
from minires.optim import SGD  # noqa: E402

BATCH = 128


def one_step_inputs():
    """The shared batch and model, drawn identically on every rank (and by the test itself)."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((BATCH, 3, 32, 32))
    y = rng.integers(0, 10, BATCH)
    model = cifar_resnet(8, width=4, seed=0).double()
    return x, y, model


def sgd(model):
    return SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)


def step(case, out, device="cpu"):
    group = distributed.setup(T.TrainConfig(distributed=True, batch_size=BATCH, device=device))
    x, y, model = one_step_inputs()
    model = model.to(device)
    x, y = Tensor(x).to(device).data, Tensor(y).to(device).data
    if case == "step-sync":
        model = group.convert_sync_batchnorm(model)
    group.broadcast_parameters(model)
    k = BATCH // group.size
    mine = slice(group.rank * k, (group.rank + 1) * k)
    opt = sgd(model)
    loss = F.cross_entropy(model(Tensor(x[mine])), y[mine])
    loss.backward()
    (loss_sum,) = group.average_gradients(model, (loss.item() * k,))
    grads = {f"grad.{n}": to_numpy(p.grad) for n, p in model.named_parameters()}
    opt.step()
    params = {f"param.{n}": to_numpy(p.data) for n, p in model.named_parameters()}
    buffers = {f"buffer.{n}": to_numpy(b) for n, b in model.named_buffers()}
    np.savez(os.path.join(out, f"rank{group.rank}.npz"), loss_sum=loss_sum, **grads, **params, **buffers)


def _unread(fd):
    """Bytes written to the pipe ``fd`` that its reader has not read yet (Linux: FIONREAD); the
    test's own measure, not minires.distributed._unread_bytes, which is under test."""
    import array
    import fcntl
    import termios
    count = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, count)
    return count[0]


class _RecordingComm:
    """``comm`` (every call passed on), whose ``Abort`` first records in OUT/unread_at_abort.txt how
    many bytes of this rank's stderr the launcher has not read yet, then lets the launcher run."""

    def __init__(self, comm, out, resume):
        self._comm, self._out, self._resume = comm, out, resume

    def __getattr__(self, name):
        return getattr(self._comm, name)

    def Abort(self, code):
        with open(os.path.join(self._out, "unread_at_abort.txt"), "w") as f:
            f.write(str(_unread(sys.stderr.fileno())))
        try:
            self._comm.Abort(code)
        finally:
            self._resume()  # MPICH's Abort returns until mpiexec's SIGKILL arrives


def stall_the_launcher(group, out):
    """From now on, until this rank waits for it, the launcher gets no CPU: made certain here.

    Under MPICH's mpiexec the rank's parent, hydra_pmi_proxy, reads the rank's stderr and relays
    both that output and the rank's MPI Abort to mpiexec, which exits as soon as the abort
    arrives. On a loaded machine the proxy may not run between the rank's last words and its
    abort; it then finds both waiting and handles the abort first. SIGSTOP reproduces exactly
    that: the proxy runs again when the rank first asks whether its output has been read
    (``distributed._unread_bytes``), or right after the rank sent MPI Abort. Returns False
    (nothing done) when the parent is not hydra's proxy.
    """
    proxy = os.getppid()
    try:
        with open(f"/proc/{proxy}/comm") as f:
            if not f.read().startswith("hydra_pmi_prox"):
                return False
    except OSError:
        return False
    resumed = threading.Event()

    def resume():
        if not resumed.is_set():
            resumed.set()
            os.kill(proxy, signal.SIGCONT)

    os.kill(proxy, signal.SIGSTOP)
    # a safety net, not the mechanism: a stopped proxy must never outlive a broken test
    safety_net = threading.Timer(20, resume)
    safety_net.daemon = True
    safety_net.start()
    group.comm = _RecordingComm(group.comm, out, resume)
    unread_bytes = getattr(distributed, "_unread_bytes", None)
    if unread_bytes is not None:
        def resume_then_look(fd):
            resume()
            return unread_bytes(fd)
        distributed._unread_bytes = resume_then_look
    return True


def failing_run(case, out):
    cfg = T.TrainConfig(depth=8, width=4, batch_size=32, train_limit=256, dataset="synthetic", iterations=400,
                        out=out, progress=False, distributed=True)
    group = distributed.setup(cfg)
    original = T.Trainer.__init__

    def init_then_sabotage(self, *a, **kw):
        original(self, *a, **kw)
        if group.rank != 1:
            return
        step = self.optimizer.step

        def sabotaged_step():
            step()
            if self.iteration + 1 == 3:
                if case == "raise-stalled-launcher" and not stall_the_launcher(group, out):
                    open(os.path.join(out, "no_hydra_proxy"), "w").close()
                if case.startswith("raise"):
                    raise RuntimeError("rank 1 breaks on purpose")
                self.model.fc.weight.data[...] = np.nan  # the next loss is NaN on rank 1 only
        self.optimizer.step = sabotaged_step

    T.Trainer.__init__ = init_then_sabotage
    T.train(cfg, log=lambda *a: None)


if __name__ == "__main__":
    case, out = sys.argv[1], sys.argv[2]
    if case.startswith("step"):
        step(case, out, *sys.argv[3:])
    else:
        failing_run(case, out)
