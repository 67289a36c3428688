"""Data-parallel training over MPI (mpi4py), as ChainerMN and PyTorch's DistributedDataParallel.

Data parallelism is an allreduce of gradients. N processes (*ranks*, started together by
``mpiexec -n N``) hold identical copies of the model. At every step each rank takes its own
slice of the global batch, runs forward and backward on it, and then the ranks *average their
gradients* with one allreduce (every rank sends its gradient and receives the sum), so that
every rank applies the same update and the copies stay identical. For a loss that is a mean
over the batch, with B images split into N equal slices::

    L = (1/B) sum_i loss_i = (1/N) sum_r L_r,   L_r = (N/B) sum_{i in slice r} loss_i
    =>  grad L = (1/N) sum_r grad L_r           (the average of the ranks' gradients)

so N ranks train the very model one process would on the whole batch, up to the order of
floating-point sums. Batch norm is the exception: its statistics belong to the batch a layer
sees. By default each rank normalises with the statistics of its own slice (PyTorch DDP's
default, and cheaper); ``nn.SyncBatchNorm`` sums them over all ranks (see docs/distributed.md).

This module is the whole of the distributed machinery; the training loop only calls it::

    dist = setup(cfg)                       # this process alone, or this rank of an MPI job
    model = dist.convert_sync_batchnorm(model)   # only with --sync-bn
    dist.broadcast_parameters(model)        # every rank starts from rank 0's weights
    loader = dist.shard(loader)             # each rank's slice of every global batch
    ... loss.backward()
    stats = dist.average_gradients(model, stats)   # one allreduce: gradients and batch statistics
    if dist.is_root: ...                    # rank 0 alone writes logs and checkpoints
    with dist.abort_on_error(): ...         # an error on any rank stops every rank (MPI Abort)

Without ``cfg.distributed`` nothing here touches MPI, and ``import minires`` never imports
mpi4py: only ``setup`` does, for a distributed run.
"""
import array
import contextlib
import ctypes
import os
import stat
import sys
import time
import traceback

import numpy as np

from .backend import get_array_module, to_numpy

INSTALL_HINT = ("pip install 'minires[mpi]'  (or: pip install mpi4py mpich, which brings mpiexec), "
                "then launch with: mpiexec -n 2 python -m minires.train --distributed ...")


