"""``python -m minires.experiments.responses RUN_DIR...``: the paper's Figure 7.

For each trained run, records the standard deviation of every 3x3 layer's response on test
images: the output of the BN that follows each 3x3 convolution, *before* the addition and
the ReLU. The paper's observation: residual functions are generally closer to zero than the
plain nets' layers, so ResNets' responses are smaller, and the deeper the ResNet, the
smaller its individual layers' responses.

Writes ``responses.png`` (std by layer index, and sorted by magnitude; plain nets dashed,
ResNets solid) and ``responses.json`` to ``--out``.
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
from ..train import load_data, load_model, model_name, pixel_mean_of


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


def plot_responses(results, path):
    from matplotlib.figure import Figure  # no pyplot: no global backend switch, safe in notebooks

    fig = Figure(figsize=(8, 6.5))
    ax1, ax2 = fig.subplots(2, 1)
    depths = sorted({r["depth"] for r in results})
    for r in results:
        color = f"C{depths.index(r['depth'])}"
        style = "--" if r["plain"] else "-"
        stds = np.asarray(r["stds"])
        ax1.plot(np.arange(1, len(stds) + 1), stds, style, color=color, label=r["label"], marker=".", markersize=3)
        ax2.plot(np.arange(1, len(stds) + 1), np.sort(stds)[::-1], style, color=color, label=r["label"])
    ax1.set_xlabel("layer index (original order)")
    ax2.set_xlabel("layer index (sorted by magnitude)")
    for ax in (ax1, ax2):
        ax.set_yscale("log")  # a net that failed to train can respond 10x more than the others
        ax.set_ylabel("std of response (log scale)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax1.set_title("Responses of the 3x3 layers (after BN, before addition and ReLU) on CIFAR-10 test images")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return fig


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m minires.experiments.responses", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run directories written by minires.train (each with last.npz)")
    p.add_argument("--out", default=".", help="where to write responses.png and responses.json")
    p.add_argument("--data-dir", default=None, help="override the runs' CIFAR-10 location")
    p.add_argument("--images", type=int, default=1000, help="how many test images to use")
    p.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    args = p.parse_args(argv)
    results, cache = [], {}
    for run in args.runs:
        model, cfg, ckpt = load_model(os.path.join(run, "last.npz"), args.device)  # the end of training
        if args.data_dir:
            cfg.data_dir = args.data_dir
        key = (cfg.dataset, cfg.data_dir, cfg.seed)  # the test images depend on these only
        if key not in cache:
            cache[key] = load_data(cfg)[4][:args.images]
        mean, x_test = pixel_mean_of(ckpt, cfg), cache[key]
        names, stds = layer_response_stds(model, x_test, mean, args.device)
        results.append({"run": run, "label": model_name(cfg.plain, cfg.depth), "depth": cfg.depth, "plain": cfg.plain,
                        "layers": names, "stds": [float(s) for s in to_numpy(stds)]})
        print(f"{model_name(cfg.plain, cfg.depth)}: {len(names)} layers, mean response std {np.mean(stds):.3f}")
    os.makedirs(args.out, exist_ok=True)
    plot_responses(results, os.path.join(args.out, "responses.png"))
    with open(os.path.join(args.out, "responses.json"), "w") as f:
        json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
