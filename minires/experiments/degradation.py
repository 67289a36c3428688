"""``python -m minires.experiments.degradation``: the paper's Figure 6 from your own runs.

Trains plain and residual CIFAR nets of several depths with the same recipe, data, seed and
budget (by calling ``minires.train.train``, the code behind ``python -m minires.train``), then
writes to ``--out``:

    runs/<plain|resnet><depth>/   each run's directory (metrics, checkpoints, curves)
    figure6.png                   training error (dashed) and test error (bold) against
                                  iterations; plain nets left, ResNets right
    results.md                    final training and test errors, and what they show
    summary.json                  the same numbers, machine-readable
    responses.png, responses.json the layer responses of the runs (the paper's Figure 7)

Presets:
    cpu    (default) about 30 minutes on a 2-core CPU with the 5,000-image CIFAR-10 sample
    paper  the paper's schedule: 64k iterations, lr 0.1 divided by 10 at 32k and 48k
Interrupted? Run the same command again: finished runs are kept, unfinished ones resume.
"""
import argparse
import json
import os
import sys

from .. import train as T
from ..checkpoint import load_checkpoint
from ..cli import add_config_options

PRESETS = {
    # 4,000 training images = 32 batches of 128 per epoch.
    # 10 epochs = 320 iterations; lr 0.1, divided by 10 after epochs 5 and 7.5 (1/2 and 3/4).
    "cpu": dict(epochs=10, iterations=None, milestones=None),
    "paper": dict(epochs=None, iterations=64000, milestones=[32000, 48000]),
}


def run_configs(args):
    """One TrainConfig per net, deepest first (so parallel workers finish together)."""
    preset = PRESETS[args.preset]
    configs = []
    for depth in sorted(args.depths, reverse=True):
        for plain in (True, False):
            cfg = T.TrainConfig(depth=depth, plain=plain, dataset=args.dataset, data_dir=args.data_dir,
                                device=args.device, seed=args.seed, batch_size=args.batch_size,
                                width=args.width, train_limit=args.train_limit,
                                out=os.path.join(args.out, "runs", T.run_name(plain, depth)),
                                progress=not args.no_progress and args.jobs == 1, **preset)
            if args.epochs is not None:
                cfg.epochs, cfg.iterations, cfg.milestones = args.epochs, None, None
            configs.append(cfg)
    return configs


def train_or_resume(cfg, log=print):
    """Train one net; resume it if interrupted before; skip it if already finished."""
    last = os.path.join(cfg.out, "last.npz")
    resume = os.path.exists(last)
    if resume and _finished(last, cfg):
        log(f"{T.model_name(cfg.plain, cfg.depth)}: already trained ({last}), skipping")
    else:
        log(f"--- {T.model_name(cfg.plain, cfg.depth)} ---")
        T.train(cfg, resume=resume, log=log)
    return T.read_metrics(cfg.out)


def _train_in_worker(cfg):
    """A worker's job: log to the run directory, and to the console prefixed with the net's name."""
    os.makedirs(cfg.out, exist_ok=True)
    with open(os.path.join(cfg.out, "log.txt"), "a") as f:
        def log(*parts):
            print(*parts, file=f, flush=True)
            print(f"[{T.model_name(cfg.plain, cfg.depth)}]", *parts, flush=True)
        return train_or_resume(cfg, log)


def run_all(args, log=print):
    """Train every plain and residual net (``args.jobs`` at a time); returns {name: metric rows}.

    With ``--jobs 2`` on a 2-core CPU, two nets train at once with one BLAS thread each:
    BLAS gains little from a second thread on these small matrices (about 15 %), so two
    single-threaded runs side by side nearly double the throughput.
    """
    configs = run_configs(args)
    if args.jobs == 1:
        rows = [train_or_resume(cfg, log) for cfg in configs]
    else:
        import concurrent.futures
        import multiprocessing
        # Workers are fresh processes (spawn): they read the thread count when NumPy loads.
        os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
        log(f"training {len(configs)} nets, {args.jobs} at a time; logs in {args.out}/runs/*/log.txt")
        with concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as ex:
            rows = list(ex.map(_train_in_worker, configs))
        for cfg, r in zip(configs, rows):
            log(f"{T.model_name(cfg.plain, cfg.depth)}: " + (T.format_row(r[-1], r[-1]["iteration"]) if r else "no epochs"))
    return {T.run_name(cfg.plain, cfg.depth): r for cfg, r in zip(configs, rows)}


def _finished(last, cfg):
    meta = load_checkpoint(last)["meta"]
    saved = meta["config"]
    same_budget = (saved.get("epochs"), saved.get("iterations")) == (cfg.epochs, cfg.iterations)
    return same_budget and meta["batch_in_epoch"] == 0 and meta["iteration"] > 0 and (
        cfg.epochs is None or meta["epoch"] >= cfg.epochs) and (
        cfg.iterations is None or meta["iteration"] >= cfg.iterations)