class ProcessGroup:
    """This process alone: rank 0 of 1. Every collective is the identity.

    ``MPIProcessGroup`` overrides the three primitives (``all_reduce_sum``, ``broadcast_``,
    ``all_gather``) and ``abort``; everything else is written once, here, on top of them.
    """

    rank, size = 0, 1

    @property
    def is_root(self):
        """True on rank 0, the rank that writes logs, metrics and checkpoints."""
        return self.rank == 0

    # --- the primitives
    def all_reduce_sum(self, array):
        """Sum ``array`` over all ranks, in place (every rank gets the sum); returns it."""
        return array

    def broadcast_(self, array):
        """Overwrite ``array`` in place with rank 0's."""

    def all_gather(self, obj):
        """[rank 0's obj, rank 1's obj, ...] on every rank (small Python objects)."""
        return [obj]

    def abort(self, message, code=1):
        """Print ``message`` and stop every rank with exit code ``code``."""
        print(message, file=sys.stderr, flush=True)
        raise SystemExit(code)

    # --- built on them
    def broadcast_parameters(self, model):
        """Give every rank rank 0's parameters and buffers (running statistics too).

        Called at the start and after a resume: the ranks must start identical, since from
        then on only identical updates keep them so. Checks first that every rank holds the
        same model (names, shapes, dtypes), with a clear error otherwise.
        """
        if self.size == 1:
            return
        arrays = [(name, p.data) for name, p in model.named_parameters()] + list(model.named_buffers())
        signature = [(name, tuple(a.shape), str(a.dtype)) for name, a in arrays]
        others = self.all_gather(signature)
        for rank, theirs in enumerate(others):
            if theirs != signature:
                diff = next((f"{a} vs {b}" for a, b in zip(signature, theirs) if a != b), f"{len(signature)} vs {len(theirs)} arrays")
                raise RuntimeError(f"broadcast_parameters: rank {rank} holds another model than rank {self.rank}: {diff}")
        for _, array in arrays:
            self.broadcast_(array)

    def average_gradients(self, model, stats=()):
        """Average ``p.grad`` over the ranks for every parameter of ``model``; sum ``stats``.

        One allreduce over one flat buffer: all gradients, one "has a gradient" flag per
        parameter, then ``stats`` (numbers such as this rank's loss sum, error count and image
        count, so that every rank knows the whole batch's). Returns the summed ``stats`` as a
        tuple of floats. One buffer rather than one message per parameter (59 for ResNet-20):
        each message pays the network's latency, and with no overlap of communication and
        backward here, buckets would only add messages.

        A parameter without a gradient on some ranks (a block skipped by stochastic depth)
        counts as a zero gradient there, as in DDP; one without a gradient on every rank keeps
        ``grad = None``, as in one process. The buffer has the parameters' dtype, so in float32
        training the summed stats are float32 too (exact for counts below 2**24).
        """
        stats = tuple(float(s) for s in stats)
        if self.size == 1:
            return stats
        params = [p for p in model.parameters() if p.requires_grad]
        dtypes = {p.data.dtype for p in params}
        if len(dtypes) != 1:
            raise TypeError(f"average_gradients: the parameters must share one dtype, got {sorted(map(str, dtypes))}")
        xp, dtype = get_array_module(params[0].data), dtypes.pop()
        has_grad = [p.grad is not None for p in params]
        parts = [p.grad.reshape(-1) if p.grad is not None else xp.zeros(p.data.size, dtype=dtype) for p in params]
        flat = xp.concatenate(parts + [xp.asarray(has_grad + list(stats), dtype=dtype)])
        self.all_reduce_sum(flat)
        n_grad = flat.size - len(has_grad) - len(stats)
        flat[:n_grad] /= dtype.type(self.size)  # the sum of the ranks' gradients -> their mean
        tail = to_numpy(flat[n_grad:])
        start = 0
        for p, any_grad in zip(params, tail[:len(params)]):
            p.grad = flat[start:start + p.data.size].reshape(p.data.shape) if any_grad > 0 else None
            start += p.data.size
        return tuple(float(s) for s in tail[len(params):])

    def should_stop(self, requested):
        """True on every rank when any rank asks to stop (Ctrl-C reached it).

        Ranks must leave the training loop after the same step, or the others would wait
        forever in the next allreduce; a one-number allreduce settles it. An agreed stop is
        an orderly exit (rank 0 saves a checkpoint, every rank exits with 130), not an abort.
        """
        if self.size == 1:
            return bool(requested)
        flag = np.array([1.0 if requested else 0.0])
        self.stopping = bool(self.all_reduce_sum(flag)[0] > 0)
        return self.stopping

    def shard(self, loader):
        """``loader`` as this rank sees it: its slice of every global batch (see ``ShardedLoader``)."""
        return loader if self.size == 1 else ShardedLoader(loader, self.rank, self.size)

    def convert_sync_batchnorm(self, model):
        """``model`` with every BatchNorm2d synchronised over this group's ranks (``nn.SyncBatchNorm``)."""
        from .nn import SyncBatchNorm
        return SyncBatchNorm.convert_sync_batchnorm(model, self)

    @contextlib.contextmanager
    def abort_on_error(self):
        """An exception (or an unagreed Ctrl-C) on this rank stops *every* rank, never a hang.

        Without it a failing rank would exit while the others wait in their next allreduce
        for ever. With it the rank prints the traceback and a one-line reason, then calls MPI
        Abort, which makes mpiexec end all ranks with a non-zero exit code. Checkpoints are
        written atomically (temporary file, then rename), so the last complete one survives.
        """
        try:
            yield
        except KeyboardInterrupt:
            if self.size > 1 and not getattr(self, "stopping", False):
                self.abort(f"minires.distributed: rank {self.rank} of {self.size} was interrupted; "
                           f"stopping all {self.size} ranks (MPI Abort). The last complete checkpoint is kept.", 130)
            raise
        except Exception as e:
            if self.size > 1:
                traceback.print_exc()
                self.abort(f"minires.distributed: rank {self.rank} of {self.size} failed with {type(e).__name__}: {e}\n"
                           f"stopping all {self.size} ranks (MPI Abort). The last complete checkpoint is kept.", 1)
            raise

    def __repr__(self):
        return f"{type(self).__name__}(rank={self.rank}, size={self.size})"


