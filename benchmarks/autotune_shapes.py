"""The autotuner's "auto" against each single conv algorithm, per ResNet conv shape, 1 and 2 threads.

    python benchmarks/autotune_shapes.py [--threads 1 2] [--rounds 3] [--repeats 3]

Per shape: forward + backward (dx only where the input needs it: the stem's does not) by im2col,
Winograd F(2x2, 3x3), F(4x4, 3x3), and "auto", which times the three (for the backward, every
pair: dx by one, dW by another) on its first call (into a temporary cache file: the decision is
made here, not read from an old one) and then runs its choices. Float32, median of rounds x
repeats wall-clock calls in interleaved blocks. The target (issue 22): "auto" within 3 % of the
best single algorithm on every shape.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))  # this checkout's minires, installed or not
from _common import header_lines, op_backward  # noqa: E402

# (in channels, out channels, size, batch, input needs a gradient): every stride-1 conv of a
# CIFAR ResNet (the stem, then the three stages), the stage width of a wider net, and two
# shapes beyond ResNet-20's
SHAPES = [(3, 16, 32, 128, False), (16, 16, 32, 128, True), (32, 32, 16, 128, True), (64, 64, 8, 128, True),
          (8, 8, 32, 128, True), (128, 128, 8, 32, True)]
SINGLE = ("im2col", "winograd", "winograd4")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    os.environ["MINIRES_AUTOTUNE_CACHE"] = os.path.join(tempfile.mkdtemp(), "autotune.json")
    import numpy as np

    import minires
    import minires.functional as F
    minires.use_algorithm(autotune=True)
    rng = np.random.default_rng(0)

    def channel_major(a):
        return np.ascontiguousarray(a.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)

    print("\n".join(header_lines(None)))
    print(f"forward + backward, float32, wall clock, median of {args.rounds} x {args.repeats} calls, ms")
    print(f"{'shape':<27}{'thr':>4}" + "".join(f"{a:>11}" for a in SINGLE) + f"{'auto':>9}{'auto/best':>10}  auto's choice "
          "(forward, dx, dW)")
    for threads in args.threads:
        minires.set_num_threads(threads)
        for cin, cout, size, n, input_grad in SHAPES:
            x = rng.standard_normal((n, cin, size, size), dtype=np.float32)
            x = channel_major(x) if input_grad else x  # the stem's input is the plain NCHW batch
            w = rng.standard_normal((cout, cin, 3, 3), dtype=np.float32) * 0.1
            gy = channel_major(rng.standard_normal((n, cout, size, size), dtype=np.float32))
            xt, wt = minires.Tensor(x, requires_grad=input_grad), minires.Tensor(w, requires_grad=True)
            chosen = {}

            def step(algorithm):
                ctx = F.conv2d(xt, wt, padding=1, algorithm=algorithm)._ctx
                op_backward(ctx, gy)
                chosen[algorithm] = dict(ctx.algorithms)

            times = {a: [] for a in SINGLE + ("auto",)}
            for _ in range(args.rounds):
                for algorithm in times:
                    step(algorithm)  # untimed: a warm-up, and for "auto" the first time the timing itself
                    for _ in range(args.repeats):
                        t = time.perf_counter()
                        step(algorithm)
                        times[algorithm].append(time.perf_counter() - t)
            ms = {a: 1e3 * statistics.median(v) for a, v in times.items()}
            best = min(ms[a] for a in SINGLE)
            picks = ", ".join(chosen["auto"].get(d, "-") for d in ("forward", "input_grad", "weight_grad"))
            label = f"{cin}->{cout} @{size}px, batch {n}"
            print(f"{label:<27}{threads:>4}" + "".join(f"{ms[a]:>11.1f}" for a in SINGLE)
                  + f"{ms['auto']:>9.1f}{ms['auto'] / best:>9.2f}x  {picks}", flush=True)
    print(f"load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
