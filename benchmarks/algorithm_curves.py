"""Does training notice F(4x4, 3x3)'s larger float32 rounding? The same ResNet-20 runs with every
conv on one algorithm (``use_algorithm``: a Winograd one on every 3x3 stride-1 conv, im2col on the
two stride-2 ones), side by side with the seeds' own spread.

    python benchmarks/algorithm_curves.py [--algorithms im2col winograd4] [--seeds 0 1] [--epochs 5]

Each (algorithm, seed) trains ResNet-20 on the learner's subset of CIFAR-10 (``--subset 4000 1000``;
synthetic data when no CIFAR-10 is found), the same seed drawing the same weights, shuffling and
augmentation for every algorithm. Printed: each run's training and test error per epoch, then the
largest gap between algorithms at one seed against the largest gap between seeds at one algorithm.
Rounding differences grow through training (chaos), so the algorithms' gap is expected to reach the
seeds' gap, not to stay at float32 rounding; a gap clearly beyond it would mean training notices.
"""
import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--algorithms", nargs="+", default=["im2col", "winograd4"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--depth", type=int, default=20)
    args = p.parse_args()
    import minires
    from minires.config import TrainConfig
    from minires.data import DataNotFoundError, find_or_download_cifar10
    from minires.train import train

    try:
        find_or_download_cifar10(download=False)
        dataset, subset = "cifar10", [4000, 1000]
    except DataNotFoundError:
        dataset, subset = "synthetic", None
    runs = {}
    for seed in args.seeds:
        for algorithm in args.algorithms:
            cfg = TrainConfig(depth=args.depth, epochs=args.epochs, dataset=dataset, subset=subset, seed=seed,
                              progress=False, out=tempfile.mkdtemp(prefix=f"curves-{algorithm}-{seed}-"))
            with minires.use_algorithm(algorithm):
                rows = train(cfg, log=lambda *a, **k: None)["rows"]
            runs[algorithm, seed] = rows
            print(f"{algorithm:<10} seed {seed}: train err " + " ".join(f"{100 * r['train_err']:5.1f}" for r in rows)
                  + "  | test err " + " ".join(f"{100 * r['test_err']:5.1f}" for r in rows), flush=True)

    def gap(a, b, key):
        return max(abs(x[key] - y[key]) for x, y in zip(runs[a], runs[b]))

    for key in ("train_err", "test_err"):
        algos = max(gap((a, s), (args.algorithms[0], s), key) for a in args.algorithms[1:] for s in args.seeds)
        seeds = max(gap((a, s), (a, args.seeds[0]), key) for a in args.algorithms for s in args.seeds[1:])
        print(f"{key}: largest gap between algorithms (same seed) {100 * algos:.1f} points; "
              f"between seeds (same algorithm) {100 * seeds:.1f} points")
    print(f"data: {dataset}{' subset 4000 1000' if subset else ''}; depth {args.depth}, {args.epochs} epochs, "
          f"{minires.get_num_threads()} threads")


if __name__ == "__main__":
    main()
