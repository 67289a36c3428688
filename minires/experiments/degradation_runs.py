"""The degradation experiment's runs: one ``minires.train.train`` per net and seed, several at a
time in worker processes, resumed where they stopped, and their metrics read back
(``python -m minires.experiments.degradation``, ``degradation.py``, is the command line)."""
import concurrent.futures
import contextlib
import multiprocessing
import os

from .. import train as T
from ..checkpoint import load_checkpoint
from ..config import TrainConfig
from ..rundir import model_name, read_metrics, run_name


def run_dir(out, plain, depth, seed):
    """``<out>/runs/plain56-s0``: one directory per net and seed."""
    return os.path.join(out, "runs", f"{run_name(plain, depth)}-s{seed}")


def run_configs(args):
    """One TrainConfig per net and seed, deepest first (so parallel workers finish together)."""
    configs = []
    for depth in sorted(args.depths, reverse=True):
        for seed in args.seeds:
            for plain in (True, False):
                cfg = TrainConfig(depth=depth, plain=plain, dataset=args.dataset, data_dir=args.data_dir,
                                  subset=args.subset,
                                    device=args.device, seed=seed, batch_size=args.batch_size,
                                    width=args.width, train_limit=args.train_limit, warmup=args.warmup,
                                    epochs=args.epochs, iterations=args.iterations, milestones=args.milestones,
                                    cuda_graph=args.cuda_graph, out=run_dir(args.out, plain, depth, seed),
                                    progress=not args.no_progress and args.jobs == 1)
                configs.append(cfg)
    return configs


def _label(cfg):
    return f"{model_name(cfg.plain, cfg.depth)} seed {cfg.seed}"


def train_or_resume(cfg, log=print):
    """Train one net; resume it if interrupted before; skip it if already finished.

    Returns "trained", "skipped", or "failed: <why>" (a diverged or broken run is reported,
    not raised, so that it does not lose the other runs' results).
    """
    last = os.path.join(cfg.out, "last.npz")
    resume = os.path.exists(last)
    if resume and _finished(last, cfg):
        log(f"{_label(cfg)}: already trained ({last}), skipping")
        return "skipped"
    log(f"--- {_label(cfg)} ---")
    try:
        T.train(cfg, resume=resume, log=log)
    except Exception as e:
        log(f"{_label(cfg)} FAILED: {type(e).__name__}: {e}")
        return f"failed: {_label(cfg)}: {type(e).__name__}: {e}"
    return "trained"


def _train_in_worker(cfg):
    """A worker's job: log to the run directory, and to the console prefixed with the run's name."""
    os.makedirs(cfg.out, exist_ok=True)
    with open(os.path.join(cfg.out, "log.txt"), "a") as f:
        def log(*parts):
            print(*parts, file=f, flush=True)
            print(f"[{run_name(cfg.plain, cfg.depth)}-s{cfg.seed}]", *parts, flush=True)
        return train_or_resume(cfg, log)


def run_all(args, log=print):
    """Train every net and seed, ``args.jobs`` at a time; returns each run's outcome (see train_or_resume).

    With ``--jobs 2`` on a 2-core CPU, two nets train at once with one BLAS thread each:
    BLAS gains little from a second thread on these small matrices (about 15 %), so two
    single-threaded runs side by side nearly double the throughput. On a GPU a step at batch
    128 is bound by kernel launches, so several processes keep one GPU busy.
    """
    configs = run_configs(args)
    if args.jobs == 1:
        return [train_or_resume(cfg, log) for cfg in configs]
    log(f"training {len(configs)} runs, {args.jobs} at a time; logs in {args.out}/runs/*/log.txt")
    with _one_thread_environment(), concurrent.futures.ProcessPoolExecutor(
            args.jobs, mp_context=multiprocessing.get_context("spawn")) as ex:
        return list(ex.map(_train_in_worker, configs))


THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def _one_thread_environment():
    """One thread for the workers spawned inside: fresh processes (spawn) read the thread count
    from their environment when NumPy loads. This process's environment is restored after."""
    saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    os.environ.update(dict.fromkeys(THREAD_VARIABLES, "1"))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _finished(last, cfg):
    meta = load_checkpoint(last)["meta"]
    saved = meta["config"]
    same_budget = (saved.get("epochs"), saved.get("iterations")) == (cfg.epochs, cfg.iterations)
    return same_budget and meta["batch_in_epoch"] == 0 and meta["iteration"] > 0 and (
        cfg.epochs is None or meta["epoch"] >= cfg.epochs) and (
        cfg.iterations is None or meta["iteration"] >= cfg.iterations)


def collect(out, depths, seeds):
    """{net name: {seed: metric rows}} from the run directories (runs with no epoch yet are left out)."""
    results = {}
    for plain in (True, False):
        for depth in depths:
            per_seed = {s: read_metrics(run_dir(out, plain, depth, s)) for s in seeds}
            results[run_name(plain, depth)] = {s: rows for s, rows in per_seed.items() if rows}
    return results
