"""``python -m minires.experiments.degradation``: the paper's Figure 6 from your own runs, over seeds.

Trains plain and residual CIFAR nets of several depths with the same recipe, data and budget,
each with several seeds (by calling ``minires.train.train``, the code behind
``python -m minires.train``), then writes to ``--out``:

    runs/<plain|resnet><depth>-s<seed>/  each run's directory (metrics, checkpoints, log)
    figure6.png                   training error (dashed) and test error (bold) against iterations,
                                  the mean over seeds with a min-max band; plain left, ResNets right
    results.md                    final errors (mean ± std over seeds) and the findings, each
                                  sentence written from the numbers, whichever way they came out
    summary.json                  the same, machine-readable, with every seed's final numbers
    responses.png, responses.json the layer responses of the trained nets (the paper's Figure 7)

Presets (``--depths``, ``--seeds``, ``--epochs``, ``--device`` override any of them):
    cpu    the learner's: depths 14 and 32, 1 seed, 20 epochs of the 4,000-image CIFAR-10 sample
           (about 11 minutes on a quiet 2-core CPU, two nets at a time); with --seeds 3, the
           committed CPU evidence (docs/degradation/)
    gpu    the committed evidence: depths 20 32 44 56, 3 seeds, the same 30 epochs
           (a few minutes on one GPU with --jobs 12: a step at batch 128 is launch-bound, so
           several processes share the GPU)
    paper  the paper's schedule: 64k iterations, lr 0.1 divided by 10 at 32k and 48k
``--seeds 3`` means seeds 0, 1, 2; ``--seeds 0 4`` means those two.
Interrupted? Run the same command again: finished runs are kept, unfinished ones resume.
``--report-only`` rewrites the figure, table and summary from the run directories as they are.
"""
import argparse
import contextlib
import json
import os
import sys
import time

import numpy as np

from .. import data as datasets
from .. import train as T
from ..data import SAMPLE_SUBSET
from ..checkpoint import load_checkpoint
from ..cli import add_config_options

# A net "trained" when its final training error is below this (chance on 10 classes is 90 %).
TRAINED_BELOW = 0.85
PAPER_ITERATIONS = 64000
WARMUP_TEXT = {True: "lr 0.01 until the training error is below 80 %", False: "none",
               None: "as in the paper, for depth >= 110 only"}

# 4,000 training images = 32 batches of 128 per epoch; 30 epochs = 960 iterations (1.5 % of the
# paper's 64k), lr 0.1 divided by 10 after epochs 15 and 22.5 (1/2 and 3/4, the paper's shape).
# The CPU preset is smaller to fit a learner's half hour: an epoch of depth 14 and 32 costs about
# 12 and 28 s of one core (Winograd convolutions; docs/degradation/README.md).
# Warm-up (lr 0.01 until the training error is below 80 %, the paper's rule for ResNet-110) for
# every net: at this budget a deep plain net that starts at lr 0.1 can stay at chance for the
# whole run (plain-56 did, at 10 epochs), which shows "does not train", not degradation.
PRESETS = {
    "cpu": dict(depths=[14, 32], seeds=1, epochs=20, iterations=None, milestones=None, warmup=True, device="cpu",
                subset=list(SAMPLE_SUBSET)),
    "gpu": dict(depths=[20, 32, 44, 56], seeds=3, epochs=30, iterations=None, milestones=None, warmup=True,
                device="gpu", subset=list(SAMPLE_SUBSET)),
    "paper": dict(depths=[20, 32, 44, 56], seeds=1, epochs=None, iterations=PAPER_ITERATIONS,
                  milestones=[32000, 48000], warmup=None, device="gpu", subset=None),
}


# --------------------------------------------------------------------------- runs

def seed_list(values):
    """``[3]`` -> seeds 0, 1, 2; several values -> those seeds (in order, without repeats)."""
    if len(values) == 1:
        if values[0] < 1:
            raise ValueError(f"degradation: --seeds N needs N >= 1, got {values[0]}")
        return list(range(values[0]))
    if any(s < 0 for s in values):
        raise ValueError(f"degradation: seeds must be >= 0, got {values}")
    return list(dict.fromkeys(values))


