"""The degradation experiment (Figure 6) and the layer responses (Figure 7): statistics over seeds,
the generated findings, and tiny end-to-end runs."""
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from minires import Tensor, no_grad
from minires.data import normalize, per_pixel_mean, synthetic_cifar
from minires.experiments import degradation, degradation_analysis, responses
from minires.models import cifar_resnet

TINY = ["--dataset", "synthetic", "--epochs", "1", "--width", "4", "--train-limit", "128", "--batch-size", "32",
        "--no-progress", "--jobs", "1", "--device", "cpu"]


# --------------------------------------------------------------------------- statistics over seeds

def test_seed_list_count_or_list():
    assert degradation.seed_list([3]) == [0, 1, 2]
    assert degradation.seed_list([4, 1, 4]) == [4, 1]
    with pytest.raises(ValueError, match="--seeds"):
        degradation.seed_list([0])


def test_spread_is_mean_sample_std_min_max():
    s = degradation_analysis.spread([1.0, 2.0, 6.0])
    assert s == {"mean": 3.0, "std": pytest.approx(np.std([1, 2, 6], ddof=1)), "min": 1.0, "max": 6.0, "n": 3}
    assert degradation_analysis.spread([0.5])["std"] == 0.0


def _rows(errs, its=32):
    return [{"epoch": i + 1, "iteration": its * (i + 1), "train_err": e, "test_err": e + 0.01,
             "train_loss": 1.0, "test_loss": 1.0, "epoch_time_s": 2.0} for i, e in enumerate(errs)]


def test_curves_average_seeds_epoch_by_epoch_over_the_common_epochs():
    c = degradation_analysis.curves({0: _rows([0.9, 0.5, 0.4]), 1: _rows([0.7, 0.3]), 2: _rows([0.8, 0.4, 0.1])})
    assert c["iteration"] == [32, 64]
    np.testing.assert_allclose(c["train_err"]["mean"], [0.8, 0.4])
    np.testing.assert_allclose(c["train_err"]["min"], [0.7, 0.3])
    np.testing.assert_allclose(c["test_err"]["max"], [0.91, 0.51])


# --------------------------------------------------------------------------- findings from the numbers

def _results(errs, its=960):
    """{net: {seed: rows}} with the given final training errors per seed, after ``its`` iterations."""
    return {name: {s: _rows([e], its) for s, e in enumerate(per_seed)} for name, per_seed in errs.items()}


def test_findings_state_the_paper_outcome_with_counts_and_spread():
    results = _results({"plain20": [0.38, 0.40, 0.39], "plain56": [0.77, 0.80, 0.74],
                        "resnet20": [0.34, 0.35, 0.33], "resnet56": [0.50, 0.55, 0.52]})
    md, summary = degradation_analysis.summarise(results, [20, 56], 960)
    degradation_, deep, shallow, resnets = summary["findings"]
    gaps = [77 - 38, 80 - 40, 74 - 39]
    assert (f"plain-56 ends above plain-20 in 3 of 3 seeds, by {np.mean(gaps):.1f} ± {np.std(gaps, ddof=1):.1f} "
            "points") in degradation_
    assert "trains worse in every seed" in degradation_ and "left chance (training error below 85 %) in 3 of 3" in degradation_
    assert "ResNet-56 ends below plain-56 in 3 of 3 seeds" in deep and "the shortcuts help in every seed" in deep
    assert "ResNet-20 ends below plain-20 in 3 of 3 seeds" in shallow
    assert "ResNet-56 ends above ResNet-20 in 3 of 3 seeds" in resnets and "does not end lower" in resnets
    assert "1.5 % of the paper's 64k" in resnets
    # the table: mean ± std (min-max) per net, and the machine-readable per-seed finals
    assert "| plain-56 | 3 | 960 | 77.00 ± 3.00 % (74.00-80.00) |" in md
    assert summary["nets"]["plain56"]["final"]["1"]["train_err"] == 0.80
    assert summary["nets"]["plain56"]["train_err"]["mean"] == pytest.approx(0.77)
    assert [c["finding"] for c in summary["comparisons"]] == ["degradation", "shortcuts_deep", "shortcuts_shallow",
                                                              "deeper_resnet"]


