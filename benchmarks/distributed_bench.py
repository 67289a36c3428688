"""Data-parallel speed: ResNet-20 training steps on 1 process or on N MPI ranks, and Allreduce time.

A step is what ``python -m minires.train`` does per iteration: the next augmented batch (global
batch 128; on N ranks every rank prepares it and keeps its 128/N slice), forward,
cross-entropy, backward, ``average_gradients`` (one Allreduce of every gradient), SGD. Measured
side by side, in rounds, on this machine:

    1 process x 2 threads     the single-process baseline on both cores
    1 process x 1 thread      one core
    2 ranks x 1 thread        data parallel, one core per rank (mpiexec -n 2)
    2 ranks x 2 threads       the same, oversubscribed (what happens without OMP_NUM_THREADS=1)

For the ranks it also reports the time in ``average_gradients`` per step (after a barrier, so
it is the communication and the flattening, not waiting for the slower rank; the wait is
reported apart), and a bare Allreduce of the same buffer. Then, on paper, what a step costs on
N machines for ResNet-20 and ResNet-110 with ring allreduce at typical network bandwidths.

    python benchmarks/distributed_bench.py                # everything (about 5 minutes on 2 idle cores)
    python benchmarks/distributed_bench.py --steps 6 --rounds 2 --json out.json
    python benchmarks/distributed_bench.py --paper-only   # the on-paper table from a measured step time

Needs mpi4py and mpiexec (pip install 'minires[mpi]'). Timings on a shared machine are noisy:
the configurations take turns, round after round, and the median step is reported.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
CONFIGS = [  # (name, ranks, threads per rank)
    ("1 process x 2 threads", 1, 2),
    ("1 process x 1 thread", 1, 1),
    ("2 ranks x 1 thread", 2, 1),
    ("2 ranks x 2 threads", 2, 2),
]
MACHINES = (1, 2, 4, 8, 16, 32, 64)  # the on-paper table's N
# Ring allreduce: each of N ranks sends and receives 2(N-1)/N of the buffer, in 2(N-1) steps
# that each pay the link's latency.
NETWORKS = [  # (name, bytes/s, latency per message in s)
    ("10 Gb/s Ethernet", 10e9 / 8, 30e-6),
    ("100 Gb/s InfiniBand", 100e9 / 8, 2e-6),
]


# --------------------------------------------------------------------------- one configuration (a worker)

def worker(args):
    """Runs under ``mpiexec -n R`` (or alone); rank 0 prints one JSON line."""
    sys.path.insert(0, ROOT)
    import numpy as np

    import minires.functional as F
    from minires import data, distributed
    from minires.engine import Tensor
    from minires.models import cifar_resnet
    from minires.optim import SGD
    from minires.train import TrainConfig

    batch = args.batch
    group = distributed.setup(TrainConfig(distributed=args.ranks > 1, batch_size=batch))
    model = cifar_resnet(args.depth, seed=0)
    group.broadcast_parameters(model)
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x, y, _, _ = data.synthetic_cifar(batch * (args.steps + args.warmup), 10, seed=0)
    loader = group.shard(data.Loader(x, y, batch, shuffle=True, augment=True, mean=data.per_pixel_mean(x), rng=0))
    barrier = group.comm.Barrier if group.size > 1 else (lambda: None)
    steps, reduces, waits = [], [], []
    for i, (xb, yb) in enumerate(loader):
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(Tensor(xb)), yb)
        opt.zero_grad()
        loss.backward()
        t1 = time.perf_counter()
        barrier()
        t2 = time.perf_counter()
        group.average_gradients(model, (loss.item() * len(yb),))
        t3 = time.perf_counter()
        opt.step()
        if i >= args.warmup:
            steps.append(time.perf_counter() - t0)
            waits.append(t2 - t1)
            reduces.append(t3 - t2)
    n_params = sum(p.numel() for p in model.parameters())
    bare = []
    if group.size > 1:
        buf = np.zeros(n_params + 2, dtype=np.float32)
        for _ in range(50):
            group.comm.Barrier()
            t0 = time.perf_counter()
            group.all_reduce_sum(buf)
            bare.append(time.perf_counter() - t0)
    # the step of the slowest rank is the step of the job
    step = max(group.all_gather(statistics.median(steps)))
    if group.is_root:
        print(json.dumps({"step_s": step, "img_per_s": batch / step, "n_params": n_params, "min_step_s": min(steps),
                          "average_gradients_s": statistics.median(reduces), "wait_s": statistics.median(waits),
                          "bare_allreduce_s": statistics.median(bare) if bare else None}), flush=True)


# --------------------------------------------------------------------------- the launcher

def run_config(ranks, threads, args):
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    env.update({v: str(threads) for v in THREAD_VARS})
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--ranks", str(ranks), "--depth", str(args.depth),
           "--steps", str(args.steps), "--warmup", str(args.warmup), "--batch", str(args.batch)]
    if ranks > 1:
        cmd = [args.mpiexec, "-n", str(ranks)] + cmd
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def ring_allreduce_s(n, nbytes, bandwidth, latency):
    """2(N-1)/N x bytes / bandwidth + 2(N-1) x latency (0 for one machine)."""
    return 0.0 if n == 1 else 2 * (n - 1) / n * nbytes / bandwidth + 2 * (n - 1) * latency


def paper_table(step_s, n_params):
    """Markdown, per depth: a step on N machines = the measured step of one rank on its 128/N
    images + a ring allreduce of the gradients; speed-up over one machine and its efficiency.

    ``step_s[depth][n]``: measured seconds of a step on 128/n images (1 process, 1 thread).
    """
    lines = []
    for depth, steps in step_s.items():
        nbytes = 4 * n_params[depth]
        lines.append(f"\nResNet-{depth}: {n_params[depth]:,} parameters = {nbytes / 1e6:.2f} MB of float32 "
                     f"gradients per step\n")
        head = "| machines N | images per rank | compute per rank (s, measured) | ideal (128-image step / N) |"
        rule = "|---:|---:|---:|---:|"
        for name, _, _ in NETWORKS:
            head += f" allreduce, {name} (ms) | speed-up (efficiency) |"
            rule += "---:|---:|"
        lines += [head, rule]
        for n, compute in sorted(steps.items()):
            row = f"| {n} | {128 // n} | {compute:.3f} | {steps[1] / n:.3f} |"
            for _, bw, lat in NETWORKS:
                t = ring_allreduce_s(n, nbytes, bw, lat)
                speedup = steps[1] / (compute + t)
                row += f" {1e3 * t:.2f} | {speedup:.1f}x ({100 * speedup / n:.0f} %) |"
            lines.append(row)
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--ranks", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--depth", type=int, default=20)
    p.add_argument("--batch", type=int, default=128, help="global batch (default 128)")
    p.add_argument("--steps", type=int, default=8, help="timed steps per configuration and round (default 8)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2, help="each configuration runs once per round (default 2)")
    p.add_argument("--mpiexec", default=shutil.which("mpiexec"))
    p.add_argument("--paper-only", action="store_true", help="only the on-paper table (times steps of 128/N images)")
    p.add_argument("--no-paper", action="store_true", help="only the side-by-side configurations")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)
    if args.mpiexec is None:
        raise SystemExit("mpiexec not found: pip install 'minires[mpi]' (mpi4py and mpich)")
    print(f"load average before: {', '.join(f'{v:.2f}' for v in os.getloadavg())}; {os.cpu_count()} CPUs")
    results = {}
    if not args.paper_only:
        for r in range(args.rounds):
            for name, ranks, threads in CONFIGS:
                res = run_config(ranks, threads, args)
                results.setdefault(name, []).append(res)
                print(f"round {r + 1}: {name:22s} {res['img_per_s']:6.1f} img/s  step {1e3 * res['step_s']:6.0f} ms"
                      + (f"  average_gradients {1e3 * res['average_gradients_s']:.2f} ms, wait {1e3 * res['wait_s']:.1f} ms, "
                         f"bare Allreduce {1e3 * res['bare_allreduce_s']:.2f} ms" if res["bare_allreduce_s"] else ""), flush=True)
        base = statistics.median(r["img_per_s"] for r in results["1 process x 1 thread"])
        print("\n| configuration | img/s (median of rounds) | speed-up over 1 x 1 | parallel efficiency | average_gradients per step (ms) |")
        print("|---|---:|---:|---:|---:|")
        for name, ranks, threads in CONFIGS:
            rate = statistics.median(r["img_per_s"] for r in results[name])
            ar = [r["average_gradients_s"] for r in results[name] if r["bare_allreduce_s"]]
            cores = min(ranks * threads, os.cpu_count())
            print(f"| {name} | {rate:.1f} | {rate / base:.2f}x | {100 * rate / base / cores:.0f} % | "
                  f"{f'{1e3 * statistics.median(ar):.2f}' if ar else '-'} |")
    # On paper: N machines that each compute as one core here (1 process x 1 thread, the
    # steadiest configuration on a shared machine), each on its 128/N images: a small slice
    # does not run N times faster, since every op has a fixed cost (Python, dispatch).
    step_s, n_params = {}, {}
    for depth in (() if args.no_paper else (20, 110)):
        step_s[depth] = {}
        for n in MACHINES:
            sub = argparse.Namespace(**{**vars(args), "depth": depth, "batch": 128 // n, "warmup": 1,
                                        "steps": 2 if depth == 110 and n <= 2 else 4})
            # the fastest step: other processes on a shared machine only ever slow a step down
            res = run_config(1, 1, sub)
            step_s[depth][n], n_params[depth] = res["min_step_s"], res["n_params"]
            print(f"ResNet-{depth}, 1 thread, batch {128 // n:3d}: fastest step {1e3 * res['min_step_s']:.0f} ms, "
                  f"median {1e3 * res['step_s']:.0f} ms", flush=True)
    table = paper_table(step_s, n_params) if step_s else ""
    print("\nOn paper, N machines that each compute as one core here (1 rank x 1 thread), ring allreduce:" + table)
    print(f"\nload average after: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"configs": results, "paper_step_s": step_s, "n_params": n_params}, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