def run_dir(out, plain, depth, seed):
    """``<out>/runs/plain56-s0``: one directory per net and seed."""
    return os.path.join(out, "runs", f"{T.run_name(plain, depth)}-s{seed}")


def run_configs(args):
    """One TrainConfig per net and seed, deepest first (so parallel workers finish together)."""
    configs = []
    for depth in sorted(args.depths, reverse=True):
        for seed in args.seeds:
            for plain in (True, False):
                cfg = T.TrainConfig(depth=depth, plain=plain, dataset=args.dataset, data_dir=args.data_dir,
                                    subset=args.subset,
                                    device=args.device, seed=seed, batch_size=args.batch_size,
                                    width=args.width, train_limit=args.train_limit, warmup=args.warmup,
                                    epochs=args.epochs, iterations=args.iterations, milestones=args.milestones,
                                    cuda_graph=args.cuda_graph, out=run_dir(args.out, plain, depth, seed),
                                    progress=not args.no_progress and args.jobs == 1)
                configs.append(cfg)
    return configs


def _label(cfg):
    return f"{T.model_name(cfg.plain, cfg.depth)} seed {cfg.seed}"


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
            print(f"[{T.run_name(cfg.plain, cfg.depth)}-s{cfg.seed}]", *parts, flush=True)
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
    import concurrent.futures
    import multiprocessing
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
            per_seed = {s: T.read_metrics(run_dir(out, plain, depth, s)) for s in seeds}
            results[T.run_name(plain, depth)] = {s: rows for s, rows in per_seed.items() if rows}
    return results


# --------------------------------------------------------------------------- statistics

def spread(values):
    """mean, std (over seeds, n - 1 in the denominator; 0 for one seed), min and max of ``values``."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise ValueError("degradation.spread: no values (no seed finished an epoch)")
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max()), "n": int(v.size)}


def curves(per_seed):
    """Mean, min and max over seeds of each epoch's errors (over the epochs every seed has reached)."""
    rows_by_seed = list(per_seed.values())
    n = min(len(rows) for rows in rows_by_seed)
    out = {"iteration": [rows_by_seed[0][i]["iteration"] for i in range(n)]}
    for key in ("train_err", "test_err"):
        values = np.array([[rows[i][key] for i in range(n)] for rows in rows_by_seed])  # (seeds, epochs)
        out[key] = {"mean": values.mean(0).tolist(), "min": values.min(0).tolist(), "max": values.max(0).tolist()}
    return out


def finals(results):
    """{net: {seed: final row}} with the numbers the summary keeps."""
    keep = ("epoch", "iteration", "train_err", "test_err", "train_loss", "test_loss")
    return {name: {s: {k: rows[-1][k] for k in keep} for s, rows in per_seed.items()}
            for name, per_seed in results.items()}


def paired(final, a, b, key="train_err"):
    """Net ``a`` against net ``b`` seed by seed (the seeds both finished): counts and the gap in points."""
    seeds = sorted(set(final.get(a, {})) & set(final.get(b, {})))
    if not seeds:
        return None
    ea = [100 * final[a][s][key] for s in seeds]
    eb = [100 * final[b][s][key] for s in seeds]
    diff = [x - y for x, y in zip(ea, eb)]
    return {"a": a, "b": b, "key": key, "seeds": seeds, "a_higher": sum(d > 0 for d in diff),
            "a_lower": sum(d < 0 for d in diff), "gap": spread(diff), "a_err": spread(ea), "b_err": spread(eb)}


def _pm(stats, digits=1):
    """'38.1 ± 2.9' over several seeds, '38.1' for one."""
    return f"{stats['mean']:.{digits}f}" + (f" ± {stats['std']:.{digits}f}" if stats["n"] > 1 else "")


def _label_of(name):
    plain = name.startswith("plain")
    return T.model_name(plain, int(name[len("plain" if plain else "resnet"):]))