def test_findings_say_so_when_a_comparison_goes_the_wrong_way():
    results = _results({"plain20": [0.50, 0.50], "plain56": [0.40, 0.45],      # no degradation
                        "resnet20": [0.55, 0.60], "resnet56": [0.45, 0.30]})  # shallow ResNet worse than plain
    _, summary = degradation_analysis.summarise(results, [20, 56], 960)
    degradation_, deep, shallow, resnets = summary["findings"]
    assert "plain-56 ends below plain-20 in 2 of 2 seeds" in degradation_ and "NO degradation" in degradation_
    assert "ResNet-56 ends below plain-56 in 1 of 2 seeds" in deep and "neither net is consistently ahead" in deep
    assert "not the same way in every seed" in deep
    assert "ResNet-20 ends above plain-20 in 2 of 2 seeds" in shallow and "do NOT help" in shallow
    assert "ResNet-56 ends below ResNet-20 in 2 of 2 seeds" in resnets and "already ends lower" in resnets


def test_findings_tell_a_net_that_never_trained_from_degradation():
    results = _results({"plain20": [0.40, 0.42], "plain56": [0.90, 0.89],
                        "resnet20": [0.35, 0.36], "resnet56": [0.60, 0.61]})
    _, summary = degradation_analysis.summarise(results, [20, 56], 960)
    assert "left chance (training error below 85 %) in 0 of 2 seeds: at this budget it does not train at all" \
        in summary["findings"][0]


def test_findings_over_four_depths_state_the_trend_and_unfinished_runs():
    errs = {"plain20": [0.4], "plain32": [0.5], "plain44": [0.45], "plain56": [0.7],
            "resnet20": [0.3], "resnet32": [0.32], "resnet44": [0.35], "resnet56": [0.4]}
    results = _results(errs, its=32)
    results["resnet56"][0] = _rows([0.4], its=16)  # stopped half-way
    _, summary = degradation_analysis.summarise(results, [20, 32, 44, 56], 32)
    text = " ".join(summary["findings"])
    assert "Plain nets by depth (mean final training error): plain-20 40.0 %, plain-32 50.0 %, plain-44 45.0 %, " \
           "plain-56 70.0 %: it does not change monotonically with depth" in text
    assert "ResNets by depth" in text and "rises with every added depth" in text
    assert "Unfinished: 1 runs stopped before the budget of 32 iterations (resnet56-s0)" in text


# --------------------------------------------------------------------------- Figure 7's claims

def _response(plain, depth, seed, level):
    return {"plain": plain, "depth": depth, "seed": seed, "label": f"{'plain' if plain else 'ResNet'}-{depth}",
            "stds": [level] * (depth - 1)}


def test_response_claims_met_and_not_met():
    met = [_response(p, d, s, lvl) for s in (0, 1) for p, d, lvl in
           ((True, 20, 1.0), (True, 56, 3.0), (False, 20, 0.6), (False, 56, 0.4))]
    claims = responses.check_claims(met)
    assert [c["met"] for c in claims] == [True, True]
    assert "ResNet-20 0.600 ± 0.000 against plain-20 1.000 ± 0.000 (lower in 2 of 2 seeds)" in claims[0]["text"]
    not_met = [_response(p, d, s, lvl + 0.1 * s) for s in (0, 1) for p, d, lvl in
               ((True, 20, 1.0), (False, 20, 0.9), (False, 56, 1.2))]
    not_met[-1]["stds"] = [0.5] * 55  # seed 1's ResNet-56 responds less than its ResNet-20: 1 of 2 seeds
    claims = responses.check_claims(not_met, left_out=["plain-56 seed 0 (90.0 %)"])
    assert claims[0]["met"] is True  # only depth 20 has both twins
    assert claims[1]["met"] is False and "in 1 of 2 seeds" in claims[1]["text"]
    assert "plain-56 seed 0" in claims[2]["text"]
    assert responses.check_claims([_response(True, 20, 0, 1.0)])[0]["met"] is None
    # two ResNet depths, but trained in no common seed: nothing to compare seed by seed
    apart = responses.check_claims([_response(False, 20, 0, 0.6), _response(False, 56, 1, 0.4)])
    assert apart[1]["met"] is None and "cannot be checked" in apart[1]["text"], apart[1]


# --------------------------------------------------------------------------- end to end

