"""``python -m minires.experiments.responses RUN_DIR...``: the paper's Figure 7.

For each trained run, records the standard deviation of every 3x3 layer's response on test
images: the output of the BN that follows each 3x3 convolution, *before* the addition and
the ReLU. The paper's observation: residual functions are generally closer to zero than the
plain nets' layers, so ResNets' responses are smaller, and the deeper the ResNet, the
smaller its individual layers' responses.

Only *trained* nets count: a run whose final training error is not below ``--trained-below``
(85 %; chance is 90 %) is left out and named, since an untrained net's responses say nothing
about what training found. Several seeds of a net are averaged (with a min-max band).

Writes ``responses.png`` (one panel per depth, std by layer index on a log scale; below, every
net sorted by magnitude) and ``responses.json`` (per run the stds, and the paper's two claims,
each checked from the numbers: ResNets respond less than their plain twins; deeper ResNets
respond less) to ``--out``.
"""
import argparse
import json
import os
import sys

import numpy as np

from .. import data as datasets
from ..backend import to_numpy
from ..engine import Tensor, no_grad
from ..nn import BatchNorm2d, Conv2d
from ..rundir import load_model, model_name, read_metrics
from ..train import load_data, pixel_mean_of


def response_layers(model):
    """(name, BN module) for every BN that directly follows a 3x3 convolution, in forward order."""
    modules = dict(model.named_modules())
    layers = []
    for name, m in modules.items():
        if not isinstance(m, BatchNorm2d):
            continue
        prefix, _, bn = name.rpartition(".")
        conv = modules.get(f"{prefix}.{bn.replace('bn', 'conv')}" if prefix else bn.replace("bn", "conv"))
        if isinstance(conv, Conv2d) and conv.kernel_size == (3, 3):
            layers.append((name, m))
    return layers


def layer_response_stds(model, x, mean, device="cpu", batch_size=500):
    """Std over all images, channels and pixels of each 3x3 layer's response (eval mode)."""
    layers = response_layers(model)
    sums = np.zeros((len(layers), 2))  # running sum and sum of squares, per layer
    count = np.zeros(len(layers))
    handles = []
    for i, (_, bn) in enumerate(layers):
        def hook(module, args, out, i=i):
            values = out.data
            sums[i] += (float(values.sum()), float((values * values).sum()))
            count[i] += values.size
        handles.append(bn.register_forward_hook(hook))
    model.eval()
    try:
        with no_grad():
            for xb, _ in datasets.iterate_batches(x, np.zeros(len(x), dtype=np.int64), batch_size,
                                                  mean=mean, device=device):
                model(Tensor(xb))
    finally:
        for h in handles:
            h.remove()
    means = sums[:, 0] / count
    return [name for name, _ in layers], np.sqrt(np.maximum(sums[:, 1] / count - means ** 2, 0))


def _mean_std_by_seed(results, plain, depth):
    """{seed: mean over layers of the response std} for one net."""
    return {r["seed"]: float(np.mean(r["stds"])) for r in results if r["plain"] == plain and r["depth"] == depth}


def _pm(values):
    v = np.asarray(values, dtype=np.float64)
    return f"{v.mean():.3f}" + (f" ± {v.std(ddof=1):.3f}" if v.size > 1 else "")