class MPIProcessGroup(ProcessGroup):
    """The ranks of an MPI communicator (``MPI.COMM_WORLD`` under ``mpiexec -n N``).

    CuPy arrays go to MPI directly when the MPI library says it is CUDA-aware
    (``cuda_aware_mpi()``), else through host (NumPy) copies.
    """

    def __init__(self, comm):
        from mpi4py import MPI
        self.MPI, self.comm = MPI, comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.cuda_aware = None  # looked up on the first GPU array
        self.stopping = False

    def _through_host(self, array):
        if get_array_module(array) is np:
            return False
        if self.cuda_aware is None:
            self.cuda_aware = cuda_aware_mpi()
        if self.cuda_aware:
            # MPI reads device memory directly: the kernels writing it must have finished
            get_array_module(array).cuda.get_current_stream().synchronize()
        return not self.cuda_aware

    def all_reduce_sum(self, array):
        if self._through_host(array):
            host = to_numpy(array)
            self.comm.Allreduce(self.MPI.IN_PLACE, host, op=self.MPI.SUM)
            array[...] = get_array_module(array).asarray(host)
            return array
        buf = array if array.flags.c_contiguous else array.copy()
        self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)
        if buf is not array:
            array[...] = buf
        return array

    def broadcast_(self, array):
        xp = get_array_module(array)
        through_host = self._through_host(array)
        buf = to_numpy(array).copy() if through_host else (array if array.flags.c_contiguous else array.copy())
        self.comm.Bcast(buf, root=0)
        if buf is not array:
            array[...] = xp.asarray(buf)

    def all_gather(self, obj):
        return self.comm.allgather(obj)

    def abort(self, message, code=1):
        print(message, file=sys.stderr, flush=True)
        sys.stdout.flush()
        # mpiexec exits the moment the abort reaches it, and its per-machine proxy, which relays
        # both this rank's output and its abort, handles the abort first when it finds the two
        # waiting together (as on a loaded machine): the reason would be lost. So the abort
        # leaves only once the proxy has read all that this rank wrote.
        _wait_until_read((sys.stdout, sys.stderr))
        self.comm.Abort(code)
        os._exit(code)  # MPICH's Abort returns, and this rank would run on until killed


def _wait_until_read(streams, timeout=5.0):
    """Return once the launcher has read everything written to ``streams`` (pipes), or after ``timeout`` s.

    Bounded: a launcher that stopped reading must not keep a failing rank from aborting.
    """
    fds = []
    for stream in streams:
        try:
            fds.append(stream.fileno())
        except (AttributeError, OSError, ValueError):  # replaced or closed (a notebook, a test's capture)
            continue
    deadline = time.monotonic() + timeout
    while any(_unread_bytes(fd) for fd in fds) and time.monotonic() < deadline:
        time.sleep(0.005)


def _unread_bytes(fd):
    """How many bytes written to ``fd`` its reader has not read yet: a pipe's FIONREAD; 0 for
    anything else (a file or a terminal takes what is written at once)."""
    try:
        import fcntl
        import termios
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return 0
        count = array.array("i", [0])
        fcntl.ioctl(fd, termios.FIONREAD, count)
        return count[0]
    except (ImportError, OSError):  # no FIONREAD here (Windows): nothing to wait for
        return 0


class ShardedLoader:
    """Each global batch of a ``data.Loader``, cut into ``size`` equal slices; rank ``rank`` gets one.

    Every rank runs the same loader with the same seed, so all draw the very shuffling and
    augmentation a single process would; rank r then keeps images ``[r*b/N, (r+1)*b/N)`` of
    each batch of b. So the global batch, the lr schedule and the data stream do not depend
    on N, and ``--resume`` works with any N (the checkpoint holds the global position).
    Preparing the whole batch on every rank costs a few ms a step (the normalisation and
    crops of 128 images), well under 1 % of a ResNet-20 step on a CPU.

    Equal slices keep the gradient average exact (see the module docstring), so the batch
    size and the last, smaller batch of an epoch must both divide by N: a clear error
    otherwise. Everything else (``x``, ``y``, ``batch_size``, ...) is the loader's.
    """

    def __init__(self, loader, rank, size):
        self.loader, self.rank, self.size = loader, rank, size
        n, b = len(loader.x), loader.batch_size
        if b % size:
            raise ValueError(batch_size_error(b, size))
        last = 0 if loader.drop_last else n % b
        if last % size:
            raise ValueError(f"--distributed: the last batch of each epoch has {last} images ({n} training "
                             f"images, batch {b}), which {size} ranks cannot share equally; train on "
                             f"{n - last} images (--train-limit {n - last}) or use a number of ranks that divides {last}")

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        return self.epoch()

    def epoch(self, start_batch=0):
        """This rank's slices of one epoch's batches (the loader draws the epoch now, as it does alone)."""
        return self._slices(self.loader.epoch(start_batch))

    def _slices(self, batches):
        for xb, yb in batches:
            k = len(yb) // self.size
            mine = slice(self.rank * k, (self.rank + 1) * k)
            yield xb[mine], yb[mine]

    def state_dict(self):
        return self.loader.state_dict()

    def load_state_dict(self, state):
        self.loader.load_state_dict(state)

    def __getattr__(self, name):
        return getattr(self.loader, name)