def test_degradation_two_seeds_end_to_end(tmp_path):
    out = tmp_path / "deg"
    # --trained-below 1: the tiny nets stay near chance; every run then counts for Figure 7
    assert degradation.main([*TINY, "--depths", "8", "14", "--seeds", "2", "--trained-below", "1",
                             "--out", str(out)]) == 0
    for name in ("figure6.png", "results.md", "summary.json", "responses.png", "responses.json"):
        assert (out / name).stat().st_size > 0, name
    assert sorted(os.listdir(out / "runs")) == sorted(f"{n}{d}-s{s}" for n in ("plain", "resnet")
                                                      for d in (8, 14) for s in (0, 1))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seeds"] == [0, 1] and summary["budget_iterations"] == 4
    assert set(summary["nets"]["resnet14"]["final"]) == {"0", "1"}
    finals = [summary["nets"]["plain8"]["final"][s]["train_err"] for s in ("0", "1")]
    assert summary["nets"]["plain8"]["train_err"]["max"] == max(finals)
    assert len(summary["findings"]) == 4 and len(summary["responses"]["claims"]) == 2
    table = (out / "results.md").read_text()
    assert "| ResNet-14 | 2 | 4 |" in table and "## Layer responses" in table
    resp = json.loads((out / "responses.json").read_text())
    assert sorted((r["depth"], r["seed"]) for r in resp["runs"] if r["plain"]) == [(8, 0), (8, 1), (14, 0), (14, 1)]
    assert [len(r["stds"]) for r in resp["runs"] if r["seed"] == 0] == [7, 13, 7, 13]  # 1 + 6n 3x3 layers

    # without checkpoints (as committed), --report-only redraws everything from the metrics and responses.json
    for ckpt in out.glob("runs/*/*.npz"):
        ckpt.unlink()
    (out / "figure6.png").unlink()
    assert degradation.main([*TINY, "--depths", "8", "14", "--seeds", "2", "--trained-below", "1", "--out", str(out),
                             "--report-only"]) == 0
    assert (out / "figure6.png").is_file()
    assert json.loads((out / "summary.json").read_text())["findings"] == summary["findings"]


def test_untrained_nets_are_left_out_of_figure7(tmp_path):
    out = tmp_path / "deg"
    degradation.main([*TINY, "--depths", "8", "--seeds", "1", "--trained-below", "0.01", "--out", str(out)])
    resp = json.loads((out / "responses.json").read_text())
    assert resp["runs"] == [] and len(resp["left_out"]) == 2
    assert "Left out of Figure 7" in (out / "results.md").read_text()


def test_degradation_skips_finished_runs_and_resumes(tmp_path, capsys):
    args = [*TINY, "--depths", "8", "--seeds", "1", "--out", str(tmp_path / "deg"), "--no-responses"]
    degradation.main(args)
    capsys.readouterr()
    degradation.main(args)
    assert capsys.readouterr().out.count("already trained") == 2


def test_degradation_trains_nets_in_parallel_workers(tmp_path, monkeypatch):
    out = tmp_path / "deg"
    args = [*TINY, "--depths", "8", "--seeds", "1", "--out", str(out), "--no-responses", "--jobs", "2"]  # the last --jobs wins
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    assert degradation.main(args) == 0
    # the workers ran with one thread each; this process's own setting is back as it was
    assert os.environ["OMP_NUM_THREADS"] == "2" and "MKL_NUM_THREADS" not in os.environ
    for name in ("plain8-s0", "resnet8-s0"):
        assert "final test error" in (out / "runs" / name / "log.txt").read_text()
    assert json.loads((out / "summary.json").read_text())["nets"]["resnet8"]["final"]["0"]["iteration"] == 4


def test_presets_and_depths():
    args = degradation.resolve(degradation.build_parser().parse_args(["--preset", "gpu"]))
    assert (args.depths, args.seeds, args.epochs, args.device, args.warmup) == ([20, 32, 44, 56], [0, 1, 2], 30, "gpu", True)
    args = degradation.resolve(degradation.build_parser().parse_args(["--depths", "56", "20", "32", "--seeds", "0", "5"]))
    assert (args.depths, args.seeds, args.epochs, args.device) == ([20, 32, 56], [0, 5], 20, "cpu")
    args = degradation.resolve(degradation.build_parser().parse_args([]))
    assert (args.depths, args.seeds, args.epochs, args.warmup) == ([14, 32], [0], 20, True)
    args = degradation.resolve(degradation.build_parser().parse_args(["--preset", "paper", "--epochs", "3"]))
    assert (args.epochs, args.iterations, args.milestones) == (3, None, None)
    with pytest.raises(SystemExit, match="6n\\+2"):
        degradation.resolve(degradation.build_parser().parse_args(["--depths", "21"]))


