"""The degradation experiment's outputs: Figure 6, results.md and summary.json (and Figure 7 through
``responses.py``), written from the run directories."""
import json
import os

from ..config import TrainConfig
from ..data import describe
from ..rundir import model_name, run_name
from ..train import plan
from .degradation_analysis import PAPER_ITERATIONS, curves, summarise
from .degradation_runs import collect, run_dir

WARMUP_TEXT = {True: "lr 0.01 until the training error is below 80 %", False: "none",
               None: "as in the paper, for depth >= 110 only"}


def plot_figure6(results, depths, path, title):
    """Two panels like the paper's Figure 6, plain nets left, ResNets right: the mean over seeds, min-max bands."""
    from matplotlib.figure import Figure  # no pyplot: no global backend switch, safe in notebooks

    n_seeds = max((len(s) for s in results.values()), default=0)
    fig = Figure(figsize=(11, 4.4))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, plain in zip(axes, (True, False)):
        for i, depth in enumerate(depths):
            per_seed = results.get(run_name(plain, depth))
            if not per_seed:
                continue
            c = curves(per_seed)
            color = f"C{i}"
            its = c["iteration"]
            for key, style, width in (("train_err", "--", 1.2), ("test_err", "-", 2.5)):
                ax.plot(its, [100 * v for v in c[key]["mean"]], style, color=color, linewidth=width,
                        label=_legend_label(plain, depth, len(per_seed)) if key == "test_err" else None)
                if len(per_seed) > 1:
                    ax.fill_between(its, [100 * v for v in c[key]["min"]], [100 * v for v in c[key]["max"]],
                                    color=color, alpha=0.15, linewidth=0)
        ax.set_title("plain networks" if plain else "residual networks (option A)")
        ax.set_xlabel("iterations")
        ax.grid(alpha=0.3)
        band = f"\nlines: mean; bands: min-max over {n_seeds} seeds" if n_seeds > 1 else ""
        if ax.get_legend_handles_labels()[0]:
            ax.legend(title=f"bold: test, dashed: training{band}", fontsize=8, title_fontsize=8)
    axes[0].set_ylabel("error (%)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return fig


def _legend_label(plain, depth, n_seeds):
    return model_name(plain, depth) + (f" ({n_seeds} seeds)" if n_seeds > 1 else "")


def write_report(args, wall_s=None, argv=None):
    """Figure 6, results.md and summary.json from the run directories; Figure 7 unless --no-responses."""
    results = collect(args.out, args.depths, args.seeds)
    results = {k: v for k, v in results.items() if v}
    if not results:
        print(f"degradation: no run in {args.out}/runs has finished an epoch yet: nothing to report")
        return None
    # The budget in iterations: a run's first row is its first whole epoch.
    batches_per_epoch = next(iter(next(iter(results.values())).values()))[0]["iteration"]
    budget = plan(TrainConfig(epochs=args.epochs, iterations=args.iterations), batches_per_epoch)[0]
    identity = _data_identity(args)
    seeds = f"{len(args.seeds)} seed{'s' if len(args.seeds) > 1 else ''}"
    title = f"{_short_name(identity)}, preset {args.preset}, {seeds}"
    plot_figure6(results, args.depths, os.path.join(args.out, "figure6.png"), title)
    md, summary = summarise(results, args.depths, budget, args.trained_below)
    summary.update(preset=args.preset, epochs=args.epochs, iterations=args.iterations, warmup=args.warmup,
                   device=args.device, dataset=args.dataset, data=identity, wall_s=wall_s,
                   command="python -m minires.experiments.degradation " + " ".join(argv or []))
    response_md = "" if args.no_responses else _figure7(args, summary)
    if args.report_only:  # keep the command and wall time of the run that trained, if one did here
        try:
            with open(os.path.join(args.out, "summary.json")) as f:
                before = json.load(f)
            wall_s = wall_s or before.get("wall_s")
            summary["command"] = before.get("command") or summary["command"]
        except (OSError, ValueError):
            pass
    summary["wall_s"] = wall_s
    header = _header(args, title, summary, budget, wall_s)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(header + md + response_md)
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(md + response_md)
    return summary


def _figure7(args, summary):
    """Figure 7 (the layer responses) of the runs, its claims into ``summary``; the report's section."""
    from . import responses
    dirs = [run_dir(args.out, p, d, s) for p in (True, False) for d in args.depths for s in args.seeds]
    dirs = [d for d in dirs if os.path.exists(os.path.join(d, "metrics.jsonl"))]
    have_checkpoints = all(os.path.exists(os.path.join(d, "last.npz")) for d in dirs)
    report = None
    try:
        if have_checkpoints:
            report = responses.main([*dirs, "--out", args.out, "--device", args.device,
                                     "--trained-below", str(args.trained_below)])
        elif os.path.exists(os.path.join(args.out, "responses.json")):
            print("degradation: no checkpoints here; Figure 7 redrawn from the existing responses.json")
            report = responses.replot(os.path.join(args.out, "responses.json"), args.out)
    except Exception as e:  # the table and Figure 6 must not be lost to a failure in Figure 7
        print(f"degradation: Figure 7 failed ({type(e).__name__}: {e}); the rest of the report follows")
        return f"\n## Layer responses (Figure 7)\n\nFailed: {type(e).__name__}: {e}\n"
    if isinstance(report, int):  # responses printed why (a missing checkpoint or data set)
        return "\n## Layer responses (Figure 7)\n\nFailed: see the message above.\n"
    if report is None:
        return ""
    summary["responses"] = {"claims": report["claims"], "left_out": report["left_out"]}
    return ("\n## Layer responses (Figure 7, `responses.png`)\n\n"
            + "\n\n".join(f"- {c['text']}" for c in report["claims"]) + "\n")


def _header(args, title, summary, budget, wall_s):
    """results.md's opening: the command, the budget, what the errors mean."""
    identity = summary["data"]
    wall = f" Wall time of the training: {wall_s / 60:.1f} minutes." if wall_s else ""
    train_time = sum(t for net in summary["nets"].values() for t in net["train_time_s"].values())
    return (f"# Degradation experiment: {title}\n\n"
              f"Command: `{summary['command']}`\n\n"
              f"Data: {describe(identity) if identity else 'unknown (runs written before data identities)'}"
              f"{'; sha256 `' + identity['sha256'] + '`' if identity else ''}.\n\n"
              f"Same recipe, data and budget for every net ({budget} iterations of batch {args.batch_size}, "
              f"{100 * budget / PAPER_ITERATIONS:.1f} % of the paper's 64k; warm-up: "
              f"{WARMUP_TEXT[args.warmup]}); "
              f"seeds {', '.join(map(str, summary['seeds']))}. Figure: `figure6.png`; layer responses: "
              f"`responses.png`. Training loops, summed over all runs: {train_time / 60:.1f} minutes.{wall}\n\n"
              "Training error: the running error on the epoch's augmented mini-batches (BN in training "
              "mode), as in the paper's curves; test error: the whole test set after the epoch, in eval "
              "mode. Gaps are in points of error, paired by seed (the same seed draws the same "
              "shuffling and augmentation for every net).\n\n")


def _data_identity(args):
    """The data identity the runs recorded (their config.json), or None for runs that predate it."""
    for plain in (True, False):
        for depth in args.depths:
            for seed in args.seeds:
                try:
                    with open(os.path.join(run_dir(args.out, plain, depth, seed), "config.json")) as f:
                        return json.load(f).get("data")
                except (OSError, ValueError):
                    continue
    return None


def _short_name(identity):
    """'CIFAR-10 (first 4,000 training and 1,000 test images)', 'CIFAR-10', 'synthetic data'."""
    if identity is None or identity["name"] == "synthetic":
        return "synthetic data" if identity else "data of unknown identity"
    if identity["subset"] is None:
        return "CIFAR-10"
    return f"CIFAR-10 (first {identity['train']:,} training and {identity['test']:,} test images)"
