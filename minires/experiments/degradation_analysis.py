"""The degradation experiment's statistics over seeds and its findings, each sentence written from
the numbers, whichever way they came out (the runs: ``degradation_runs.py``; the figure and the
report: ``degradation_report.py``)."""
import numpy as np

from ..rundir import model_name, run_name

# A net "trained" when its final training error is below this (chance on 10 classes is 90 %).
TRAINED_BELOW = 0.85


PAPER_ITERATIONS = 64000


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
    return model_name(plain, int(name[len("plain" if plain else "resnet"):]))


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
    for found in (_degradation(final, shallow, deep, trained_below),
                  _shortcuts(final, deep, "shortcuts_deep", "the shortcuts help"),
                  _shortcuts(final, shallow, "shortcuts_shallow", "the shortcuts help at this depth too,"),
                  _deeper_resnet(final, shallow, deep, budget_iterations)):
        if found is not None:
            sentences.append(found[0])
            comparisons.append(found[1])
    if len(depths) > 2:
        sentences += _by_depth(final, depths)
    return sentences, comparisons


def _degradation(final, shallow, deep, trained_below):
    """(sentence, comparison) for plain-deep against plain-shallow, or None without both."""
    p_s, p_d = run_name(True, shallow), run_name(True, deep)
    c = paired(final, p_d, p_s)
    if not c:
        return None
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
    return (f"Degradation (plain-{deep} vs plain-{shallow}): {versus(c)}: {verdict}; {chance}.",
            {"finding": "degradation", **c})


def _shortcuts(final, depth, finding, helps):
    """(sentence, comparison) for ResNet-depth against plain-depth, or None without both."""
    c = paired(final, run_name(False, depth), run_name(True, depth))
    if not c:
        return None
    if _consistent(c, higher=False):
        verdict = f"{helps} {_every(c)}"
    elif _consistent(c, higher=True):
        verdict = (f"at depth {depth} the shortcuts do NOT help at this budget: the plain net ends lower "
                   f"{_every(c)}")
    else:
        verdict = f"at depth {depth} neither net is consistently ahead at this budget"
    return (f"Shortcuts at depth {depth} (ResNet-{depth} vs plain-{depth}): {versus(c)}: {verdict}.",
            {"finding": finding, **c})


def _deeper_resnet(final, shallow, deep, budget_iterations):
    """(sentence, comparison) for ResNet-deep against ResNet-shallow, or None without both."""
    c = paired(final, run_name(False, deep), run_name(False, shallow))
    if not c:
        return None
    share = 100 * budget_iterations / PAPER_ITERATIONS
    if _consistent(c, higher=False):
        verdict = f"the deeper ResNet already ends lower {_every(c)}, as at the end of the paper's runs"
    else:
        verdict = (f"the deeper ResNet does not end lower {_every(c)}, unlike the end of the paper's runs; "
                   f"this budget ({budget_iterations} iterations) is {share:.1f} % of the paper's 64k, and a "
                   "deeper net is slower to start (the paper's ordering is about the end of its schedule, "
                   "`--preset paper` on the full training set)")
    return (f"Deeper ResNets (ResNet-{deep} vs ResNet-{shallow}): {versus(c)}: {verdict}.",
            {"finding": "deeper_resnet", **c})


def _by_depth(final, depths):
    """For three depths or more: how the mean final training error moves with depth, per family."""
    sentences = []
    for plain in (True, False):
        means = [(d, spread([100 * r["train_err"] for r in final[run_name(plain, d)].values()]))
                 for d in depths if final.get(run_name(plain, d))]
        if len(means) < 3:
            continue
        rises = all(b[1]["mean"] > a[1]["mean"] for a, b in zip(means, means[1:]))
        falls = all(b[1]["mean"] < a[1]["mean"] for a, b in zip(means, means[1:]))
        trend = "rises with every added depth" if rises else "falls with every added depth" if falls else \
            "does not change monotonically with depth"
        listing = ", ".join(f"{model_name(plain, d)} {_pm(s)} %" for d, s in means)
        sentences.append(f"{'Plain nets' if plain else 'ResNets'} by depth (mean final training error): "
                         f"{listing}: it {trend}.")
    return sentences


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
            name = run_name(plain, depth)
            per_seed = final.get(name, {})
            if not per_seed:
                lines.append(f"| {model_name(plain, depth)} | 0 | - | not run | not run |")
                continue
            its = sorted({r["iteration"] for r in per_seed.values()})
            stats = {k: spread([100 * r[k] for r in per_seed.values()]) for k in ("train_err", "test_err")}
            cells = [f"{_pm(stats[k], 2)} %" + (f" ({stats[k]['min']:.2f}-{stats[k]['max']:.2f})" if n_seeds > 1 else "")
                     for k in ("train_err", "test_err")]
            its_text = str(its[0]) if len(its) == 1 else f"{its[0]}-{its[-1]}"
            lines.append(f"| {model_name(plain, depth)} | {len(per_seed)} | {its_text} | {cells[0]} | {cells[1]} |")
            nets[name] = {"label": model_name(plain, depth), "plain": plain, "depth": depth,
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
