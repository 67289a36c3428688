"""Whole training steps side by side in ONE process, in interleaved blocks: minires (this tree),
optionally an older minires (``--before DIR``, a directory holding its ``minires`` package),
PyTorch and mygrad (when installed), at 1 and 2 threads. On a shared machine this gives the
ratios that separate processes cannot: every contender sees the same bursts of load.

    python benchmarks/step_ab.py --models resnet20 resnet56 --threads 1 2 [--before /tmp/old]

Thread counts are switched between blocks: ``minires.set_num_threads(n)`` (its pool, OpenBLAS
held at one thread; the same for an older minires that has the pool), OpenBLAS at n threads for
an older minires without it and mygrad (set through its C API), ``torch.set_num_threads(n)``. ``--clock cpu`` times the main thread's CPU time (steady
under load; meaningful at 1 thread only). Peak memory needs a fresh process: see train_step.py.
"""
import argparse
import ctypes
import importlib
import importlib.util
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
import train_step  # noqa: E402  (the step builders)


def openblas_setter():
    """OpenBLAS's set_num_threads from the library NumPy loaded, or None."""
    import numpy  # noqa: F401
    with open("/proc/self/maps") as f:
        paths = sorted({line.split()[-1] for line in f if "openblas" in line.lower() and ".so" in line})
    for path in paths:
        lib = ctypes.CDLL(path)
        for name in ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_", "openblas_set_num_threads"):
            if hasattr(lib, name):
                return getattr(lib, name)
    return None


def load_before(path):
    """Import the ``minires`` package under ``path`` as ``minires_before`` (its imports are relative)."""
    tmp = tempfile.mkdtemp()
    shutil.copytree(os.path.join(path, "minires"), os.path.join(tmp, "minires_before"))
    sys.path.insert(0, tmp)
    return importlib.import_module("minires_before")


def minires_step(pkg, depth, batch):
    """A training step of ``pkg``: its ``step.train_step``, the Trainer's, or for an older minires
    without one the same four calls."""
    models = importlib.import_module(pkg.__name__ + ".models")
    optim = importlib.import_module(pkg.__name__ + ".optim")
    F = importlib.import_module(pkg.__name__ + ".functional")
    model = models.cifar_resnet(depth, seed=0)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x, y = train_step._batch(batch)
    x = pkg.Tensor(x)
    if importlib.util.find_spec(pkg.__name__ + ".step") is not None:
        one_step = importlib.import_module(pkg.__name__ + ".step").train_step
        return lambda: one_step(model, opt, x, y)

    def step():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["resnet20", "resnet56"], choices=sorted(train_step.DEPTHS))
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--before", default=None, help="directory with an older minires package to compare against")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--no-mygrad", action="store_true")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=2, help="timed steps per block")
    p.add_argument("--rounds", type=int, default=3, help="blocks per contender")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    train_step.add_malloc_option(p)
    args = p.parse_args()
    train_step.keep_freed_memory(args.malloc)

    import minires
    set_blas = openblas_setter()
    before = load_before(args.before) if args.before else None
    before_pool = hasattr(before, "set_num_threads")  # an older minires with the thread pool: driven like this one
    pools = [minires] + ([before] if before_pool else [])  # packages with a thread pool
    torch = None
    if not args.no_torch:
        try:
            import torch
        except ImportError:
            pass
    has_mygrad = not args.no_mygrad and importlib.util.find_spec("mygrad") is not None
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    print(f"one process, interleaved blocks of {args.steps} steps x {args.rounds} rounds, batch {args.batch}, "
          f"{args.clock} clock, median ms per step (min-max); OpenBLAS thread control: {set_blas is not None}; malloc {args.malloc}")
    for threads in args.threads:
        for model in args.models:
            depth = train_step.DEPTHS[model]
            contenders = {"minires": (minires_step(minires, depth, args.batch), "pool")}
            if before is not None:  # with the pool it uses the pool; from before the pool, OpenBLAS's threads
                contenders["minires before"] = (minires_step(before, depth, args.batch), "pool" if before_pool else "blas")
            if torch is not None:
                contenders["torch"] = (train_step._torch_step(depth, args.batch, "cpu", threads), "torch")
            if has_mygrad and model == "resnet20":
                contenders["mygrad"] = (train_step._mygrad_step(depth, args.batch), "blas")
            times = {name: [] for name in contenders}
            for _ in range(args.rounds):
                for name, (step, kind) in contenders.items():
                    for pkg in pools:
                        pkg.set_num_threads(threads if kind == "pool" else 1)
                    if set_blas is not None:
                        set_blas(threads if kind == "blas" else 1)
                    if torch is not None:
                        torch.set_num_threads(threads)
                    time.sleep(0.05)
                    step()  # warm-up
                    for _ in range(args.steps):
                        t = clock()
                        step()
                        times[name].append(clock() - t)
            med = {name: statistics.median(ts) for name, ts in times.items()}
            ref = med.get("torch")
            for name, t in med.items():
                extra = f"  minires / {name} time {med['minires'] / t:.2f}x" if name != "minires" else ""
                spread = f"({1e3 * min(times[name]):.0f}-{1e3 * max(times[name]):.0f})"
                print(f"{threads} thread(s)  {model:<9} {name:<15} {1e3 * t:9.1f} ms {spread:>13}  "
                      f"{args.batch / t:7.1f} img/s{extra}", flush=True)
            if ref:
                print(f"   -> minires time / torch time = {med['minires'] / ref:.2f}x", flush=True)
    print(f"load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
