"""The degradation experiment (Figure 6) and the layer responses (Figure 7), on tiny runs."""
import json

import numpy as np
import pytest

from minires import Tensor, no_grad
from minires.data import normalize, per_pixel_mean, synthetic_cifar
from minires.experiments import degradation, responses
from minires.models import cifar_resnet

TINY = ["--dataset", "synthetic", "--depths", "8", "14", "--epochs", "2", "--width", "4",
        "--train-limit", "256", "--batch-size", "32", "--no-progress", "--jobs", "1"]


def test_degradation_writes_figure_table_and_responses(tmp_path):
    out = tmp_path / "deg"
    assert degradation.main([*TINY, "--out", str(out)]) == 0
    for name in ("figure6.png", "results.md", "summary.json", "responses.png", "responses.json"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["final"]) == {"plain8", "plain14", "resnet8", "resnet14"}
    assert all(r["iteration"] == 16 for r in summary["final"].values())
    table = (out / "results.md").read_text()
    for name in ("plain-8", "plain-14", "ResNet-8", "ResNet-14"):
        assert f"| {name} | 16 |" in table
    assert len(summary["findings"]) == 3  # degradation, shortcuts, deeper ResNets: each stated from the numbers
    resp = json.loads((out / "responses.json").read_text())
    assert [len(r["stds"]) for r in resp] == [7, 13, 7, 13]  # 1 + 6n layers of 3x3 for depth 6n+2


def test_degradation_skips_finished_runs_and_resumes(tmp_path, capsys):
    out = tmp_path / "deg"
    args = [*TINY[:2], "--depths", "8", *TINY[5:], "--out", str(out), "--no-responses"]
    degradation.main(args)
    capsys.readouterr()
    degradation.main(args)
    assert capsys.readouterr().out.count("already trained") == 2


def test_summary_states_findings_from_the_numbers():
    def rows(train_err):
        return [{"iteration": 100, "train_err": train_err, "test_err": train_err + 0.05,
                 "train_loss": 1.0, "test_loss": 1.0}]
    results = {"plain20": rows(0.30), "plain56": rows(0.50), "resnet20": rows(0.28), "resnet56": rows(0.20)}
    md, summary = degradation.summarise(results, [20, 56])
    assert "trains worse" in summary["findings"][0]
    assert "trains better" in summary["findings"][1]
    assert "already ends lower" in summary["findings"][2]
    results["plain56"] = rows(0.25)
    results["resnet56"] = rows(0.35)
    _, summary = degradation.summarise(results, [20, 56])
    assert "NOT worse" in summary["findings"][0] and "NOT better" in summary["findings"][1]
    assert "higher" in summary["findings"][2]


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


def test_degradation_trains_nets_in_parallel_workers(tmp_path):
    out = tmp_path / "deg"
    args = [*TINY[:2], "--depths", "8", *TINY[5:], "--out", str(out), "--no-responses", "--jobs", "2"]
    assert degradation.main(args) == 0
    for name in ("plain8", "resnet8"):
        assert "final test error" in (out / "runs" / name / "log.txt").read_text()
    assert json.loads((out / "summary.json").read_text())["final"]["resnet8"]["iteration"] == 16