def versus(c):
    """'plain-56 ends above plain-20 in 3 of 3 seeds, by 38.1 ± 2.9 points (77.0 ± 2.0 % against 38.9 ± 1.1 %)'."""
    n = len(c["seeds"])
    above = c["gap"]["mean"] > 0
    count = c["a_higher"] if above else c["a_lower"]
    seeds = f"in {count} of {n} seeds" if n > 1 else f"(seed {c['seeds'][0]})"
    gap = dict(c["gap"], mean=abs(c["gap"]["mean"]))
    text = (f"{_label_of(c['a'])} ends {'above' if above else 'below'} {_label_of(c['b'])} {seeds}, by {_pm(gap)} "
            f"points of {'training' if c['key'] == 'train_err' else 'test'} error ({_pm(c['a_err'])} % against "
            f"{_pm(c['b_err'])} %)")
    if n > 1 and 0 < count < n:
        text += "; not the same way in every seed"
    elif n > 1 and abs(c["gap"]["mean"]) < c["gap"]["std"]:
        text += "; the gap is smaller than its seed-to-seed spread"
    return text


def _every(c):
    return "in every seed" if len(c["seeds"]) > 1 else "in this run's one seed"


def _consistent(c, higher):
    """True when ``a`` ends higher (``higher=True``) or lower than ``b`` in every seed."""
    return (c["a_higher"] if higher else c["a_lower"]) == len(c["seeds"])


def findings(final, depths, budget_iterations, trained_below=TRAINED_BELOW):
    """The comparisons the paper makes, each as a sentence from the numbers, and as data."""
    sentences, comparisons = [], []
    shallow, deep = min(depths), max(depths)
    if shallow == deep:
        return sentences, comparisons
    p_s, p_d, r_s, r_d = (T.run_name(True, shallow), T.run_name(True, deep), T.run_name(False, shallow),
                          T.run_name(False, deep))

    c = paired(final, p_d, p_s)
    if c:
        comparisons.append({"finding": "degradation", **c})
        left = [s for s in c["seeds"] if final[p_d][s]["train_err"] < trained_below]
        n = len(c["seeds"])
        if _consistent(c, higher=True):
            verdict = f"the deeper plain net trains worse {_every(c)}"
        elif _consistent(c, higher=False):
            verdict = f"NO degradation at this budget: the deeper plain net ends lower {_every(c)}"
        else:
            verdict = "no consistent degradation across seeds"
        chance = (f"plain-{deep} left chance (training error below {100 * trained_below:.0f} %) in "
                  f"{len(left)} of {n} seed{'s' if n > 1 else ''}")
        if not left:
            chance += (": at this budget it does not train at all, which is not yet the paper's curve of a deep "
                       "plain net that trains, but worse")
        elif len(left) == n and _consistent(c, higher=True):
            chance += ": a deep plain net that trains, but worse, as in the paper"
        sentences.append(f"Degradation (plain-{deep} vs plain-{shallow}): {versus(c)}: {verdict}; {chance}.")

    for finding, depth, resnet, plain, helps in (("shortcuts_deep", deep, r_d, p_d, "the shortcuts help"),
                                                 ("shortcuts_shallow", shallow, r_s, p_s,
                                                  "the shortcuts help at this depth too,")):
        c = paired(final, resnet, plain)
        if not c:
            continue
        comparisons.append({"finding": finding, **c})
        if _consistent(c, higher=False):
            verdict = f"{helps} {_every(c)}"
        elif _consistent(c, higher=True):
            verdict = (f"at depth {depth} the shortcuts do NOT help at this budget: the plain net ends lower "
                       f"{_every(c)}")
        else:
            verdict = f"at depth {depth} neither net is consistently ahead at this budget"
        sentences.append(f"Shortcuts at depth {depth} (ResNet-{depth} vs plain-{depth}): {versus(c)}: {verdict}.")

    c = paired(final, r_d, r_s)
    if c:
        comparisons.append({"finding": "deeper_resnet", **c})
        share = 100 * budget_iterations / PAPER_ITERATIONS
        if _consistent(c, higher=False):
            verdict = f"the deeper ResNet already ends lower {_every(c)}, as at the end of the paper's runs"
        else:
            verdict = (f"the deeper ResNet does not end lower {_every(c)}, unlike the end of the paper's runs; "
                       f"this budget ({budget_iterations} iterations) is {share:.1f} % of the paper's 64k, and a "
                       "deeper net is slower to start (the paper's ordering is about the end of its schedule, "
                       "`--preset paper` on the full training set)")
        sentences.append(f"Deeper ResNets (ResNet-{deep} vs ResNet-{shallow}): {versus(c)}: {verdict}.")

    if len(depths) > 2:
        for plain in (True, False):
            means = [(d, spread([100 * r["train_err"] for r in final[T.run_name(plain, d)].values()]))
                     for d in depths if final.get(T.run_name(plain, d))]
            if len(means) < 3:
                continue
            rises = all(b[1]["mean"] > a[1]["mean"] for a, b in zip(means, means[1:]))
            falls = all(b[1]["mean"] < a[1]["mean"] for a, b in zip(means, means[1:]))
            trend = "rises with every added depth" if rises else "falls with every added depth" if falls else \
                "does not change monotonically with depth"
            listing = ", ".join(f"{T.model_name(plain, d)} {_pm(s)} %" for d, s in means)
            sentences.append(f"{'Plain nets' if plain else 'ResNets'} by depth (mean final training error): "
                             f"{listing}: it {trend}.")
    return sentences, comparisons


