"""Whole training steps: forward, cross-entropy, backward, SGD (momentum 0.9, weight decay 1e-4).

CIFAR ResNet-20 and ResNet-56 at batch 128, float32, on:
  minires/NumPy, minires/CuPy (when a GPU answers), PyTorch CPU/CUDA (when torch is installed;
  it is a reference, not a dependency) and mygrad (a NumPy autograd peer, when installed).

Each (framework, model) runs in a fresh subprocess with the same thread count, so that peak
memory is comparable and thread settings cannot leak: on the CPU the growth of the process's
peak RSS over its state before the first step, on the GPU the growth of device memory. Reported: median img/s over the timed steps after warm-up, the
ratio to PyTorch measured in the same run, and the peak memory growth.

    python benchmarks/train_step.py                       # all frameworks found, 1 and 2 threads
    python benchmarks/train_step.py --threads 2 --models resnet20
    python benchmarks/train_step.py --profile --models resnet20   # where minires' time goes

Unset OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE for the run (they select a slower kernel here).
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEPTHS = {"resnet20": 20, "resnet56": 56}


# --------------------------------------------------------------------------- one config, in a subprocess

def _set_threads(threads):
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)


def _batch(batch, seed=0):
    import numpy as np
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, 3, 32, 32)).astype(np.float32), rng.integers(0, 10, batch)


def _minires_step(depth, batch, device, threads, algorithm):
    sys.path.insert(0, ROOT)
    import minires
    from minires.models import cifar_resnet
    from minires.optim import SGD
    from minires.step import train_step

    minires.set_num_threads(threads)
    minires.use_algorithm(algorithm)
    model = cifar_resnet(depth, seed=0).to(device)
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x, y = _batch(batch)
    x, y = minires.Tensor(x).to(device), minires.Tensor(y).to(device).data
    sync = _cupy_sync if device == "gpu" else (lambda: None)

    def step():
        train_step(model, opt, x, y)  # the Trainer's step
        sync()
    return step


def _minires_graph_step(depth, batch):
    """The same step on the GPU, replayed as a CUDA graph (minires.cuda_graph)."""
    sys.path.insert(0, ROOT)
    from minires.backend import to_device
    from minires.cuda_graph import CUDAGraphStep
    from minires.models import cifar_resnet
    from minires.optim import SGD

    model = cifar_resnet(depth, seed=0).to("gpu")
    graphed = CUDAGraphStep(model, SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4))
    x, y = (to_device(a, "gpu") for a in _batch(batch))

    def step():
        graphed(x, y)
        _cupy_sync()
    return step


def _cupy_sync():
    import cupy
    cupy.cuda.Stream.null.synchronize()


def _torch_step(depth, batch, device, threads):
    import torch
    import torch.nn as nn
    import torch.nn.functional as TF
    torch.set_num_threads(threads)
    dev = "cuda" if device == "gpu" else "cpu"

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.stride, self.extra = stride, cout - cin

        def forward(self, x):
            out = TF.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            sc = x[:, :, ::self.stride, ::self.stride] if self.stride > 1 else x
            if self.extra:
                sc = TF.pad(sc, (0, 0, 0, 0, 0, self.extra))  # option A
            return TF.relu(out + sc)

    n = (depth - 2) // 6
    layers, cin = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()], 16
    for i, width in enumerate((16, 32, 64)):
        for j in range(n):
            layers.append(Block(cin, width, 2 if (i > 0 and j == 0) else 1))
            cin = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)]
    model = nn.Sequential(*layers).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x, y = _batch(batch)
    x, y = torch.from_numpy(x).to(dev), torch.from_numpy(y).to(dev)
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)

    def step():
        opt.zero_grad()
        TF.cross_entropy(model(x), y).backward()
        opt.step()
        sync()
    return step


def _mygrad_step(depth, batch):
    """The same ResNet-20 in mygrad (a NumPy autograd library), with a hand-written SGD."""
    import mygrad as mg
    import numpy as np
    from mygrad.nnet.activations import relu
    from mygrad.nnet.layers import conv_nd
    from mygrad.nnet.layers.batchnorm import batchnorm
    from mygrad.nnet.losses import softmax_crossentropy

    rng = np.random.default_rng(0)
    params, velocity = [], []

    def param(*shape, std=None, value=None):
        data = np.full(shape, value, np.float32) if value is not None else (rng.standard_normal(shape) * std).astype(np.float32)
        t = mg.Tensor(data)
        params.append(t)
        velocity.append(np.zeros_like(data))
        return t

    def conv(cin, cout):
        return param(cout, cin, 3, 3, std=(2 / (9 * cin)) ** 0.5)

    def bn(c):
        return param(c, value=1.0), param(c, value=0.0)

    n = (depth - 2) // 6
    stem = (conv(3, 16), bn(16))
    blocks, cin = [], 16
    for i, width in enumerate((16, 32, 64)):
        for j in range(n):
            stride = 2 if (i > 0 and j == 0) else 1
            blocks.append((conv(cin, width), bn(width), conv(width, width), bn(width), stride, width - cin))
            cin = width
    fc_w, fc_b = param(64, 10, std=0.1), param(10, value=0.0)
    x, y = _batch(batch)

    def strided_conv(h, w):
        # mygrad needs (H + 2p - k) divisible by the stride; padding 1 only at the top and left
        # gives the same windows as PyTorch's symmetric padding (the last row is never read).
        n, c, hh, ww = h.shape
        h = mg.concatenate([mg.zeros((n, c, 1, ww), dtype=np.float32), h], axis=2)
        h = mg.concatenate([mg.zeros((n, c, hh + 1, 1), dtype=np.float32), h], axis=3)
        return conv_nd(h, w, stride=2, padding=0)

    def forward():
        h = relu(batchnorm(conv_nd(x, stem[0], stride=1, padding=1), gamma=stem[1][0], beta=stem[1][1], eps=1e-5))
        for w1, (g1, b1), w2, (g2, b2), stride, extra in blocks:
            c1 = strided_conv(h, w1) if stride > 1 else conv_nd(h, w1, stride=1, padding=1)
            out = relu(batchnorm(c1, gamma=g1, beta=b1, eps=1e-5))
            out = batchnorm(conv_nd(out, w2, stride=1, padding=1), gamma=g2, beta=b2, eps=1e-5)
            sc = h[:, :, ::stride, ::stride] if stride > 1 else h
            if extra:
                sc = mg.concatenate([sc, mg.zeros((sc.shape[0], extra) + sc.shape[2:], dtype=np.float32)], axis=1)
            h = relu(out + sc)
        return mg.matmul(h.mean(axis=(2, 3)), fc_w) + fc_b

    def step():
        loss = softmax_crossentropy(forward(), y)
        loss.backward()
        for p, v in zip(params, velocity):
            g = p.grad + 1e-4 * p.data
            v *= 0.9
            v += g
            p.data -= 0.1 * v
            p.null_grad()
    return step


def measure(framework, model, threads, batch, warmup, steps, device, algorithm="auto", clock="wall"):
    """Run in a fresh process: median step time and peak memory growth of one configuration."""
    import numpy as np
    depth = DEPTHS[model]
    if framework == "minires":
        step = _minires_step(depth, batch, device, threads, algorithm)
    elif framework == "minires-graph":
        step = _minires_graph_step(depth, batch)
    elif framework == "torch":
        step = _torch_step(depth, batch, device, threads)
    else:
        step = _mygrad_step(depth, batch)
    base = _memory(framework, device)
    for _ in range(warmup):
        step()
    now = time.thread_time if clock == "cpu" else time.perf_counter
    times = []
    for _ in range(steps):
        t = now()
        step()
        times.append(now() - t)
    peak = _memory(framework, device)
    median = float(np.median(times))
    return {"framework": framework, "model": model, "device": device, "threads": threads,
            "median_s": median, "img_per_s": batch / median, "peak_mib": (peak - base) / 2**20,
            "steps": steps}


def _memory(framework, device):
    """Bytes in use at their peak so far: host RSS on the CPU; on the GPU, device memory
    (CuPy's pool, which keeps what it ever allocated; torch's max_memory_allocated)."""
    import resource
    if device == "gpu":
        if framework == "torch":
            import torch
            return torch.cuda.max_memory_allocated()
        import cupy
        return cupy.get_default_memory_pool().total_bytes()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# --------------------------------------------------------------------------- per-op profile

def profile(model, batch, steps, device, threads, algorithm, clock="wall"):
    """Time minires' ops by class (forward and backward separately), the optimiser, and the rest."""
    sys.path.insert(0, ROOT)
    import numpy as np

    from minires.engine import Function
    from minires.models import cifar_resnet
    from minires.optim import SGD
    from minires.step import train_step
    import minires

    minires.set_num_threads(threads)
    minires.use_algorithm(algorithm)
    sync = _cupy_sync if device == "gpu" else (lambda: None)
    now = time.thread_time if clock == "cpu" else time.perf_counter
    totals = {}

    def timed(cls, method, key):
        original = getattr(cls, method)

        def wrapper(self, *args):
            sync()
            t = now()
            out = original(self, *args)
            sync()
            totals[key] = totals.get(key, 0.0) + now() - t
            return out
        setattr(cls, method, wrapper)

    seen = set()
    classes = list(Function.__subclasses__())
    while classes:
        cls = classes.pop()
        classes.extend(cls.__subclasses__())
        if cls in seen:
            continue
        seen.add(cls)
        for method in ("forward", "backward", "forward_cpu", "backward_cpu", "forward_gpu", "backward_gpu"):
            if method in vars(cls):  # the reference, or the fast path the engine calls on this device
                timed(cls, method, f"{cls.__name__} {method}")

    net = cifar_resnet(DEPTHS[model], seed=0).to(device)
    opt = SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    timed(SGD, "step", "SGD step")
    x, y = _batch(batch)
    x, y = minires.Tensor(x).to(device), minires.Tensor(y).to(device).data

    def step():
        train_step(net, opt, x, y)
        sync()
    step()
    totals.clear()
    start = now()
    for _ in range(steps):
        step()
    wall = (now() - start) / steps
    rows = sorted(((k, v / steps) for k, v in totals.items()), key=lambda kv: -kv[1])
    print(f"\nper-op profile, minires {model} batch {batch} on {device}, {threads} thread(s), conv algorithm "
          f"{algorithm}, {clock} clock: {1000 * wall:.1f} ms per step "
          f"(timers add a sync per op, so the total runs a little slower than unprofiled)")
    print(f"{'op':<28}{'ms/step':>10}{'share':>8}")
    for k, v in rows:
        print(f"{k:<28}{1000 * v:>10.1f}{100 * v / wall:>7.1f}%")
    rest = wall - sum(v for _, v in rows)
    print(f"{'rest (Python, graph, glue)':<28}{1000 * rest:>10.1f}{100 * rest / wall:>7.1f}%")


