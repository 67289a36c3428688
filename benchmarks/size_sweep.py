"""A kernel's work size (the conv's chunk of columns, batch norm's block), swept inside whole
training steps rather than one op timed alone.

    python benchmarks/size_sweep.py                                   # conv.CHUNK_BYTES, ResNet-20
    python benchmarks/size_sweep.py --models resnet56 --sizes 8 3 2 1
    python benchmarks/size_sweep.py --constant norm.BLOCK_BYTES --sizes 1 0.25 0.5 2 4
    python benchmarks/size_sweep.py --models resnet18 --constant conv.MIN_ROWS --sizes 1 512

Why inside a step: an op timed alone in a loop finds its input (and dy) still in cache from the
last call; inside a step they were written several ops ago and have left it. Sizes picked alone can
then be wrong for the step (benchmarks/README.md, "Round six": 8 MB chunks won alone, 2 MB in the
step). One process, ResNet steps (SGD with momentum; every 3x3 stride-1 conv by im2col, or by
--algorithm), the constant set before each block, sizes and thread counts interleaved over the
rounds; median ms per step and each size's time against the first size's. Sizes are in MB for a
constant named *_BYTES, else taken as they are. "resnet18" is the ImageNet ResNet-18 (10 classes)
at batch 16 and 112 px, the CIFAR nets run at batch 128. Unset OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE for the run.
"""
import argparse
import importlib
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))  # this checkout's minires, installed or not
import train_step  # noqa: E402  (the batch builder, the malloc option and DEPTHS)
from _common import header_lines  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--constant", default="conv.CHUNK_BYTES",
                   help="module.NAME in minires.cpu_kernels: conv.CHUNK_BYTES, winograd.CHUNK_BYTES, norm.BLOCK_BYTES")
    p.add_argument("--sizes", type=float, nargs="+", default=[8, 4, 3, 2, 1.5, 1],
                   help="MB for a *_BYTES constant, else the value; the first is the baseline")
    p.add_argument("--models", nargs="+", default=["resnet20"], choices=sorted(train_step.DEPTHS) + ["resnet18"])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--steps", type=int, default=3, help="timed steps per block")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--algorithm", default="im2col", choices=["im2col", "winograd", "winograd4"],
                   help="the conv algorithm of every 3x3 stride-1 conv (winograd for winograd.CHUNK_BYTES)")
    train_step.add_malloc_option(p)
    args = p.parse_args(argv)
    train_step.keep_freed_memory(args.malloc)

    import numpy as np

    import minires
    from minires.models import cifar_resnet, resnet18
    from minires.optim import SGD
    from minires.step import train_step as one_step

    module_name, _, name = args.constant.rpartition(".")
    module = importlib.import_module(f"minires.cpu_kernels.{module_name}")
    if not isinstance(getattr(module, name, None), int):
        raise SystemExit(f"size_sweep: minires.cpu_kernels.{args.constant} is not an integer constant")
    unit, label = (2**20, " MB") if name.endswith("_BYTES") else (1, "")
    minires.use_algorithm(args.algorithm)  # the algorithm fixed: only the size changes between blocks
    print("\n".join(header_lines(None)[:3]))
    print(f"threads : {' and '.join(map(str, args.threads))} (minires.set_num_threads, OpenBLAS held at 1 thread inside "
          f"its pool); malloc {args.malloc}; conv algorithm {args.algorithm}")
    print(f"{args.constant}, interleaved blocks of {args.steps} steps x {args.rounds} rounds, "
          f"median ms per step (time against {args.sizes[0]:g}{label})")
    for model in args.models:
        if model == "resnet18":
            rng = np.random.default_rng(0)
            net = resnet18(num_classes=10, seed=0)
            x, y = rng.standard_normal((16, 3, 112, 112)).astype(np.float32), rng.integers(0, 10, 16)
        else:
            net, (x, y) = cifar_resnet(train_step.DEPTHS[model], seed=0), train_step._batch(128)
        opt = SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
        x = minires.Tensor(x)
        times = {(t, s): [] for t in args.threads for s in args.sizes}
        for _ in range(args.rounds):
            for threads in args.threads:
                minires.set_num_threads(threads)
                for size in args.sizes:
                    setattr(module, name, int(size * unit))
                    one_step(net, opt, x, y)  # a first step at this size, untimed
                    for _ in range(args.steps):
                        start = time.perf_counter()
                        one_step(net, opt, x, y)
                        times[threads, size].append(time.perf_counter() - start)
        for threads in args.threads:
            base = statistics.median(times[threads, args.sizes[0]])
            cells = (f"{s:g}{label} {1e3 * statistics.median(times[threads, s]):.0f} ms "
                     f"({statistics.median(times[threads, s]) / base:.2f}x)" for s in args.sizes)
            batch = "batch 16, 112 px" if model == "resnet18" else "batch 128"
            print(f"{model} ({batch}) {threads} thread(s): " + "  ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