def plot_figure6(results, depths, path, title):
    """Two panels like the paper's Figure 6: plain nets left, ResNets right."""
    from matplotlib.figure import Figure  # no pyplot: no global backend switch, safe in notebooks

    fig = Figure(figsize=(11, 4.2))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, plain in zip(axes, (True, False)):
        for i, depth in enumerate(depths):
            rows = results[T.run_name(plain, depth)]
            its = [r["iteration"] for r in rows]
            color = f"C{i}"
            ax.plot(its, [100 * r["train_err"] for r in rows], "--", color=color, linewidth=1.2)
            ax.plot(its, [100 * r["test_err"] for r in rows], "-", color=color, linewidth=2.5,
                    label=T.model_name(plain, depth))
        ax.set_title(("plain networks" if plain else "residual networks (option A)"))
        ax.set_xlabel("iterations")
        ax.grid(alpha=0.3)
        ax.legend(title="bold: test, dashed: training")
    axes[0].set_ylabel("error (%)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return fig


def summarise(results, depths):
    """The final numbers and the sentences they support, as (markdown, summary dict)."""
    final = {name: rows[-1] for name, rows in results.items()}
    lines = ["| network | iterations | final training error | final test error |", "|---|---|---|---|"]
    for plain in (True, False):
        for depth in depths:
            r = final[T.run_name(plain, depth)]
            lines.append(f"| {T.model_name(plain, depth)} | {r['iteration']} | {100 * r['train_err']:.2f} % | "
                         f"{100 * r['test_err']:.2f} % |")
    findings = []
    shallow, deep = min(depths), max(depths)
    if shallow != deep:
        ps, pd = final[T.run_name(True, shallow)], final[T.run_name(True, deep)]
        rs, rd = final[T.run_name(False, shallow)], final[T.run_name(False, deep)]
        worse = pd["train_err"] > ps["train_err"]
        findings.append(
            f"Degradation: plain-{deep} ends with {100 * pd['train_err']:.1f} % training error, plain-{shallow} "
            f"with {100 * ps['train_err']:.1f} %: the deeper plain net trains "
            f"{'worse' if worse else 'NOT worse (the degradation did not show in this run)'}.")
        cured = rd["train_err"] < pd["train_err"]
        findings.append(
            f"Shortcuts: ResNet-{deep} ends with {100 * rd['train_err']:.1f} % training error against "
            f"{100 * pd['train_err']:.1f} % for plain-{deep} (test {100 * rd['test_err']:.1f} % against "
            f"{100 * pd['test_err']:.1f} %): the residual net trains "
            f"{'better' if cured else 'NOT better (unexpected)'}.")
        if rd["train_err"] < rs["train_err"]:
            findings.append(
                f"Deeper ResNets: ResNet-{deep} already ends lower than ResNet-{shallow} "
                f"({100 * rd['train_err']:.1f} % against {100 * rs['train_err']:.1f} % training error), "
                "as in the paper.")
        else:
            its = rd["iteration"]
            findings.append(
                f"Deeper ResNets: at this budget ResNet-{deep} ends *higher* than ResNet-{shallow} "
                f"({100 * rd['train_err']:.1f} % against {100 * rs['train_err']:.1f} % training error), unlike the "
                f"end of the paper's runs. Neither net is near convergence: {its} iterations are "
                f"{100 * its / 64000:.1f} % of the paper's 64k. Early in training the deeper net lags (more layers "
                "to fit, a noisier start, lr drops that come before it has caught up); the paper's 'deeper "
                "ResNets end lower' is a statement about the end of its schedule (`--preset paper` on the "
                "full training set), which a short CPU budget does not reach.")
    md = "\n".join(lines) + "\n\n" + "\n\n".join(f"- {f}" for f in findings) + "\n"
    summary = {name: {k: r[k] for k in ("iteration", "train_err", "test_err", "train_loss", "test_loss")}
               for name, r in final.items()}
    return md, {"final": summary, "findings": findings}


def build_parser():
    p = argparse.ArgumentParser(prog="python -m minires.experiments.degradation", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    p.add_argument("--depths", type=int, nargs="+", default=[20, 56], help="6n+2 depths (paper: 20 32 44 56)")
    p.add_argument("--epochs", type=int, default=None, help="override the preset's budget, in epochs")
    # The training options, with the defaults of minires.train (TrainConfig).
    add_config_options(p, ("batch_size", "width", "train_limit", "dataset", "data_dir", "device", "seed"))
    p.add_argument("--out", default="runs/degradation")
    p.add_argument("--jobs", type=int, default=None,
                   help="train this many nets at once, one BLAS thread each (default: 2 on a CPU with "
                        "2 or more cores, 1 on the GPU)")
    p.add_argument("--no-responses", action="store_true", help="skip the layer-response figure")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    args.depths = sorted(set(args.depths))
    if args.jobs is None:
        args.jobs = 1 if args.device == "gpu" else min(2, os.cpu_count() or 1)
    if args.jobs < 1:
        raise SystemExit(f"--jobs must be >= 1, got {args.jobs}")
    os.makedirs(args.out, exist_ok=True)
    results = run_all(args)
    rows = results[T.run_name(False, args.depths[0])]
    budget = f"preset {args.preset}" if args.epochs is None else f"{args.epochs} epochs"
    data = "CIFAR-10" if args.dataset == "cifar10" else "synthetic data"
    title = f"{data}{' from ' + args.data_dir if args.data_dir else ''}, {budget}"
    plot_figure6(results, args.depths, os.path.join(args.out, "figure6.png"), title)
    md, summary = summarise(results, args.depths)
    header = (f"# Degradation experiment: {title}\n\n"
              f"Command: `python -m minires.experiments.degradation {' '.join(argv if argv is not None else sys.argv[1:])}`\n\n"
              f"Same recipe, data, seed and budget for every net ({rows[-1]['iteration']} iterations of batch "
              f"{args.batch_size}). Figure: `figure6.png`; layer responses: `responses.png`.\n\n"
              "Training error: the running error on the epoch's augmented mini-batches (BN in training "
              "mode), as in the paper's curves; test error: the whole test set after the epoch, in eval "
              "mode.\n\n")
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(header + md)
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(md)
    if not args.no_responses:
        from . import responses
        runs = [os.path.join(args.out, "runs", T.run_name(p, d)) for p in (True, False) for d in args.depths]
        responses.main([*runs, "--out", args.out, "--device", args.device])
    return 0


if __name__ == "__main__":
    sys.exit(main())
