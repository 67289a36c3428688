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
import os
import sys
import time

from .. import data as datasets
from .. import train as T
from ..data import SAMPLE_SUBSET
from ..train.cli import add_config_options
from .degradation_analysis import PAPER_ITERATIONS, TRAINED_BELOW
from .degradation_report import write_report
from .degradation_runs import run_all, run_configs

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


def seed_list(values):
    """``[3]`` -> seeds 0, 1, 2; several values -> those seeds (in order, without repeats)."""
    if len(values) == 1:
        if values[0] < 1:
            raise ValueError(f"degradation: --seeds N needs N >= 1, got {values[0]}")
        return list(range(values[0]))
    if any(s < 0 for s in values):
        raise ValueError(f"degradation: seeds must be >= 0, got {values}")
    return list(dict.fromkeys(values))


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


def _data_found(args):
    """Load the data once, before any run starts: a missing data set is one message, not one per run."""
    try:
        print(f"degradation: data: {T.dataset_of(run_configs(args)[0]).description}")
    except (FileNotFoundError, datasets.DownloadError, datasets.DatasetError, ValueError) as e:
        print(f"degradation: error: {e}", file=sys.stderr)
        return False
    return True


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
