"""Winograd against im2col on the conv shapes behind ``conv2d``'s "auto" choice, 1 thread.

    python benchmarks/winograd_shapes.py [--clock cpu|wall]

Forward + backward (dx only where the input needs it: the stem's does not), float32, median of
9 calls in 3 interleaved blocks. The default clock is the thread's CPU time: at 1 thread all
the work runs on the calling thread, so this is steady even on a loaded machine.
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# (in channels, out channels, size, batch, input needs a gradient)
SHAPES = [(3, 16, 32, 128, False), (8, 8, 32, 128, True), (16, 16, 32, 128, True), (32, 32, 16, 128, True),
          (64, 64, 8, 128, True), (64, 64, 4, 128, True), (128, 128, 8, 32, True)]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    args = p.parse_args()
    import numpy as np

    import minires
    import minires.functional as F
    from minires.ops.conv import choose_algorithm
    minires.set_num_threads(1)
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    rng = np.random.default_rng(0)

    def channel_major(a):
        return np.ascontiguousarray(a.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)

    print(f"{'shape':<26}{'im2col ms':>10}{'winograd ms':>12}{'gain':>7}  auto picks")
    for cin, cout, size, n, input_grad in SHAPES:
        x = rng.standard_normal((n, cin, size, size), dtype=np.float32)
        x = channel_major(x) if input_grad else x  # the stem's input is the plain NCHW batch
        w = rng.standard_normal((cout, cin, 3, 3), dtype=np.float32) * 0.1
        gy = channel_major(rng.standard_normal((n, cout, size, size), dtype=np.float32))
        xt, wt = minires.Tensor(x, requires_grad=input_grad), minires.Tensor(w, requires_grad=True)
        times = {"im2col": [], "winograd": []}
        for _ in range(3):
            for algorithm in times:
                F.conv2d(xt, wt, padding=1, algorithm=algorithm)._ctx.backward(gy)
                for _ in range(3):
                    t = clock()
                    F.conv2d(xt, wt, padding=1, algorithm=algorithm)._ctx.backward(gy)
                    times[algorithm].append(clock() - t)
        m = {a: 1e3 * statistics.median(v) for a, v in times.items()}
        label = f"{cin}->{cout} @{size}px, batch {n}"
        print(f"{label:<26}{m['im2col']:>10.1f}{m['winograd']:>12.1f}{m['im2col'] / m['winograd']:>6.2f}x  "
              f"{choose_algorithm(x, w, (1, 1), (1, 1))}", flush=True)
    print(f"load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
