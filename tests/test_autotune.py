"""The conv autotuner: timing, the cache file (per machine, atomic, shared by concurrent runs), the
pinned tables that make runs reproducible, the policy's precedence, and the command line."""
import json
import multiprocessing
import os

import numpy as np
import pytest

import minires
import minires.functional as F
from minires import autotune
from minires.autotune import __main__ as autotune_cli
from minires.ops import conv
from minires import train as T
from minires.checkpoint import load_checkpoint

TINY = ["--dataset", "synthetic", "--depth", "8", "--width", "4", "--batch-size", "32", "--train-limit", "64",
        "--no-progress"]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh cache file, timing on, nothing decided yet in this process."""
    path = tmp_path / "autotune.json"
    monkeypatch.setenv("MINIRES_AUTOTUNE_CACHE", str(path))
    monkeypatch.setattr(autotune, "_decided", {})
    with minires.use_algorithm(autotune=True):
        yield path


def never(name):
    def fail():
        raise AssertionError(f"{name} was timed, but its choice should have come from elsewhere")
    return fail


def calls(log, name):
    return lambda: log.append(name)


def test_the_fastest_candidate_wins_and_the_cache_remembers_it(cache):
    import time
    log = []
    slow = lambda: (log.append("slow"), time.sleep(0.01))  # noqa: E731
    assert autotune.choose("forward k1", {"slow": slow, "fast": calls(log, "fast")}, rule="slow") == "fast"
    assert log.count("fast") == 1 + autotune.REPEATS  # a warm-up, then the timed calls
    entry = json.loads(cache.read_text())["machines"][autotune.machine_id()]["choices"]["forward k1"]
    assert entry["algorithm"] == "fast" and entry["ms"]["slow"] >= 10
    autotune._decided.clear()  # a new process: the file answers, nothing is timed again
    assert autotune.choose("forward k1", {"slow": never("slow"), "fast": never("fast")}, rule="slow") == "fast"


@pytest.mark.parametrize("faster, expected", [(0.99, "rule"), (0.96, "other")])
def test_a_near_tie_keeps_the_rules_choice(cache, monkeypatch, faster, expected):
    """Another candidate replaces the fixed rule's only when timed MARGIN (3 %) faster or more:
    1 % faster is a near-tie two timed calls cannot rank; 4 % is not."""
    monkeypatch.setattr(autotune, "measure", lambda fn: fn())  # each candidate returns its own time
    times = {"rule": lambda: 1.0, "other": lambda: faster, "slow": lambda: 2.0}
    assert autotune.choose("backward k", times, rule="rule") == expected
    entry = json.loads(cache.read_text())["machines"][autotune.machine_id()]["choices"]["backward k"]
    assert entry["algorithm"] == expected and entry["ms"]["other"] == pytest.approx(1e3 * faster)


def test_another_machine_times_again(cache, monkeypatch):
    log = []
    autotune.choose("k", {"a": calls(log, "a"), "b": calls(log, "b")}, rule="a")
    autotune._decided.clear()
    monkeypatch.setattr(autotune, "machine_id", lambda: "another CPU | 64 cores | numpy 0 | blas 0")
    log.clear()
    autotune.choose("k", {"a": calls(log, "a"), "b": calls(log, "b")}, rule="a")
    assert log, "a choice made on another machine was reused"
    assert len(json.loads(cache.read_text())["machines"]) == 2


def test_timing_off_follows_the_rule_and_writes_nothing(cache):
    with minires.use_algorithm(autotune=False):
        assert autotune.choose("k", {"a": never("a"), "b": never("b")}, rule="b") == "b"
    assert not cache.exists()


def test_pinned_tables_win_and_record_new_decisions(cache):
    with autotune.pinned({"k1": "b"}) as table:
        assert autotune.choose("k1", {"a": never("a"), "b": never("b")}, rule="a") == "b"
        autotune.choose("k2", {"a": calls([], "a"), "b": calls([], "b")}, rule="a")
        assert set(table) == {"k1", "k2"}
    with autotune.pinned({}, decide=False) as table:  # a distributed rank other than 0
        assert autotune.choose("k3", {"a": never("a"), "b": never("b")}, rule="b") == "b"
        assert table == {"k3": "b"}
    with autotune.pinned({"k1": "fft"}), pytest.raises(ValueError, match="recorded algorithm 'fft'"):
        autotune.choose("k1", {"a": never("a")} | {"b": never("b")}, rule="a")


def test_an_unreadable_cache_is_reported_and_replaced(cache, capsys):
    cache.write_text("{not json")
    autotune.choose("k", {"a": calls([], "a"), "b": calls([], "b")}, rule="a")
    assert "ignoring the unreadable cache" in capsys.readouterr().err
    assert "k" in json.loads(cache.read_text())["machines"][autotune.machine_id()]["choices"]


def _write_keys(path, first, count):
    os.environ["MINIRES_AUTOTUNE_CACHE"] = path
    for i in range(first, first + count):
        autotune._update_cache(lambda mine, i=i: mine["choices"].__setitem__(f"k{i}", {"algorithm": "a", "ms": {}}))


def test_concurrent_writers_keep_every_entry_and_a_valid_file(cache):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_write_keys, args=(str(cache), 100 * p, 25)) for p in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    choices = json.loads(cache.read_text())["machines"][autotune.machine_id()]["choices"]
    assert set(choices) == {f"k{100 * p + i}" for p in range(4) for i in range(25)}
    assert not [f for f in os.listdir(cache.parent) if f.startswith(".autotune-")]  # no temporary left


def test_auto_chooses_forward_and_backward_and_matches_the_reference(cache):
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((4, 8, 10, 10)), rng.standard_normal((8, 8, 3, 3))
    xt, wt = minires.Tensor(x, requires_grad=True), minires.Tensor(w, requires_grad=True)
    y = F.conv2d(xt, wt, padding=1, algorithm="auto")
    algorithms = y._ctx.algorithms
    y.backward(np.ones(y.shape))
    assert set(algorithms) == {"forward", "input_grad", "weight_grad"}
    assert set(algorithms.values()) <= {"im2col", "winograd", "winograd4"}
    choices = json.loads(cache.read_text())["machines"][autotune.machine_id()]["choices"]
    names = ("im2col", "winograd", "winograd4")
    assert sorted(k.split()[0] for k in choices) == ["backward", "forward"]
    assert all(set(c["ms"]) >= set(names) for c in choices.values())
    pairs = {f"{a} for dx, {b} for dW" for a in names for b in names if a != b}
    assert {n for k, c in choices.items() if k.startswith("backward") for n in c["ms"]} == set(names) | pairs
    with minires.use_reference():
        xr, wr = minires.Tensor(x, requires_grad=True), minires.Tensor(w, requires_grad=True)
        yr = F.conv2d(xr, wr, padding=1)
        yr.backward(np.ones(yr.shape))
    np.testing.assert_allclose(y.numpy(), yr.numpy(), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(xt.grad, xr.grad, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(wt.grad, wr.grad, rtol=1e-9, atol=1e-9)


def test_a_split_backward_runs_each_gradient_by_its_algorithm(cache, monkeypatch):
    """When timing says two kernels beat one, dx and dW come from different kernels, both right."""
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((3, 4, 9, 9)), rng.standard_normal((5, 4, 3, 3))
    gy = rng.standard_normal((3, 5, 9, 9))
    fake_ms = iter(100 * 0.9**i for i in range(50))  # each candidate timed 10 % faster than the one before
    monkeypatch.setattr(autotune, "measure", lambda fn: (fn(), next(fake_ms) / 1e3)[1])
    real, runs = conv._backward_kernel, []
    monkeypatch.setattr(conv, "_backward_kernel", lambda name, *a: runs.append((name, a[-1])) or real(name, *a))
    xt, wt = minires.Tensor(x, requires_grad=True), minires.Tensor(w, requires_grad=True)
    y = F.conv2d(xt, wt, padding=1, algorithm="auto")
    algorithms = y._ctx.algorithms  # filled in by backward (which then frees the op's state)
    y.backward(gy)
    # the last pair timed wins, and its one run after the timing is two kernels, one per gradient
    assert algorithms == {"forward": "winograd4", "input_grad": "winograd4", "weight_grad": "winograd"}
    assert runs[-2:] == [("winograd4", (True, False, False)), ("winograd", (False, True, False))]
    xr, wr = minires.Tensor(x, requires_grad=True), minires.Tensor(w, requires_grad=True)
    F.conv2d(xr, wr, padding=1, algorithm="im2col").backward(gy)
    np.testing.assert_allclose(xt.grad, xr.grad, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(wt.grad, wr.grad, rtol=1e-9, atol=1e-9)


def test_a_bias_only_backward_chooses_nothing(cache):
    x, w, b = np.ones((2, 3, 5, 5)), np.ones((4, 3, 3, 3)), minires.Tensor(np.zeros(4), requires_grad=True)
    y = F.conv2d(x, w, b, padding=1, algorithm="auto")
    y.backward(np.arange(y.size, dtype=float).reshape(y.shape))
    np.testing.assert_array_equal(b.grad, np.arange(y.size, dtype=float).reshape(y.shape).sum(axis=(0, 2, 3)))
    choices = json.loads(cache.read_text())["machines"][autotune.machine_id()]["choices"]
    assert [k.split()[0] for k in choices] == ["forward"]  # nothing timed for a backward with no kernel


def test_a_winograd_policy_runs_im2col_where_winograd_cannot():
    x = minires.Tensor(np.ones((1, 4, 8, 8)), requires_grad=True)
    with minires.use_algorithm("winograd4"):
        assert F.conv2d(x, np.ones((4, 4, 3, 3)), padding=1)._ctx.algorithms == {"forward": "winograd4"}
        assert F.conv2d(x, np.ones((4, 4, 3, 3)), stride=2, padding=1)._ctx.algorithms == {"forward": "im2col"}
        assert F.conv2d(x, np.ones((4, 4, 1, 1)))._ctx.algorithms == {"forward": "im2col"}
        with pytest.raises(ValueError, match="conv2d: algorithm 'winograd4' needs a 3x3 kernel and stride 1"):
            F.conv2d(x, np.ones((4, 4, 3, 3)), stride=2, algorithm="winograd4")  # named in the call: strict


def test_an_unwritable_cache_costs_only_the_cache(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("MINIRES_AUTOTUNE_CACHE", str(blocker / "autotune.json"))
    monkeypatch.setattr(autotune, "_decided", {})
    monkeypatch.setattr(autotune, "_unwritable", False)
    x = minires.Tensor(np.ones((2, 4, 6, 6)), requires_grad=True)
    with minires.use_algorithm(autotune=True):
        for _ in range(2):  # the second conv decides from this process's memory, without a second warning
            F.conv2d(x, np.ones((4, 4, 3, 3)), padding=1).sum().backward()
    err = capsys.readouterr().err
    assert err.count("minires.autotune: cannot write the cache") == 1 and str(blocker) in err


def test_precedence_reference_then_the_call_then_pins(cache):
    x, w = np.ones((1, 2, 6, 6)), np.ones((2, 2, 3, 3))
    with autotune.pinned({}) as table:
        with minires.use_reference():  # 1. the reference: nothing is chosen, nothing timed
            F.conv2d(x, w, padding=1)
        assert table == {} and not cache.exists()
        y = F.conv2d(minires.Tensor(x, requires_grad=True), w, padding=1, algorithm="winograd4")  # 2. the call's name
        assert y._ctx.algorithms == {"forward": "winograd4"} and table == {}
    k = autotune.key("forward", x.shape, w.shape, (1, 1), (1, 1), x.dtype, minires.get_num_threads())
    with minires.use_algorithm("auto"), autotune.pinned({k: "winograd4"}):  # 4. a pin beats the cache
        assert F.conv2d(minires.Tensor(x, requires_grad=True), w, padding=1)._ctx.algorithms == {"forward": "winograd4"}
    assert not cache.exists()


def test_a_run_records_its_choices_and_resume_reuses_them(cache, tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert T.main([*TINY, "--iterations", "2", "--out", str(out)]) == 0
    recorded = json.loads((out / "config.json").read_text())["conv_algorithms"]
    assert recorded and all(k.split()[0] in autotune.DIRECTIONS for k in recorded)
    assert load_checkpoint(out / "last.npz")["meta"]["conv_algorithms"] == recorded
    # The cache now says otherwise, and timing would fail: the resumed run must follow its record.
    changed = {k: ("im2col" if v != "im2col" else "winograd") for k, v in recorded.items() if " w" in k}
    autotune._update_cache(lambda mine: mine["choices"].update(
        {k: {"algorithm": v, "ms": {}} for k, v in changed.items()}))
    autotune._decided.clear()
    monkeypatch.setattr(autotune, "measure", lambda fn: (_ for _ in ()).throw(AssertionError("timed on resume")))
    seen = []
    real_choose = autotune.choose
    monkeypatch.setattr(autotune, "choose", lambda k, c, rule: seen.append((k, real_choose(k, c, rule))) or seen[-1][1])
    assert T.main([*TINY, "--iterations", "4", "--out", str(out), "--resume"]) == 0
    assert seen and all(recorded[k] == choice for k, choice in seen)  # the twin met every shape the run meets
    assert json.loads((out / "config.json").read_text())["conv_algorithms"] == recorded


def test_the_command_line_prints_and_clears(cache, capsys):
    autotune.choose("forward 8x10x10 w8x8x3x3 s1x1 p1x1 float64 t1", {"im2col": calls([], "i"), "winograd": calls([], "w")},
                    rule="im2col")
    assert autotune_cli.main([]) == 0
    printed = capsys.readouterr().out
    assert str(cache) in printed and autotune.machine_id() in printed and "forward 8x10x10" in printed
    assert autotune_cli.main(["--clear"]) == 0
    assert "cleared 1 choices" in capsys.readouterr().out
    autotune_cli.main([])
    assert "no choices yet" in capsys.readouterr().out


def test_the_environment_gives_the_initial_value_only(monkeypatch):
    monkeypatch.setenv("MINIRES_AUTOTUNE", "yes")
    with pytest.raises(ValueError, match="MINIRES_AUTOTUNE must be 1"):
        autotune._enabled_from_environment()
    monkeypatch.setenv("MINIRES_AUTOTUNE", "0")
    assert autotune._enabled_from_environment() is False
