"""Shared by the benchmark scripts: thread set-up, the environment header, and timing.

Import this module *before* NumPy and call ``apply_threads_from_argv()`` first thing:
OpenBLAS reads its thread count from the environment once, when NumPy loads it, so the
variables must be exported before ``import numpy`` (threadpoolctl, when installed, can
also change it later; we do both).
"""
import os
import platform
import statistics
import sys
import time

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def apply_threads_from_argv(argv=None):
    """Read ``--threads N`` (or ``--threads=N``) from argv and export it to the BLAS/OpenMP
    environment variables. Returns N, or None when the option is absent. No NumPy import here."""
    argv = sys.argv[1:] if argv is None else argv
    n = None
    for i, arg in enumerate(argv):
        if arg == "--threads" and i + 1 < len(argv):
            n = argv[i + 1]
        elif arg.startswith("--threads="):
            n = arg.split("=", 1)[1]
    if n is None:
        return None
    if not n.isdigit() or int(n) < 1:
        raise SystemExit(f"--threads must be a positive integer, got {n!r}")
    for var in THREAD_VARS:
        os.environ[var] = n
    return int(n)


def ensure_repo_on_path():
    """Let ``python benchmarks/x.py`` find ``minires`` in the source tree without installing it."""
    try:
        import minires  # noqa: F401
    except ImportError:
        sys.path.insert(0, REPO)


def limit_blas_threads(n):
    """Also limit BLAS/OpenMP pools through threadpoolctl when it is installed (kept for the run)."""
    if n is None:
        return None
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits(limits=n)  # the returned object must stay alive


def cpu_model():
    ensure_repo_on_path()
    from minires.autotune import cpu_model as model  # the autotuner keys its cache by the same name
    return model()


def blas_description():
    """'openblas 0.3.x (SkylakeX kernel), 2 threads' from threadpoolctl, else numpy's build config."""
    try:
        from threadpoolctl import threadpool_info
        pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
        if pools:
            return "; ".join(
                f"{p.get('internal_api')} {p.get('version')} ({p.get('architecture')} kernel), "
                f"{p.get('num_threads')} threads" for p in pools
            )
    except ImportError:
        pass
    ensure_repo_on_path()
    from minires.autotune import blas_description as build_config
    return f"{build_config()} (kernel unknown: install threadpoolctl to see it)"


def op_backward(ctx, gy):
    """Run the backward the engine would run for this op: ``backward_cpu`` on NumPy data (the CPU
    kernels), ``backward_gpu`` on CuPy data, ``backward`` (the reference) under use_reference.
    Calling ``ctx.backward`` directly would time the reference, whatever the forward ran."""
    return getattr(ctx, {"reference": "backward", "cpu": "backward_cpu", "gpu": "backward_gpu"}[ctx.path])(gy)


def load_line():
    """'load average 0.12, 0.30, 0.25 (1, 5, 15 min)': other work on a shared machine skews timings."""
    if not hasattr(os, "getloadavg"):
        return "load average n/a"
    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg()) + " (1, 5, 15 min)"


def header_lines(threads):
    import numpy as np
    env = ", ".join(f"{v}={os.environ[v]}" for v in THREAD_VARS if v in os.environ) or "none set"
    return [
        f"machine : {cpu_model()}, {os.cpu_count()} logical CPUs, {load_line()}",
        f"python  : {platform.python_version()}, numpy {np.__version__}",
        f"BLAS    : {blas_description()}",
        f"threads : {threads if threads is not None else 'default'} (env: {env}); minires.get_num_threads() = "
        f"{_minires_threads()}",
    ]


def _minires_threads():
    """minires's thread count and whether it could hold OpenBLAS at one thread inside its pool."""
    import minires
    from minires.threads import blas_threads_limited
    n = minires.get_num_threads()
    return f"{n} ({'OpenBLAS held at 1 thread inside its pool' if blas_threads_limited() else 'BLAS threads not controlled'})"


def block_times(fns, repeats, warmup, sync=lambda: None, rounds=2, pause=0.05, clock=time.perf_counter):
    """Seconds of each call of each callable in ``fns`` (a dict name -> callable), as lists.

    The contenders take turns in blocks: ``rounds`` times, each runs ``warmup`` untimed calls
    then its share of the ``repeats`` timed calls. Blocks, not call-by-call alternation,
    because two thread pools (OpenBLAS's and PyTorch's OpenMP) keep spinning for a while after
    each call: alternating call by call made PyTorch 3x slower at 2 threads on a 2-core
    machine. Several rounds spread a burst of load from other processes over all contenders,
    so their *ratio* stays meaningful on a shared machine. ``clock`` is wall time by default
    (``time.thread_time`` gives CPU time, a steadier A/B measure of single-threaded code).
    """
    times = {name: [] for name in fns}
    per_round = max(1, -(-repeats // rounds))
    for _ in range(rounds):
        for name, fn in fns.items():
            time.sleep(pause)  # let the other library's worker threads go idle
            for _ in range(warmup):
                fn()
            sync()
            for _ in range(per_round):
                t0 = clock()
                fn()
                sync()
                times[name].append(clock() - t0)
    return times


def block_medians(fns, repeats, warmup, sync=lambda: None, rounds=2):
    """Median seconds per call of each callable in ``fns``, timed by ``block_times``."""
    return {name: statistics.median(ts) for name, ts in block_times(fns, repeats, warmup, sync, rounds).items()}