# --------------------------------------------------------------------------- outputs

def plot_figure6(results, depths, path, title):
    """Two panels like the paper's Figure 6, plain nets left, ResNets right: the mean over seeds, min-max bands."""
    from matplotlib.figure import Figure  # no pyplot: no global backend switch, safe in notebooks

    n_seeds = max((len(s) for s in results.values()), default=0)
    fig = Figure(figsize=(11, 4.4))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, plain in zip(axes, (True, False)):
        for i, depth in enumerate(depths):
            per_seed = results.get(T.run_name(plain, depth))
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
    return T.model_name(plain, depth) + (f" ({n_seeds} seeds)" if n_seeds > 1 else "")


def summarise(results, depths, budget_iterations=None, trained_below=TRAINED_BELOW):
    """The table and the findings, as (markdown, summary dict)."""
    final = finals(results)
    n_seeds = max((len(s) for s in final.values()), default=0)
    if budget_iterations is None:
        budget_iterations = max((r["iteration"] for f in final.values() for r in f.values()), default=0)
    spread_word = "mean ± std over seeds, min-max" if n_seeds > 1 else "one seed"
    lines = [f"| network | seeds | iterations | final training error ({spread_word}) | final test error |",
             "|---|---|---|---|---|"]
    nets = {}
    for plain in (True, False):
        for depth in depths:
            name = T.run_name(plain, depth)
            per_seed = final.get(name, {})
            if not per_seed:
                lines.append(f"| {T.model_name(plain, depth)} | 0 | - | not run | not run |")
                continue
            its = sorted({r["iteration"] for r in per_seed.values()})
            stats = {k: spread([100 * r[k] for r in per_seed.values()]) for k in ("train_err", "test_err")}
            cells = [f"{_pm(stats[k], 2)} %" + (f" ({stats[k]['min']:.2f}-{stats[k]['max']:.2f})" if n_seeds > 1 else "")
                     for k in ("train_err", "test_err")]
            its_text = str(its[0]) if len(its) == 1 else f"{its[0]}-{its[-1]}"
            lines.append(f"| {T.model_name(plain, depth)} | {len(per_seed)} | {its_text} | {cells[0]} | {cells[1]} |")
            nets[name] = {"label": T.model_name(plain, depth), "plain": plain, "depth": depth,
                          "final": {str(s): r for s, r in sorted(per_seed.items())},
                          "train_err": {k: v / 100 if k != "n" else v for k, v in stats["train_err"].items()},
                          "test_err": {k: v / 100 if k != "n" else v for k, v in stats["test_err"].items()},
                          "train_time_s": {str(s): float(sum(row["epoch_time_s"] for row in results[name][s]))
                                           for s in sorted(per_seed)}}
    unfinished = sorted(f"{n}-s{s}" for n, f in final.items() for s, r in f.items() if r["iteration"] < budget_iterations)
    sentences, comparisons = findings(final, depths, budget_iterations, trained_below)
    if unfinished:
        sentences.append(f"Unfinished: {len(unfinished)} runs stopped before the budget of {budget_iterations} "
                         f"iterations ({', '.join(unfinished)}); their last epoch is used.")
    md = "\n".join(lines) + "\n\n" + "\n\n".join(f"- {s}" for s in sentences) + "\n"
    summary = {"depths": list(depths), "seeds": sorted({s for f in final.values() for s in f}),
               "budget_iterations": budget_iterations, "trained_below": trained_below, "nets": nets,
               "comparisons": comparisons, "findings": sentences}
    return md, summary


