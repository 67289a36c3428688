"""Time minires's hot ops (forward + backward) at ResNet-20's shapes, batch 128, float32.

    python benchmarks/ops_bench.py [--device cpu|gpu|all] [--threads N] [--repeats R] [--json out.json]

Rows: conv2d (the four 3x3 conv shapes of CIFAR ResNet-20, padding 1, no bias), batch norm
(training mode) and ReLU at the three activation shapes. Each time is the median over
``--repeats`` calls after warm-up, of forward + the op's backward for a random upstream
gradient. When PyTorch happens to be installed (it is not a dependency) the same shapes run
in the same process, in alternating blocks with minires, as a reference column with the
ratio minires / PyTorch; on the GPU the reference is PyTorch-CUDA when it is available.

minires's inputs and upstream gradients are laid out as inside a minires network: NCHW
views of channel-major (C, N, H, W) memory, as every conv output is (see ops/conv.py).
The backward timed is the op's own backward (``op_backward(y._ctx, gy)``: the method the engine runs), i.e. what the
op costs inside a network, without the engine copying the gradient into a leaf's ``.grad``.
"""
import _common  # noqa: I001  (must run before numpy is imported: it sets the thread count)

THREADS = _common.apply_threads_from_argv()

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

_common.ensure_repo_on_path()
import minires  # noqa: E402
import minires.functional as F  # noqa: E402