# --------------------------------------------------------------------------- driver

def available(framework, device):
    code = {"torch": "import torch; assert {}".format("torch.cuda.is_available()" if device == "gpu" else "True"),
            "mygrad": "import mygrad",
            "minires": "import sys; sys.path.insert(0, %r); import minires; assert %s" % (
                ROOT, "minires.gpu_available()" if device == "gpu" else "True")}
    if framework == "minires-graph":  # CUDA graphs: the GPU only
        return device == "gpu" and available("minires", "gpu")
    code = code[framework]
    return subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def run_child(args, framework, model, threads, device):
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    cmd = [sys.executable, __file__, "--child", framework, model, str(threads), device,
           "--batch", str(args.batch), "--warmup", str(args.warmup), "--steps", str(args.steps),
           "--algorithm", args.algorithm, "--clock", args.clock, "--malloc", args.malloc]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        print(f"  {framework} {model} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def add_malloc_option(parser):
    """``--malloc keep|default``, shared by train_step.py, step_ab.py and conv_ab.py."""
    parser.add_argument("--malloc", choices=["keep", "default"], default="keep",
                        help="keep (default): glibc keeps freed memory for the next step, for every framework alike, "
                             "as `python -m minires.train` does on the CPU (minires/cpu_memory.py); "
                             "default: glibc's own thresholds")


def keep_freed_memory(choice):
    """``--malloc keep``: glibc keeps freed memory for the next step in this process, as the
    training command sets it on the CPU (minires/cpu_memory.py). Applied to every framework
    alike: it is the process's allocator, and PyTorch's and mygrad's arrays come from it too."""
    if choice == "keep":
        sys.path.insert(0, ROOT)
        from minires.cpu_memory import keep_freed_memory as keep
        keep()


def header(threads, algorithm, malloc):
    import numpy as np
    lines = [f"python {sys.version.split()[0]}, numpy {np.__version__}, malloc {malloc}, threads {threads} (minires.set_num_threads"
             f"({threads}), BLAS at 1 thread inside minires's pool; torch.set_num_threads({threads}); mygrad: "
             f"OPENBLAS_NUM_THREADS={threads}), minires conv algorithm {algorithm}, load average {os.getloadavg()[0]:.2f}"]
    try:
        from threadpoolctl import threadpool_info
        for info in threadpool_info():
            if info.get("user_api") == "blas":
                lines.append(f"BLAS: {info.get('internal_api')} {info.get('version')} kernel {info.get('architecture')}")
    except ImportError:
        lines.append("BLAS: (install threadpoolctl to show the kernel)")
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if var in os.environ:
            lines.append(f"warning: {var}={os.environ[var]} is set (it selects a slower kernel here)")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["resnet20", "resnet56"], choices=sorted(DEPTHS))
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--device", choices=["cpu", "gpu", "all"], default="cpu")
    p.add_argument("--frameworks", nargs="+", default=["minires", "minires-graph", "torch", "mygrad"],
                   help="minires-graph: the step replayed as a CUDA graph (GPU only)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--profile", action="store_true", help="per-op profile of minires instead of the table")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="wall time (default), or the main thread's CPU time: steadier on a loaded machine, "
                        "meaningful only with 1 thread (every framework then computes on its main thread)")
    p.add_argument("--algorithm", choices=["auto", "im2col", "winograd", "winograd4"], default="auto",
                   help="minires's conv algorithm (minires.use_algorithm; default auto: timed on this machine "
                        "unless MINIRES_AUTOTUNE=0)")
    add_malloc_option(p)
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--child", nargs=4, metavar=("FRAMEWORK", "MODEL", "THREADS", "DEVICE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.child:
        framework, model, threads, device = args.child
        _set_threads(int(threads))
        keep_freed_memory(args.malloc)
        print(json.dumps(measure(framework, model, int(threads), args.batch, args.warmup, args.steps, device,
                                 args.algorithm, args.clock)))
        return 0
    devices = ["cpu", "gpu"] if args.device == "all" else [args.device]
    if args.profile:
        _set_threads(args.threads[0])  # before NumPy loads in profile(): OpenBLAS reads it once
        keep_freed_memory(args.malloc)
        for device in devices:
            for model in args.models:
                profile(model, args.batch, args.steps, device, args.threads[0], args.algorithm, args.clock)
        return 0

    results = []
    for device in devices:
        threads_list = args.threads if device == "cpu" else [args.threads[0]]
        frameworks = [f for f in args.frameworks if available(f, device) and not (f == "mygrad" and device == "gpu")]
        for threads in threads_list:
            print(header(threads, args.algorithm, args.malloc) if device == "cpu" else f"device gpu")
            print(f"{'model':<10}{'framework':<15}{'device':<8}{'img/s':>9}{'ms/step':>10}{'peak MiB':>10}"
                  f"{'torch time / ours':>19}")
            for model in args.models:
                rows = {}
                for framework in frameworks:
                    if framework == "mygrad" and model != "resnet20":
                        continue
                    r = run_child(args, framework, model, threads, device)
                    if r:
                        rows[framework] = r
                        results.append(r)
                ref = rows.get("torch")
                for framework, r in rows.items():
                    ratio = f"{r['img_per_s'] / ref['img_per_s']:.2f}x" if ref else "n/a"
                    print(f"{model:<10}{framework:<15}{device:<8}{r['img_per_s']:>9.1f}{1000 * r['median_s']:>10.1f}"
                          f"{r['peak_mib']:>10.0f}{ratio:>19}")
            print()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