def write_report(args, wall_s=None, argv=None):
    """Figure 6, results.md and summary.json from the run directories; Figure 7 unless --no-responses."""
    results = collect(args.out, args.depths, args.seeds)
    results = {k: v for k, v in results.items() if v}
    if not results:
        print(f"degradation: no run in {args.out}/runs has finished an epoch yet: nothing to report")
        return None
    # The budget in iterations: a run's first row is its first whole epoch.
    batches_per_epoch = next(iter(next(iter(results.values())).values()))[0]["iteration"]
    budget = T.plan(T.TrainConfig(epochs=args.epochs, iterations=args.iterations), batches_per_epoch)[0]
    identity = _data_identity(args)
    seeds = f"{len(args.seeds)} seed{'s' if len(args.seeds) > 1 else ''}"
    title = f"{_short_name(identity)}, preset {args.preset}, {seeds}"
    plot_figure6(results, args.depths, os.path.join(args.out, "figure6.png"), title)
    md, summary = summarise(results, args.depths, budget, args.trained_below)
    summary.update(preset=args.preset, epochs=args.epochs, iterations=args.iterations, warmup=args.warmup,
                   device=args.device, dataset=args.dataset, data=identity, wall_s=wall_s,
                   command="python -m minires.experiments.degradation " + " ".join(argv or []))
    response_md = ""
    if not args.no_responses:
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
            response_md = f"\n## Layer responses (Figure 7)\n\nFailed: {type(e).__name__}: {e}\n"
        if isinstance(report, int):  # responses printed why (a missing checkpoint or data set)
            response_md, report = "\n## Layer responses (Figure 7)\n\nFailed: see the message above.\n", None
        if report is not None:
            summary["responses"] = {"claims": report["claims"], "left_out": report["left_out"]}
            response_md = ("\n## Layer responses (Figure 7, `responses.png`)\n\n"
                           + "\n\n".join(f"- {c['text']}" for c in report["claims"]) + "\n")
    if args.report_only:  # keep the command and wall time of the run that trained, if one did here
        try:
            with open(os.path.join(args.out, "summary.json")) as f:
                before = json.load(f)
            wall_s = wall_s or before.get("wall_s")
            summary["command"] = before.get("command") or summary["command"]
        except (OSError, ValueError):
            pass
    summary["wall_s"] = wall_s
    wall = f" Wall time of the training: {wall_s / 60:.1f} minutes." if wall_s else ""
    train_time = sum(t for net in summary["nets"].values() for t in net["train_time_s"].values())
    header = (f"# Degradation experiment: {title}\n\n"
              f"Command: `{summary['command']}`\n\n"
              f"Data: {datasets.describe(identity) if identity else 'unknown (runs written before data identities)'}"
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
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(header + md + response_md)
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(md + response_md)
    return summary


def _data_found(args):
    """Load the data once, before any run starts: a missing data set is one message, not one per run."""
    cfg = run_configs(args)[0]
    try:
        print(f"degradation: data: {T.dataset_of(cfg).description}")
    except (FileNotFoundError, datasets.DownloadError, datasets.DatasetError, ValueError) as e:
        print(f"degradation: error: {e}", file=sys.stderr)
        return False
    return True


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


def build_parser():
    p = argparse.ArgumentParser(prog="python -m minires.experiments.degradation", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu",
                   help="cpu and gpu warm every net up (see --warmup), where the paper warms up only ResNet-110")
    p.add_argument("--depths", type=int, nargs="+", default=None, help="6n+2 depths (the paper's: 20 32 44 56)")
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="N: seeds 0..N-1; several numbers: those seeds (default: the preset's)")
    p.add_argument("--epochs", type=int, default=None, help="override the preset's budget, in epochs")
    # The preset decides these two unless given (so their defaults are not TrainConfig's).
    p.add_argument("--warmup", choices=["auto", "on", "off"], default=None,
                   help="lr 0.01 until training error < 80%% (default: the preset's: on for every net in cpu "
                        "and gpu, a departure from the paper, which warms up only ResNet-110; the error-triggered "
                        "end gives slow starters more epochs at 0.01; auto, as the paper: depth >= 110 only)")
    p.add_argument("--device", choices=["cpu", "gpu"], default=None, help="default: the preset's")
    # The other training options, with the defaults of minires.train (TrainConfig).
    add_config_options(p, ("batch_size", "width", "train_limit", "dataset", "data_dir", "cuda_graph"))
    p.add_argument("--subset", type=int, nargs=2, default=None, metavar=("TRAIN", "TEST"),
                   help="the first TRAIN training and TEST test images of CIFAR-10 (default: the preset's; "
                        "cpu and gpu: 4000 1000, the learner's subset; paper: all of them)")
    p.add_argument("--out", default="runs/degradation")
    p.add_argument("--jobs", type=int, default=None,
                   help="train this many runs at once, one BLAS thread each (default: 2 on a CPU with "
                        "2 or more cores, 1 on the GPU)")
    p.add_argument("--report-only", action="store_true",
                   help="train nothing: write the figures, table and summary from the runs as they are")
    p.add_argument("--trained-below", type=float, default=TRAINED_BELOW,
                   help="a net trained if its final training error is below this (default 0.85; chance is 0.9)")
    p.add_argument("--no-responses", action="store_true", help="skip the layer-response figure")
    p.add_argument("--no-progress", action="store_true")
    return p