BATCH = 128
# (label, in channels, out channels, input size, stride): ResNet-20's 3x3 convs, padding 1.
CONV_SHAPES = [
    ("conv 16->16 3x3 @32px", 16, 16, 32, 1),
    ("conv 16->32 3x3 s2 @32px", 16, 32, 32, 2),
    ("conv 32->32 3x3 @16px", 32, 32, 16, 1),
    ("conv 64->64 3x3 @8px", 64, 64, 8, 1),
]
ACT_SHAPES = [(16, 32), (32, 16), (64, 8)]  # (channels, size) of ResNet-20's three stages


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["cpu", "gpu", "all"], default="cpu")
    p.add_argument("--threads", type=int, default=None,
                   help="BLAS/OpenMP threads for NumPy and PyTorch (set before numpy loads)")
    p.add_argument("--repeats", type=int, default=20, help="timed calls per op (median reported)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls before each block")
    p.add_argument("--rounds", type=int, default=4,
                   help="blocks per contender, alternating minires and PyTorch (spreads bursts of load)")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch reference column")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="wall time (default), or the calling thread's CPU time: steadier on a loaded machine, "
                        "meaningful only at --threads 1 (where every library computes on the calling thread)")
    p.add_argument("--algorithms", nargs="+", choices=["im2col", "winograd"], default=["im2col", "winograd"],
                   help="conv algorithms to time on the CPU (one row each; Winograd on stride-1 shapes only)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    return p.parse_args()


def import_torch(no_torch):
    if no_torch:
        return None
    try:
        import torch
    except Exception:
        return None
    if THREADS is not None:
        torch.set_num_threads(THREADS)
    return torch


def channel_major(a):
    """An NCHW view of (C, N, H, W)-contiguous memory holding ``a``: the layout of conv outputs."""
    xp = minires.get_array_module(a)
    return xp.ascontiguousarray(a.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)


def cases(rng, algorithms):
    """(name, input shape text, minires maker, torch maker); one conv row per algorithm that applies. ``minires_maker(device)`` and
    ``torch_maker(torch, device)`` return a no-argument callable running forward + backward once."""
    out = []
    for label, cin, cout, size, stride in CONV_SHAPES:
        x = rng.standard_normal((BATCH, cin, size, size), dtype=np.float32)
        w = (rng.standard_normal((cout, cin, 3, 3), dtype=np.float32) * 0.1).astype(np.float32)
        osize = (size + 2 - 3) // stride + 1
        gy = rng.standard_normal((BATCH, cout, osize, osize), dtype=np.float32)
        for algorithm in algorithms:
            if algorithm == "winograd" and stride != 1:
                continue
            out.append((f"{label} {algorithm}", f"{BATCH}x{cin}x{size}x{size}", _conv_mr(x, w, gy, stride, algorithm),
                        _conv_torch(x, w, gy, stride)))
    for c, size in ACT_SHAPES:
        x = rng.standard_normal((BATCH, c, size, size), dtype=np.float32)
        gy = rng.standard_normal(x.shape, dtype=np.float32)
        gamma = (1 + 0.1 * rng.standard_normal(c)).astype(np.float32)
        beta = (0.1 * rng.standard_normal(c)).astype(np.float32)
        shape = f"{BATCH}x{c}x{size}x{size}"
        out.append(("batch_norm train", shape, _bn_mr(x, gamma, beta, gy), _bn_torch(x, gamma, beta, gy)))
    for c, size in ACT_SHAPES:
        x = rng.standard_normal((BATCH, c, size, size), dtype=np.float32)
        gy = rng.standard_normal(x.shape, dtype=np.float32)
        out.append(("relu", f"{BATCH}x{c}x{size}x{size}", _relu_mr(x, gy), _relu_torch(x, gy)))
    return out


def _mr_arrays(device, *arrays):
    """The arrays on ``device``; 4-D activations and gradients laid out channel-major."""
    out = [minires.backend.to_device(a, device) for a in arrays]
    return [channel_major(a) if a.ndim == 4 else a for a in out]


def _conv_mr(x, w, gy, stride, algorithm):
    def make(device):
        xd, gyd = _mr_arrays(device, x, gy)
        wd = minires.backend.to_device(w, device)  # weights stay plain contiguous (O, C, kh, kw)
        xt, wt = minires.Tensor(xd, requires_grad=True), minires.Tensor(wd, requires_grad=True)

        def run():
            y = F.conv2d(xt, wt, stride=stride, padding=1, algorithm=algorithm)
            _common.op_backward(y._ctx, gyd)
        return run
    return make


def _bn_mr(x, gamma, beta, gy):
    def make(device):
        xd, gd, bd, gyd = _mr_arrays(device, x, gamma, beta, gy)
        xp = minires.get_array_module(xd)
        rm, rv = xp.zeros(x.shape[1], dtype=xp.float32), xp.ones(x.shape[1], dtype=xp.float32)
        xt = minires.Tensor(xd, requires_grad=True)
        gt, bt = minires.Tensor(gd, requires_grad=True), minires.Tensor(bd, requires_grad=True)

        def run():
            y = F.batch_norm(xt, rm, rv, gt, bt, training=True)
            _common.op_backward(y._ctx, gyd)
        return run
    return make


def _relu_mr(x, gy):
    def make(device):
        xd, gyd = _mr_arrays(device, x, gy)
        xt = minires.Tensor(xd, requires_grad=True)

        def run():
            y = F.relu(xt)
            _common.op_backward(y._ctx, gyd)
        return run
    return make


def _conv_torch(x, w, gy, stride):
    def make(torch, dev):
        tf = torch.nn.functional
        xt = torch.tensor(x, device=dev, requires_grad=True)
        wt = torch.tensor(w, device=dev, requires_grad=True)
        gyt = torch.tensor(gy, device=dev)

        def run():
            y = tf.conv2d(xt, wt, stride=stride, padding=1)
            torch.autograd.grad(y, (xt, wt), gyt)
        return run
    return make


def _bn_torch(x, gamma, beta, gy):
    def make(torch, dev):
        tf = torch.nn.functional
        xt = torch.tensor(x, device=dev, requires_grad=True)
        gt = torch.tensor(gamma, device=dev, requires_grad=True)
        bt = torch.tensor(beta, device=dev, requires_grad=True)
        rm, rv = torch.zeros(x.shape[1], device=dev), torch.ones(x.shape[1], device=dev)
        gyt = torch.tensor(gy, device=dev)

        def run():
            y = tf.batch_norm(xt, rm, rv, gt, bt, training=True)
            torch.autograd.grad(y, (xt, gt, bt), gyt)
        return run
    return make


def _relu_torch(x, gy):
    def make(torch, dev):
        xt = torch.tensor(x, device=dev, requires_grad=True)
        gyt = torch.tensor(gy, device=dev)

        def run():
            torch.autograd.grad(torch.relu(xt), (xt,), gyt)
        return run
    return make


def run_device(device, torch, args):
    """Time every case on ``device`` ('cpu' or 'gpu'); returns a list of result rows."""
    if device == "gpu":
        import cupy
        mr_sync = cupy.cuda.Device().synchronize
        tdev = "cuda" if torch is not None and torch.cuda.is_available() else None
    else:
        mr_sync = lambda: None  # noqa: E731
        tdev = "cpu" if torch is not None else None

    def sync():
        mr_sync()
        if tdev == "cuda":
            torch.cuda.synchronize()

    rows = []
    algorithms = args.algorithms if device == "cpu" else ["im2col"]  # Winograd is NumPy-only
    for name, shape, mr_make, torch_make in cases(np.random.default_rng(0), algorithms):
        fns = {"minires": mr_make(device)}
        if tdev is not None:
            fns["torch"] = torch_make(torch, tdev)
        clock = time.thread_time if args.clock == "cpu" else time.perf_counter
        med = {name: statistics.median(ts) for name, ts in
               _common.block_times(fns, args.repeats, args.warmup, sync, rounds=args.rounds, clock=clock).items()}
        row = {"device": device, "op": name, "shape": shape, "minires_ms": med["minires"] * 1e3,
               "torch_ms": med["torch"] * 1e3 if "torch" in med else None}
        row["ratio"] = row["minires_ms"] / row["torch_ms"] if row["torch_ms"] else None
        rows.append(row)
        print(format_row(row), flush=True)
    return rows


def format_row(r):
    backend = "numpy" if r["device"] == "cpu" else "cupy"
    t = f"{r['torch_ms']:9.2f}" if r["torch_ms"] is not None else f"{'-':>9}"
    ratio = f"{r['ratio']:6.2f}x" if r["ratio"] is not None else f"{'-':>7}"
    return f"{backend:6} {r['op']:35} {r['shape']:15} {r['minires_ms']:9.2f} {t} {ratio}"


def main():
    args = parse_args()
    limiter = _common.limit_blas_threads(THREADS)  # noqa: F841  (kept alive for the whole run)
    if THREADS is not None:
        minires.set_num_threads(THREADS)  # minires's pool; it holds BLAS at one thread
    torch = import_torch(args.no_torch)
    devices = ["cpu", "gpu"] if args.device == "all" else [args.device]
    gpu = minires.gpu_available()
    if "gpu" in devices and not gpu:
        if args.device == "gpu":
            sys.exit("ops_bench: --device gpu but no GPU is usable (CuPy missing or no CUDA device answers)")
        print("note: no GPU usable, the CuPy rows are skipped")
        devices.remove("gpu")

    header = _common.header_lines(THREADS)
    if torch is not None:
        header.append(f"torch   : {torch.__version__}, {torch.get_num_threads()} threads, "
                      f"mkldnn {torch.backends.mkldnn.is_available()}, cuda {torch.cuda.is_available()}")
    else:
        header.append("torch   : not installed (no reference column)")
    if gpu:
        import cupy
        header.append(f"cupy    : {cupy.__version__}, {cupy.cuda.runtime.getDeviceProperties(0)['name'].decode()}")
    print("\n".join(header))
    print(f"batch {BATCH}, float32, forward + backward, median of {args.repeats} calls in {args.rounds} "
          f"alternating blocks, each after {args.warmup} warm-up calls (ms, {args.clock} clock)")
    print(f"{'device':6} {'op':35} {'input':15} {'minires':>9} {'torch':>9} {'ratio':>7}")

    rows = []
    for device in devices:
        rows += run_device(device, torch, args)

    print(_common.load_line())
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"header": header, "threads": THREADS, "repeats": args.repeats, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