def test_presets_train_on_the_learners_subset_unless_told_otherwise():
    parse = lambda *argv: degradation.resolve(degradation.build_parser().parse_args(list(argv)))  # noqa: E731
    assert parse().subset == parse("--preset", "gpu").subset == [4000, 1000]
    assert parse("--preset", "paper").subset is None
    assert parse("--subset", "400", "100").subset == [400, 100]
    assert parse("--dataset", "synthetic").subset is None


def test_missing_data_is_one_message_before_any_run(tmp_path, no_data, monkeypatch, capsys):
    monkeypatch.setattr(degradation, "run_all", lambda args: pytest.fail("launched runs without data"))
    out = tmp_path / "deg"
    assert degradation.main(["--out", str(out), "--jobs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("Three ways forward") == 1 and "--dataset synthetic" in err
    assert not out.exists()


def test_report_names_the_data_by_identity_not_path(tmp_path, tiny_data):
    folder = tiny_data[0]
    out = tmp_path / "deg"
    argv = ["--depths", "8", "--seeds", "1", "--epochs", "1", "--width", "4", "--batch-size", "32",
            "--subset", "128", "40", "--jobs", "1", "--no-progress", "--no-responses", "--out", str(out)]
    assert degradation.main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data"]["subset"] == [128, 40] and len(summary["data"]["sha256"]) == 64
    results = (out / "results.md").read_text()
    assert "CIFAR-10 (first 128 training and 40 test images)" in results and summary["data"]["sha256"] in results
    assert str(folder) not in results + json.dumps(summary)


def test_responses_names_missing_runs_in_one_line(tmp_path, capsys):
    runs = [str(tmp_path / "plain8-s0"), str(tmp_path / "resnet8-s0")]
    assert responses.main([*runs, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and all(r in err for r in runs) and "no checkpoint (last.npz)" in err


def test_gpu_script_is_valid_bash():
    script = Path(__file__).resolve().parents[1] / "docs" / "degradation" / "gpu_run.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)


# --------------------------------------------------------------------------- layer responses

@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_response_layers_are_the_bn_after_each_3x3_conv(shortcut):
    model = cifar_resnet(14, shortcut=shortcut, width=4, seed=0)
    names = [n for n, _ in responses.response_layers(model)]
    assert names[0] == "bn1" and len(names) == 13
    assert not any("downsample" in n for n in names)


def test_layer_response_stds_match_a_direct_computation():
    model = cifar_resnet(8, width=4, seed=0)
    x, _, _, _ = synthetic_cifar(40, 10, seed=1)
    mean = per_pixel_mean(x)
    names, stds = responses.layer_response_stds(model, x, mean, batch_size=16)
    captured = {}
    layers = dict(responses.response_layers(model))
    for name, bn in layers.items():
        bn.register_forward_hook(lambda m, a, out, name=name: captured.__setitem__(name, out.data.copy()))
    model.eval()
    with no_grad():
        model(Tensor(normalize(x, mean)))
    expected = [np.std(captured[n].astype(np.float64)) for n in names]
    np.testing.assert_allclose(stds, expected, rtol=1e-4)


def test_a_failed_run_is_reported_and_the_others_go_on(tmp_path, monkeypatch, capsys):
    from minires import train as T
    real_train = T.train

    def train(cfg, **kw):
        if cfg.plain:
            raise T.NonFiniteLoss("the loss became nan")
        return real_train(cfg, **kw)
    monkeypatch.setattr(T, "train", train)
    out = tmp_path / "deg"
    assert degradation.main([*TINY, "--depths", "8", "--seeds", "1", "--out", str(out), "--no-responses"]) == 1
    assert "run failed: plain-8 seed 0: NonFiniteLoss" in capsys.readouterr().out
    assert list(json.loads((out / "summary.json").read_text())["nets"]) == ["resnet8"]