def resolve(args):
    """Fill in what the command line left to the preset; check the rest."""
    preset = PRESETS[args.preset]
    args.depths = sorted(set(args.depths if args.depths is not None else preset["depths"]))
    bad = [d for d in args.depths if d < 8 or (d - 2) % 6]
    if bad:
        raise SystemExit(f"--depths must be 6n+2 (8, 14, 20, 32, 44, 56, ...), got {bad}")
    args.seeds = seed_list(args.seeds if args.seeds is not None else [preset["seeds"]])
    if args.epochs is not None:
        args.iterations, args.milestones = None, None
    else:
        args.epochs, args.iterations, args.milestones = preset["epochs"], preset["iterations"], preset["milestones"]
    args.warmup = preset["warmup"] if args.warmup is None else {"auto": None, "on": True, "off": False}[args.warmup]
    args.device = args.device or preset["device"]
    if args.subset is None and args.dataset == "cifar10":
        args.subset = preset["subset"]
    if args.jobs is None:
        args.jobs = 1 if args.device == "gpu" else min(2, os.cpu_count() or 1)
    if args.jobs < 1:
        raise SystemExit(f"--jobs must be >= 1, got {args.jobs}")
    return args


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = resolve(build_parser().parse_args(argv))
    except ValueError as e:
        raise SystemExit(str(e))
    wall_s, failed = None, []
    if not args.report_only and not _data_found(args):
        return 2
    os.makedirs(args.out, exist_ok=True)
    if not args.report_only:
        start = time.perf_counter()
        outcomes = run_all(args)
        if "trained" in outcomes:  # else every run was already done: the earlier wall time stands
            wall_s = time.perf_counter() - start
        failed = [o for o in outcomes if o.startswith("failed")]
        for outcome in failed:
            print(f"degradation: run {outcome}")
    write_report(args, wall_s, argv)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