def check_claims(results, left_out=()):
    """The paper's two observations on Figure 7, each checked from the numbers: a list of
    {"claim", "met" (True, False or None when it cannot be checked), "text"}.

    1. ResNets respond less than their plain twins: at every depth where both trained, the
       ResNet's mean layer response std is below the plain net's, seed by seed.
    2. Deeper ResNets respond less: the mean response std falls with every added depth, in
       every seed that has all the trained ResNets.
    A net is summarised by the mean over its 3x3 layers of the per-layer std.
    """
    claims = []
    depths = sorted({r["depth"] for r in results})
    per_depth, met_everywhere = [], True
    for depth in depths:
        plain, res = _mean_std_by_seed(results, True, depth), _mean_std_by_seed(results, False, depth)
        seeds = sorted(set(plain) & set(res))
        if not seeds:
            continue
        lower = sum(res[s] < plain[s] for s in seeds)
        met_everywhere &= lower == len(seeds)
        per_depth.append(f"ResNet-{depth} {_pm([res[s] for s in seeds])} against plain-{depth} "
                         f"{_pm([plain[s] for s in seeds])} (lower in {lower} of {len(seeds)} seed{'s' if len(seeds) > 1 else ''})")
    if per_depth:
        met = met_everywhere
        text = (f"ResNets respond less than their plain twins (mean layer response std): {'; '.join(per_depth)}. "
                f"{'Met' if met else 'NOT met'} at this budget{'' if met else ' (not at every depth and seed)'}.")
    else:
        met, text = None, "ResNets respond less than their plain twins: cannot be checked here (no depth with both twins trained)."
    claims.append({"claim": "resnets_respond_less_than_plain", "met": met, "text": text})

    by_depth = {d: _mean_std_by_seed(results, False, d) for d in depths}
    by_depth = {d: v for d, v in by_depth.items() if v}
    ds = sorted(by_depth)
    # compared seed by seed: two trained depths or more, with trained seeds in common
    seeds = sorted(set.intersection(*(set(v) for v in by_depth.values()))) if len(ds) >= 2 else []
    if seeds:
        falls = sum(all(by_depth[b][s] < by_depth[a][s] for a, b in zip(ds, ds[1:])) for s in seeds)
        met = falls == len(seeds)
        listing = ", ".join(f"ResNet-{d} {_pm([by_depth[d][s] for s in seeds])}" for d in ds)
        text = (f"Deeper ResNets respond less: {listing}; falling with every added depth in {falls} of "
                f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''}. {'Met' if met else 'NOT met'} at this budget.")
    else:
        met, text = None, ("Deeper ResNets respond less: cannot be checked here (fewer than two trained ResNet "
                           "depths with a seed in common).")
    claims.append({"claim": "deeper_resnets_respond_less", "met": met, "text": text})
    if left_out:
        claims.append({"claim": "left_out", "met": None,
                       "text": f"Left out of Figure 7 (did not train: final training error not below the "
                               f"threshold): {', '.join(left_out)}."})
    return claims


