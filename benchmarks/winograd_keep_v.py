"""Would keeping Winograd's transformed input V from the forward for the backward pay? (Issue 22, item 3.)

The Winograd backward recomputes V = B^T d B from x, chunk by chunk, for dW (as im2col recomputes
its columns). This script patches the kernel module so that the forward keeps each chunk's V and the
backward reuses it, then compares whole ResNet-20 training steps, one process, interleaved blocks,
with the fixed rule's algorithms (run it with MINIRES_AUTOTUNE=0):

    MINIRES_AUTOTUNE=0 python benchmarks/winograd_keep_v.py --threads 1 2
    MINIRES_AUTOTUNE=0 python benchmarks/winograd_keep_v.py --memory recompute   # peak RSS, fresh process
    MINIRES_AUTOTUNE=0 python benchmarks/winograd_keep_v.py --memory keep

``--check`` first verifies that both ways give the same gradients (and that V was reused).
"""
import argparse
import os
import resource
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
import train_step  # noqa: E402  (the step builders)


class KeepV:
    """Swaps the kernel module's two V-making functions for versions that keep V for the backward."""

    def __init__(self, winograd):
        self.w, self.original = winograd, (winograd.to_phase_planes, winograd.input_transform)
        self.kept, self.local, self.reused = {}, threading.local(), 0

    def to_phase_planes(self, x, grid, ph, pw):
        self.local.key = (x.__array_interface__["data"][0], x.shape, grid.m)  # the chunk of x
        return None if self.local.key in self.kept else self.original[0](x, grid, ph, pw)

    def input_transform(self, q, grid, tf):
        key = self.local.key
        if key in self.kept:  # the backward: V from the forward
            self.reused += 1
            return self.kept.pop(key)
        self.kept[key] = v = self.original[1](q, grid, tf)
        return v

    def on(self, keep):
        self.w.to_phase_planes, self.w.input_transform = (
            (self.to_phase_planes, self.input_transform) if keep else self.original)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--memory", choices=["recompute", "keep"], help="peak RSS growth over 3 steps, then exit")
    p.add_argument("--check", action="store_true")
    args = p.parse_args()
    import numpy as np
    import minires
    import minires.functional as F
    from minires.cpu_kernels import winograd
    from minires.models import cifar_resnet

    patch = KeepV(winograd)
    if args.check:
        grads = {}
        for keep in (False, True):
            patch.on(keep)
            model = cifar_resnet(20, seed=0)
            x, y = train_step._batch(16)
            F.cross_entropy(model(minires.Tensor(x)), y).backward()
            grads[keep] = [p.grad.copy() for p in model.parameters()]
        assert patch.reused and not patch.kept, (patch.reused, len(patch.kept))
        diff = max(float(np.abs(a - b).max()) for a, b in zip(grads[False], grads[True]))
        print(f"check: {patch.reused} chunks' V reused; largest gradient difference {diff}")
    if args.memory:
        step = train_step._minires_step(20, 128, "cpu", args.threads[0], "auto")
        patch.on(args.memory == "keep")
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for _ in range(3):
            step()
        print(f"V {dict(recompute="recomputed", keep="kept")[args.memory]}: peak RSS growth {(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024:.0f} MiB "
              f"over 3 ResNet-20 steps, batch 128")
        return
    for threads in args.threads:
        step = train_step._minires_step(20, 128, "cpu", threads, "auto")
        times = {False: [], True: []}
        for keep in times:  # warm-up
            patch.on(keep)
            step()
        for _ in range(args.rounds):
            for keep in times:
                patch.on(keep)
                for _ in range(2):
                    t = time.perf_counter()
                    step()
                    times[keep].append(time.perf_counter() - t)
        recompute, keep = (1e3 * statistics.median(times[k]) for k in (False, True))
        print(f"{threads} thread(s), ResNet-20, batch 128, median of {2 * args.rounds} steps: V recomputed "
              f"{recompute:.1f} ms, V kept {keep:.1f} ms (kept / recomputed time {keep / recompute:.3f}x)", flush=True)
    patch.on(False)


if __name__ == "__main__":
    main()