def batch_size_error(batch_size, size):
    return (f"--distributed: {size} ranks cannot share a batch of {batch_size} images equally; use a number "
            f"of ranks that divides {batch_size} (for 128: 1, 2, 4, 8, 16, 32, 64 or 128)")


_world = None


def setup(cfg):
    """The process group for a run: this process alone, or (``cfg.distributed``) this MPI rank.

    Under ``mpiexec -n N`` that is rank ``MPI.COMM_WORLD.rank`` of N; started without mpiexec,
    a job of one rank. On the GPU each rank takes device (local rank mod device count). Fails
    with the install command when mpi4py is missing, and when N does not divide the batch.
    """
    global _world
    if not getattr(cfg, "distributed", False):
        return ProcessGroup()
    if _world is None:
        try:
            from mpi4py import MPI
        except ImportError:
            raise RuntimeError(f"--distributed needs mpi4py and an MPI library: {INSTALL_HINT}") from None
        _world = MPIProcessGroup(MPI.COMM_WORLD)
        if cfg.device in ("gpu", "cuda"):
            _use_local_gpu(_world)
        _warn_about_threads(_world)
    if cfg.batch_size % _world.size:
        raise ValueError(batch_size_error(cfg.batch_size, _world.size))
    return _world


def _use_local_gpu(group):
    """Rank r of the machine uses GPU r mod (GPUs on the machine)."""
    import cupy
    local = group.comm.Split_type(group.MPI.COMM_TYPE_SHARED)
    cupy.cuda.Device(local.Get_rank() % cupy.cuda.runtime.getDeviceCount()).use()


def _warn_about_threads(group):
    """One hint from rank 0 when several ranks share a machine and nobody set their thread count."""
    per_node = group.comm.Split_type(group.MPI.COMM_TYPE_SHARED).Get_size()
    limited = any(v in os.environ for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"))
    if group.is_root and per_node > 1 and not limited:
        cores = os.cpu_count() or 1
        print(f"minires.distributed: {per_node} ranks share this machine's {cores} CPU cores and each rank's "
              f"convolutions use all of them (minires.get_num_threads); for speed launch with OMP_NUM_THREADS={max(1, cores // per_node)} "
              f"(e.g. OMP_NUM_THREADS={max(1, cores // per_node)} mpiexec -n {per_node} ...)", file=sys.stderr, flush=True)


def cuda_aware_mpi():
    """Whether the loaded MPI library can read and write GPU memory itself.

    ``MINIRES_CUDA_AWARE_MPI=1`` or ``0`` decides; otherwise the library is asked through its
    extension (MPICH >= 4: ``MPIX_GPU_query_support``; Open MPI: ``MPIX_Query_cuda_support``).
    False when neither answers: host copies are always correct, only slower.
    """
    forced = os.environ.get("MINIRES_CUDA_AWARE_MPI")
    if forced in ("0", "1"):
        return forced == "1"
    lib = _loaded_libmpi()
    if lib is None:
        return False
    if hasattr(lib, "MPIX_GPU_query_support"):
        supported = ctypes.c_int(0)
        return lib.MPIX_GPU_query_support(0, ctypes.byref(supported)) == 0 and supported.value == 1  # 0: CUDA
    if hasattr(lib, "MPIX_Query_cuda_support"):
        return lib.MPIX_Query_cuda_support() == 1
    return False


def _loaded_libmpi():
    """The MPI shared library mpi4py loaded (Linux: found in /proc/self/maps), or None."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "/libmpi" in line}
    except OSError:
        return None
    for path in sorted(paths):
        try:
            return ctypes.CDLL(path)
        except OSError:
            continue
    return None


__all__ = ["setup", "ProcessGroup", "MPIProcessGroup", "ShardedLoader", "cuda_aware_mpi"]