def plot_responses(results, path, left_out=()):
    """Figure 7 on a log scale: one panel per depth (plain dashed, ResNet solid; the mean over seeds
    with a min-max band), and below, every net's responses sorted by magnitude."""
    from matplotlib.figure import Figure  # no pyplot: no global backend switch, safe in notebooks

    depths = sorted({r["depth"] for r in results})
    fig = Figure(figsize=(max(3.2 * len(depths), 9), 7))
    mosaic = [[f"d{d}" for d in depths], ["sorted"] * len(depths)]
    axes = fig.subplot_mosaic(mosaic) if depths else {"sorted": fig.subplots()}
    for j, depth in enumerate(depths):
        ax = axes[f"d{depth}"]
        for plain in (True, False):
            runs = [np.asarray(r["stds"]) for r in results if r["depth"] == depth and r["plain"] == plain]
            if not runs:
                continue
            stds = np.stack(runs)  # (seeds, layers)
            layers = np.arange(1, stds.shape[1] + 1)
            name = model_name(plain, depth)
            ax.plot(layers, stds.mean(0), "--" if plain else "-", color="C0" if plain else "C3",
                    label=f"{name} ({len(runs)} seed{'s' if len(runs) > 1 else ''})")
            if len(runs) > 1:
                ax.fill_between(layers, stds.min(0), stds.max(0), color="C0" if plain else "C3", alpha=0.2, linewidth=0)
        ax.set_title(f"depth {depth}", fontsize=10)
        ax.set_xlabel("layer index")
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    if depths:
        axes[f"d{depths[0]}"].set_ylabel("std of response (log)")
    ax = axes["sorted"]
    for r in results:
        stds = np.sort(np.asarray(r["stds"]))[::-1]
        ax.plot(np.arange(1, len(stds) + 1), stds, "--" if r["plain"] else "-",
                color=f"C{depths.index(r['depth'])}", alpha=0.7, linewidth=1,
                label=r["label"] if r["seed"] == min(x["seed"] for x in results if x["label"] == r["label"]) else None)
    ax.set_yscale("log")
    ax.set_xlabel("layer index (sorted by magnitude); dashed: plain, solid: ResNet; one line per seed")
    ax.set_ylabel("std of response (log)")
    ax.grid(alpha=0.3, which="both")
    if results:
        ax.legend(fontsize=7, ncol=2)
    note = f"; left out (did not train): {', '.join(left_out)}" if left_out else ""
    fig.suptitle("3x3 layer responses (after BN, before addition and ReLU) on test images, trained nets only\n"
                 f"lines: mean over seeds, bands: min-max{note}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return fig


def _final_train_err(run):
    rows = read_metrics(run)
    return rows[-1]["train_err"] if rows else None


def report(results, left_out, out):
    """Write responses.png and responses.json; return {"runs", "left_out", "claims"}."""
    claims = check_claims(results, left_out)
    os.makedirs(out, exist_ok=True)
    plot_responses(results, os.path.join(out, "responses.png"), left_out)
    summary = {"runs": results, "left_out": list(left_out), "claims": claims}
    with open(os.path.join(out, "responses.json"), "w") as f:
        json.dump(summary, f, indent=1)
    for c in claims:
        print(c["text"])
    return summary


def replot(path, out):
    """Redraw Figure 7 and re-check the claims from a responses.json (no checkpoints needed)."""
    with open(path) as f:
        saved = json.load(f)
    return report(saved["runs"], saved["left_out"], out)


def main(argv=None):
    """The command line; returns the report (see :func:`report`), or 2 after printing what is missing."""
    p = argparse.ArgumentParser(prog="python -m minires.experiments.responses", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run directories written by minires.train (each with last.npz)")
    p.add_argument("--out", default=".", help="where to write responses.png and responses.json")
    p.add_argument("--data-dir", default=None, help="override the runs' CIFAR-10 location")
    p.add_argument("--images", type=int, default=1000, help="how many test images to use")
    p.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    p.add_argument("--trained-below", type=float, default=0.85,
                   help="leave out runs whose final training error is not below this (default 0.85; "
                        "chance is 0.9): Figure 7 is about trained nets")
    args = p.parse_args(argv)
    missing = [run for run in args.runs if not os.path.isfile(os.path.join(run, "last.npz"))]
    if missing:
        print(f"responses: error: no checkpoint (last.npz) in {', '.join(missing)}; give run directories that "
              "minires.train or the degradation experiment has written", file=sys.stderr)
        return 2
    try:
        return _responses(args)
    except (FileNotFoundError, datasets.DownloadError, datasets.DatasetError) as e:
        print(f"responses: error: {e}", file=sys.stderr)
        return 2


def _responses(args):
    """Figure 7 for the runs in ``args`` (each with last.npz); returns report()'s summary."""
    results, left_out, cache = [], [], {}
    for run in args.runs:
        final_err = _final_train_err(run)
        model, cfg, ckpt = load_model(os.path.join(run, "last.npz"), args.device)  # the end of training
        name = f"{model_name(cfg.plain, cfg.depth)} seed {cfg.seed}"
        if final_err is not None and final_err >= args.trained_below:
            left_out.append(f"{name} ({100 * final_err:.1f} %)")
            print(f"{name}: left out, final training error {100 * final_err:.1f} % (did not train)")
            continue
        if args.data_dir:
            cfg.data_dir = args.data_dir
        key = (cfg.dataset, cfg.data_dir, str(cfg.subset), cfg.seed)  # the test images depend on these only
        if key not in cache:
            cache[key] = load_data(cfg)[4][:args.images]
        mean, x_test = pixel_mean_of(ckpt, cfg), cache[key]
        names, stds = layer_response_stds(model, x_test, mean, args.device)
        results.append({"run": run, "label": model_name(cfg.plain, cfg.depth), "depth": cfg.depth, "plain": cfg.plain,
                        "seed": cfg.seed, "final_train_err": final_err,
                        "layers": names, "stds": [float(s) for s in to_numpy(stds)]})
        print(f"{name}: {len(names)} layers, mean response std {np.mean(stds):.3f}")
    return report(results, left_out, args.out)


if __name__ == "__main__":
    code = main()  # the report, or an exit status for a message already printed
    sys.exit(code if isinstance(code, int) else 0)
