"""One conv's forward + backward at ResNet-20's shapes, side by side in ONE process, in
interleaved blocks: what the thread pool and Winograd buy.

    python benchmarks/conv_ab.py --before DIR [--repeats 6] [--rounds 4]

Rows per shape: the older minires in DIR (its ``minires`` package, e.g. from ``git archive
<commit> minires | tar -x -C DIR``) at 1 and at 2 threads (its own pool if it has one, else
OpenBLAS's threads, how it used two cores), then this tree's im2col and Winograd with minires's pool at 1 and 2 threads (OpenBLAS
at 1 thread inside it). Median ms; batch 128, float32. ``--clock process`` sums the CPU time
of all the process's threads instead of wall time: on a loaded machine, where the second core
is rarely free, (process time at 2 threads) / (at 1 thread) still shows the cost of running in
parallel, and 2 / that ratio bounds what a second core can buy on a quiet machine.
"""
import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
import step_ab  # noqa: E402  (openblas_setter, load_before)
from _common import op_backward  # noqa: E402

SHAPES = [(16, 16, 32, 1), (16, 32, 32, 2), (32, 32, 16, 1), (64, 64, 8, 1)]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", required=True)
    p.add_argument("--repeats", type=int, default=6, help="timed calls per block")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--clock", choices=["wall", "process"], default="wall")
    step_ab.train_step.add_malloc_option(p)
    args = p.parse_args()
    step_ab.train_step.keep_freed_memory(args.malloc)
    import numpy as np

    import minires
    import minires.functional as F
    set_blas = step_ab.openblas_setter()
    before = step_ab.load_before(args.before)
    before_F = __import__(before.__name__ + ".functional", fromlist=["conv2d"])
    before_pool = hasattr(before, "set_num_threads")  # an older minires with the thread pool: driven like this one
    how = "pool" if before_pool else "BLAS"
    rng = np.random.default_rng(0)

    def channel_major(a):
        return np.ascontiguousarray(a.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)

    clock = time.process_time if args.clock == "process" else time.perf_counter
    print(f"batch 128, float32, forward + backward, {args.clock} clock, median ms; one process, interleaved blocks; malloc {args.malloc}")
    for cin, cout, size, stride in SHAPES:
        x = channel_major(rng.standard_normal((128, cin, size, size), dtype=np.float32))
        w = rng.standard_normal((cout, cin, 3, 3), dtype=np.float32) * 0.1
        osize = (size - 1) // stride + 1
        gy = channel_major(rng.standard_normal((128, cout, osize, osize), dtype=np.float32))

        def run(conv2d, tensor, **kw):
            xt, wt = tensor(x, requires_grad=True), tensor(w, requires_grad=True)
            return lambda: op_backward(conv2d(xt, wt, stride=stride, padding=1, **kw)._ctx, gy)

        old = run(before_F.conv2d, before.Tensor)
        configs = {f"before, {how} 1 thread": (old, 1, 1), f"before, {how} 2 threads": (old, 1, 2) if before_pool else (old, 2, 1)}
        for algorithm in ("im2col", "winograd") if stride == 1 else ("im2col",):
            fn = run(F.conv2d, minires.Tensor, algorithm=algorithm)
            configs[f"{algorithm}, pool 1 thread"] = (fn, 1, 1)
            configs[f"{algorithm}, pool 2 threads"] = (fn, 1, 2)
        times = {k: [] for k in configs}
        for _ in range(args.rounds):
            for k, (fn, blas, pool) in configs.items():
                minires.set_num_threads(pool)
                if before_pool:
                    before.set_num_threads(pool)
                if set_blas is not None:
                    set_blas(blas)
                time.sleep(0.05)
                fn()
                for _ in range(args.repeats):
                    t = clock()
                    fn()
                    times[k].append(clock() - t)
        med = {k: 1e3 * statistics.median(v) for k, v in times.items()}
        base1, base2 = med[f"before, {how} 1 thread"], med[f"before, {how} 2 threads"]
        print(f"conv {cin}->{cout} stride {stride} @{size}px")
        for k, v in med.items():
            print(f"  {k:<26}{v:8.1f} ms   before(1 thread)/this {base1 / v:5.2f}x   before(2 threads)/this {base2 / v:5.2f}x")
    print(f"load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
