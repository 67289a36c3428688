"""Tests of minires.optim: SGD (against steps worked out by hand), its state dicts, schedules.

The hand-worked examples use dyadic numbers (0.5, 0.25, ...), so float32 arithmetic is exact
and the results can be compared with assert_array_equal.
"""
import numpy as np
import pytest

from minires.backend import gpu_available
from minires.checkpoint import flatten_state, unflatten_state
from minires.optim import SGD, MultiStepLR, WarmupUntil, paper_schedule


class Param:
    """The parameter interface the optimizer needs: .data and .grad arrays."""

    def __init__(self, values, dtype=np.float32):
        self.data = np.array(values, dtype=dtype)
        self.grad = None


def f32(*values):
    return np.array(values, dtype=np.float32)


# The gradients of the worked examples, step by step.
G1, G2, G3 = f32(0.5, 0.25), f32(-1.0, 2.0), f32(1.0, 1.0)


def run(grads, **hyper):
    """Start from p = [1, -2] and take one step per gradient; return p.data after each step."""
    p = Param([1.0, -2.0])
    opt = SGD([p], **hyper)
    history = []
    for g in grads:
        p.grad = g.copy()
        opt.step()
        np.testing.assert_array_equal(p.grad, g)  # the optimizer never writes into .grad
        history.append(p.data.copy())
    return history


# ----------------------------------------------------------------------------- SGD by hand

def test_plain_sgd():
    s1, s2 = run([G1, G2], lr=0.5)
    # p1 = p0 - 0.5 g1 = [1 - 0.25, -2 - 0.125]
    np.testing.assert_array_equal(s1, f32(0.75, -2.125))
    # p2 = p1 - 0.5 g2 = [0.75 + 0.5, -2.125 - 1.0]
    np.testing.assert_array_equal(s2, f32(1.25, -3.125))


def test_momentum():
    s1, s2, s3 = run([G1, G2, G3], lr=0.5, momentum=0.5)
    # step 1: b = g1 = [0.5, 0.25];                 p = [1 - 0.25, -2 - 0.125]
    np.testing.assert_array_equal(s1, f32(0.75, -2.125))
    # step 2: b = 0.5 b + g2 = [0.25 - 1, 0.125 + 2] = [-0.75, 2.125]
    #         p = [0.75 + 0.375, -2.125 - 1.0625]
    np.testing.assert_array_equal(s2, f32(1.125, -3.1875))
    # step 3: b = 0.5 b + g3 = [-0.375 + 1, 1.0625 + 1] = [0.625, 2.0625]
    #         p = [1.125 - 0.3125, -3.1875 - 1.03125]
    np.testing.assert_array_equal(s3, f32(0.8125, -4.21875))


def test_dampening_is_not_applied_on_the_first_step():
    s1, s2 = run([G1, G2], lr=0.5, momentum=0.5, dampening=0.5)
    # step 1: b = g1 (PyTorch: no dampening on the first step); p = [0.75, -2.125]
    np.testing.assert_array_equal(s1, f32(0.75, -2.125))
    # step 2: b = 0.5 b + (1 - 0.5) g2 = [0.25 - 0.5, 0.125 + 1] = [-0.25, 1.125]
    #         p = [0.75 + 0.125, -2.125 - 0.5625]
    np.testing.assert_array_equal(s2, f32(0.875, -2.6875))


def test_weight_decay():
    s1, s2 = run([G1, G2], lr=0.5, weight_decay=0.25)
    # step 1: d = g1 + 0.25 p = [0.5 + 0.25, 0.25 - 0.5] = [0.75, -0.25]
    #         p = [1 - 0.375, -2 + 0.125]
    np.testing.assert_array_equal(s1, f32(0.625, -1.875))
    # step 2: d = g2 + 0.25 p = [-1 + 0.15625, 2 - 0.46875] = [-0.84375, 1.53125]
    #         p = [0.625 + 0.421875, -1.875 - 0.765625]
    np.testing.assert_array_equal(s2, f32(1.046875, -2.640625))


def test_nesterov():
    s1, s2 = run([G1, G2], lr=0.5, momentum=0.5, nesterov=True)
    # step 1: b = g1 = [0.5, 0.25]; d = g1 + 0.5 b = [0.75, 0.375]
    #         p = [1 - 0.375, -2 - 0.1875]
    np.testing.assert_array_equal(s1, f32(0.625, -2.1875))
    # step 2: b = 0.5 b + g2 = [-0.75, 2.125]; d = g2 + 0.5 b = [-1 - 0.375, 2 + 1.0625]
    #         p = [0.625 + 0.6875, -2.1875 - 1.53125]
    np.testing.assert_array_equal(s2, f32(1.3125, -3.71875))


def test_weight_decay_with_momentum():
    # The weight-decayed gradient becomes the buffer without a copy on step 1: step 2 shows
    # whether that buffer was left intact.
    s1, s2 = run([G1, G2], lr=0.5, momentum=0.5, weight_decay=0.25)
    # step 1: d = g1 + 0.25 p = [0.75, -0.25]; b = d; p = [1 - 0.375, -2 + 0.125]
    np.testing.assert_array_equal(s1, f32(0.625, -1.875))
    # step 2: d = g2 + 0.25 p = [-0.84375, 1.53125]
    #         b = 0.5 [0.75, -0.25] + d = [-0.46875, 1.40625]
    #         p = [0.625 + 0.234375, -1.875 - 0.703125]
    np.testing.assert_array_equal(s2, f32(0.859375, -2.578125))


def test_weight_decay_with_nesterov():
    s1, s2 = run([G1, G2], lr=0.5, momentum=0.5, weight_decay=0.25, nesterov=True)
    # step 1: d = [0.75, -0.25]; b = d; d' = d + 0.5 b = [1.125, -0.375]
    #         p = [1 - 0.5625, -2 + 0.1875]
    np.testing.assert_array_equal(s1, f32(0.4375, -1.8125))
    # step 2: d = g2 + 0.25 p = [-1 + 0.109375, 2 - 0.453125] = [-0.890625, 1.546875]
    #         b = 0.5 [0.75, -0.25] + d = [-0.515625, 1.421875]
    #         d' = d + 0.5 b = [-1.1484375, 2.2578125]
    #         p = [0.4375 + 0.57421875, -1.8125 - 1.12890625]
    np.testing.assert_array_equal(s2, f32(1.01171875, -2.94140625))


def test_none_grads_are_skipped_and_get_no_buffer():
    a, b = Param([1.0, -2.0]), Param([3.0])
    opt = SGD([a, b], lr=0.5, momentum=0.5)
    for g in (G1, G2):
        a.grad = g.copy()
        opt.step()
    np.testing.assert_array_equal(a.data, f32(1.125, -3.1875))  # as in test_momentum
    np.testing.assert_array_equal(b.data, f32(3.0))
    assert set(opt.state) == {0}
    assert set(opt.state_dict()["state"]) == {0}
    # Once b gets a gradient, its buffer starts from that gradient (a "first step").
    a.grad, b.grad = None, f32(2.0)
    opt.step()
    np.testing.assert_array_equal(b.data, f32(2.0))
    np.testing.assert_array_equal(opt.state[1]["momentum_buffer"], f32(2.0))


def test_momentum_buffer_does_not_alias_the_gradient():
    p = Param([1.0, -2.0])
    opt = SGD([p], lr=0.5, momentum=0.5)
    p.grad = G1.copy()
    opt.step()
    opt.zero_grad(set_to_none=False)  # zeroes the same .grad array in place ...
    p.grad += G2                      # ... and the next backward accumulates into it
    opt.step()
    np.testing.assert_array_equal(p.data, f32(1.125, -3.1875))  # as in test_momentum


def test_zero_grad():
    p = Param([1.0, 2.0])
    opt = SGD([p], lr=0.1)
    p.grad = f32(3.0, 4.0)
    opt.zero_grad()
    assert p.grad is None
    grad = f32(3.0, 4.0)
    p.grad = grad
    opt.zero_grad(set_to_none=False)
    assert p.grad is grad  # zeroed in place
    np.testing.assert_array_equal(grad, f32(0.0, 0.0))


# ----------------------------------------------------------------------------- dtypes

def test_float32_stays_float32_in_place_with_float32_arithmetic():
    rng = np.random.default_rng(0)
    p = Param(rng.standard_normal(1000))
    g = rng.standard_normal(1000).astype(np.float32)
    p.grad = g
    start, data = p.data.copy(), p.data
    opt = SGD([p], lr=0.1, momentum=0.9, weight_decay=1e-4)
    opt.param_groups[0]["lr"] = np.float64(0.1)  # a float64 scalar must not promote the update
    opt.step()
    assert p.data is data and p.data.dtype == np.float32
    assert opt.state[0]["momentum_buffer"].dtype == np.float32
    # Step 1 is p - lr (g + wd p), every operation rounded to float32:
    expected = start - np.float32(0.1) * (g + np.float32(1e-4) * start)
    np.testing.assert_array_equal(p.data, expected)
    # ... which is not what float64 arithmetic rounded at the end gives, so the check bites:
    start64 = start.astype(np.float64)
    via64 = (start64 - 0.1 * (g.astype(np.float64) + 1e-4 * start64)).astype(np.float32)
    assert not np.array_equal(via64, expected)


def test_float64_parameters_stay_float64():
    p = Param([1.0, -2.0], dtype=np.float64)
    p.grad = np.array([0.1, 0.2])
    SGD([p], lr=0.1, momentum=0.9).step()
    assert p.data.dtype == np.float64
    np.testing.assert_array_equal(p.data, np.array([1.0 - 0.1 * 0.1, -2.0 - 0.1 * 0.2]))


# ----------------------------------------------------------------------------- param groups

def test_param_groups_with_their_own_hyperparameters():
    a, b = Param([1.0, -2.0]), Param([1.0, -2.0])
    opt = SGD(
        [{"params": [a]}, {"params": [b], "lr": 0.25, "weight_decay": 0.0}],
        lr=0.5, weight_decay=0.25,
    )
    assert opt.param_groups[0]["lr"] == 0.5 and opt.param_groups[1]["lr"] == 0.25
    a.grad, b.grad = G1.copy(), G1.copy()
    opt.step()
    np.testing.assert_array_equal(a.data, f32(0.625, -1.875))           # as test_weight_decay
    np.testing.assert_array_equal(b.data, f32(1 - 0.125, -2 - 0.0625))  # p - 0.25 g1
    # A schedule writes the lr of a group; the next step uses it.
    opt.param_groups[1]["lr"] = 1.0
    b.grad = G2.copy()
    opt.step()
    np.testing.assert_array_equal(b.data, f32(0.875 + 1.0, -2.0625 - 2.0))
    # Indices run across groups.
    assert [g["params"] for g in opt.state_dict()["param_groups"]] == [[0], [1]]


def test_add_param_group_and_generators():
    a, b = Param([1.0]), Param([2.0])
    opt = SGD((p for p in [a]), lr=0.1)
    opt.add_param_group({"params": b, "momentum": 0.9})
    assert opt.param_groups[1]["params"] == [b]
    assert opt.param_groups[1]["momentum"] == 0.9 and opt.param_groups[1]["lr"] == 0.1


# ----------------------------------------------------------------------------- validation

@pytest.mark.parametrize(
    "hyper, match",
    [
        (dict(lr=-0.1), r"lr=-0\.1"),
        (dict(lr=0.1, momentum=-0.9), r"momentum=-0\.9"),
        (dict(lr=0.1, weight_decay=-1e-4), r"weight_decay=-0\.0001"),
        (dict(lr=0.1, nesterov=True), r"Nesterov.*momentum=0\.0"),
        (dict(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), r"Nesterov.*dampening=0\.1"),
        (dict(lr=float("nan")), r"lr must be finite"),
    ],
)
def test_invalid_hyperparameters(hyper, match):
    with pytest.raises(ValueError, match=match):
        SGD([Param([1.0])], **hyper)


def test_invalid_hyperparameter_in_a_group_names_the_group():
    with pytest.raises(ValueError, match=r"param group 1.*lr=-1\.0"):
        SGD([{"params": [Param([1.0])]}, {"params": [Param([1.0])], "lr": -1.0}], lr=0.1)


def test_invalid_hyperparameter_types():
    with pytest.raises(TypeError, match="lr must be a real number"):
        SGD([Param([1.0])], lr="0.1")
    with pytest.raises(TypeError, match="momentum must be a real number"):
        SGD([Param([1.0])], lr=0.1, momentum=True)


def test_invalid_params():
    p = Param([1.0])
    with pytest.raises(ValueError, match="empty parameter list"):
        SGD([], lr=0.1)
    with pytest.raises(TypeError, match="single Param"):
        SGD(p, lr=0.1)
    with pytest.raises(TypeError, match="not a set"):
        SGD({p}, lr=0.1)
    with pytest.raises(TypeError, match="parameter 1 is a ndarray"):
        SGD([p, np.zeros(3, np.float32)], lr=0.1)
    with pytest.raises(ValueError, match="parameter 1 appears more than once"):
        SGD([{"params": [p]}, {"params": [p]}], lr=0.1)
    with pytest.raises(TypeError, match="floating-point"):
        SGD([Param([1, 2], dtype=np.int64)], lr=0.1)


@pytest.mark.parametrize(
    "grad, match",
    [
        (np.zeros(3, np.float32), r"parameter 1 has shape \(2,\).*\.grad has shape \(3,\)"),
        (np.zeros(2, np.float64), r"parameter 1 has .*dtype float32.*\.grad has .*dtype float64"),
        ([0.0, 0.0], r"parameter 1 has a \.grad of type list"),
    ],
)
def test_mismatched_grad(grad, match):
    a, b = Param([1.0]), Param([1.0, 2.0])
    opt = SGD([a, b], lr=0.1)
    a.grad, b.grad = f32(1.0), grad
    with pytest.raises((ValueError, TypeError), match=match):
        opt.step()


# ----------------------------------------------------------------------------- checkpoints

def _two_param_optimizer(values=((1.0, -2.0), (0.5,))):
    params = [Param(v) for v in values]
    opt = SGD(
        [{"params": params[:1]}, {"params": params[1:], "weight_decay": 0.0}],
        lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=True,
    )
    return params, opt


def test_state_dict_round_trip_through_npz_continues_identically(tmp_path):
    rng = np.random.default_rng(1)
    grads = [[rng.standard_normal(2).astype(np.float32), rng.standard_normal(1).astype(np.float32)]
             for _ in range(5)]
    params, opt = _two_param_optimizer()
    for ga, gb in grads[:3]:
        params[0].grad, params[1].grad = ga, gb
        opt.step()
    opt.param_groups[0]["lr"] = 0.01  # a schedule changed it: must be restored too

    path = tmp_path / "ckpt.npz"
    np.savez(path, **flatten_state(opt.state_dict(), "optimizer"), other=np.zeros(3))
    # Two fresh optimizers on copies of the current parameters: one resumes from the file,
    # the other starts over (no buffers) to show the comparison below can fail.
    resumed, opt2 = _two_param_optimizer()
    restarted, opt3 = _two_param_optimizer()
    for p, q, r in zip(params, resumed, restarted):
        q.data[...] = p.data
        r.data[...] = p.data
    with np.load(path) as f:  # allow_pickle=False, the default
        opt2.load_state_dict(unflatten_state(f, "optimizer"))
    assert opt2.param_groups[0]["lr"] == 0.01 and opt2.param_groups[1]["weight_decay"] == 0.0
    opt3.param_groups[0]["lr"] = 0.01

    for ga, gb in grads[3:]:
        for ps, o in ((params, opt), (resumed, opt2), (restarted, opt3)):
            ps[0].grad, ps[1].grad = ga, gb
            o.step()
    for p, q, r in zip(params, resumed, restarted):
        np.testing.assert_array_equal(p.data, q.data)
        assert not np.array_equal(p.data, r.data)


def test_state_dict_is_a_copy_and_load_copies():
    params, opt = _two_param_optimizer()
    params[0].grad = f32(1.0, 1.0)
    opt.step()
    sd = opt.state_dict()
    assert isinstance(sd["state"][0]["momentum_buffer"], np.ndarray)
    sd["state"][0]["momentum_buffer"][...] = 99
    assert not np.any(opt.state[0]["momentum_buffer"] == 99)
    opt.load_state_dict(sd)
    sd["state"][0]["momentum_buffer"][...] = -1
    np.testing.assert_array_equal(opt.state[0]["momentum_buffer"], f32(99, 99))


def test_load_state_dict_casts_buffers_to_the_parameter_dtype():
    params, opt = _two_param_optimizer()
    sd = opt.state_dict()
    sd["state"] = {0: {"momentum_buffer": np.array([0.5, 0.25])}}  # float64
    opt.load_state_dict(sd)
    assert opt.state[0]["momentum_buffer"].dtype == np.float32


def test_load_state_dict_errors_and_atomicity():
    params, opt = _two_param_optimizer()
    params[0].grad = f32(1.0, 1.0)
    opt.step()
    good = opt.state_dict()

    bad = opt.state_dict()
    bad["state"][0]["momentum_buffer"] = np.zeros(3, np.float32)
    bad["param_groups"][0]["lr"] = 5.0
    with pytest.raises(ValueError, match=r"parameter 0 has shape \(3,\).*shape \(2,\)"):
        opt.load_state_dict(bad)
    assert opt.param_groups[0]["lr"] == 0.1  # nothing was changed

    with pytest.raises(ValueError, match="1 param groups, this optimizer has 2"):
        opt.load_state_dict({"state": {}, "param_groups": good["param_groups"][:1]})
    bad = opt.state_dict()
    bad["param_groups"][1]["params"] = [1, 2]
    with pytest.raises(ValueError, match="group 1 has 2 parameters.*group 1 has 1"):
        opt.load_state_dict(bad)
    bad = opt.state_dict()
    bad["state"][7] = bad["state"][0]
    with pytest.raises(ValueError, match="parameter 7, which is in none"):
        opt.load_state_dict(bad)
    bad = opt.state_dict()
    bad["param_groups"][0]["momentum"] = -1.0
    with pytest.raises(ValueError, match=r"saved param group 0.*momentum=-1\.0"):
        opt.load_state_dict(bad)
    with pytest.raises(ValueError, match="keys 'state' and 'param_groups'"):
        opt.load_state_dict({"state": {}})


def test_flatten_state_keeps_types():
    sd = {
        "a": 0.1, "b": 3, "c": True, "d": None, "e": [1, 2], "f": (0.5,),
        "g": {0: np.arange(3, dtype=np.float32), 5: {"x": "y"}}, "h": np.float32(0.25),
    }
    flat = flatten_state(sd, "p")
    assert all(isinstance(v, np.ndarray) for v in flat.values())
    assert flat["p.g.0"].dtype == np.float32
    back = unflatten_state(flat, "p")
    assert back["a"] == 0.1 and type(back["b"]) is int and back["c"] is True and back["d"] is None
    assert back["e"] == [1, 2] and back["f"] == [0.5] and back["h"] == 0.25
    assert set(back["g"]) == {0, 5} and back["g"][5] == {"x": "y"}
    np.testing.assert_array_equal(back["g"][0], np.arange(3, dtype=np.float32))
    with pytest.raises(TypeError, match="cannot store object"):
        flatten_state({"x": object()}, "p")
    with pytest.raises(KeyError, match="no entry 'q'"):
        unflatten_state(flat, "q")


# ----------------------------------------------------------------------------- schedules

def test_paper_schedule_boundaries():
    opt = SGD([Param([1.0])], lr=123.0)
    s = paper_schedule(opt)
    assert opt.param_groups[0]["lr"] == 0.1  # constructing sets the lr of iteration 0
    assert s.milestones == [32000, 48000] and s.total_iterations == 64000
    assert s.lr_at(0) == 0.1 and s.lr_at(31999) == 0.1
    assert s.lr_at(32000) == pytest.approx(0.01, rel=1e-12)
    assert s.lr_at(47999) == pytest.approx(0.01, rel=1e-12)
    assert s.lr_at(48000) == pytest.approx(0.001, rel=1e-12)
    assert s.lr_at(63999) == pytest.approx(0.001, rel=1e-12)
    s.step(32000)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01, rel=1e-12)
    # Shorter runs keep the shape: milestones at 1/2 and 3/4.
    assert paper_schedule(None, total_iterations=1000).milestones == [500, 750]


def test_step_without_argument_counts_iterations():
    opt = SGD([{"params": [Param([1.0])]}, {"params": [Param([2.0])], "lr": 7.0}], lr=1.0)
    s = MultiStepLR(opt, 1.0, [2, 4], gamma=0.5)  # sets every group's lr
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(5):
        s.step()
        lrs.append(opt.param_groups[1]["lr"])
    assert lrs == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    assert s.last_iteration == 5 and s.get_last_lr() == [0.25, 0.25]


def test_epoch_milestones_are_converted_to_iterations():
    s = MultiStepLR.from_epochs(None, 0.1, [2, 3], iterations_per_epoch=10, total_epochs=4)
    assert s.milestones == [20, 30] and s.total_iterations == 40
    assert s.lr_at(19) == 0.1 and s.lr_at(20) == pytest.approx(0.01, rel=1e-12)
    assert s.lr_at(29) == pytest.approx(0.01, rel=1e-12)
    assert s.lr_at(30) == pytest.approx(0.001, rel=1e-12)


def test_schedule_validation():
    with pytest.raises(ValueError, match="strictly increasing"):
        MultiStepLR(None, 0.1, [48000, 32000])
    with pytest.raises(ValueError, match="milestone 48000 is not before total_iterations=100"):
        MultiStepLR(None, 0.1, [32000, 48000], total_iterations=100)
    with pytest.raises(ValueError, match=r"base_lr=-0\.1"):
        MultiStepLR(None, -0.1, [10])
    with pytest.raises(TypeError, match="milestone \\(epochs\\) must be an integer"):
        MultiStepLR.from_epochs(None, 0.1, [1.5], iterations_per_epoch=10)
    with pytest.raises(ValueError, match="iteration=-1"):
        MultiStepLR(None, 0.1, [10]).lr_at(-1)


def test_warmup_switches_only_when_error_drops_below_threshold():
    opt = SGD([Param([1.0])], lr=0.1)
    s = paper_schedule(opt, warmup=True)
    assert isinstance(s, WarmupUntil) and s.total_iterations == 64000
    assert opt.param_groups[0]["lr"] == 0.01
    for it, err in enumerate([0.9, 0.85, 0.8]):  # 0.8 is not *below* 80 %
        s.step(it)
        assert opt.param_groups[0]["lr"] == 0.01
        assert s.observe_train_error(err) is False
    s.step(3)
    assert opt.param_groups[0]["lr"] == 0.01
    assert s.observe_train_error(0.79) is True and s.warmup_end_iteration == 3
    assert opt.param_groups[0]["lr"] == 0.01  # iteration 3 itself was a warm-up iteration
    s.step(4)
    assert opt.param_groups[0]["lr"] == 0.1
    s.observe_train_error(0.95)  # the warm-up never restarts
    s.step(5)
    assert opt.param_groups[0]["lr"] == 0.1
    # The wrapped schedule's milestones stay absolute.
    assert s.lr_at(31999) == 0.1 and s.lr_at(32000) == pytest.approx(0.01, rel=1e-12)
    assert s.lr_at(3) == 0.01
    with pytest.raises(ValueError, match="a percentage"):
        s.observe_train_error(80.0)


def test_warmup_pytorch_style_stepping_applies_the_switch_at_once():
    opt = SGD([Param([1.0])], lr=0.1)
    s = WarmupUntil(MultiStepLR(opt, 0.1, [100]))
    s.step()                      # after opt.step() of iteration 0: lr of iteration 1 is set
    s.observe_train_error(0.5, iteration=0)
    assert opt.param_groups[0]["lr"] == 0.1


def test_schedule_state_round_trip(tmp_path):
    opt = SGD([Param([1.0])], lr=0.1)
    s = paper_schedule(opt, warmup=True)
    s.step(0)
    s.observe_train_error(0.5)
    s.step(40000)
    path = tmp_path / "sched.npz"
    np.savez(path, **flatten_state(s.state_dict(), "schedule"))

    opt2 = SGD([Param([1.0])], lr=0.5)
    s2 = paper_schedule(opt2, warmup=True)
    assert not s2.warmup_done
    with np.load(path) as f:
        s2.load_state_dict(unflatten_state(f, "schedule"))
    assert s2.warmup_done and s2.warmup_end_iteration == 0 and s2.last_iteration == 40000
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"] == pytest.approx(0.01, rel=1e-12)
    for it in (0, 1, 31999, 32000, 48000, 63999):
        assert s2.lr_at(it) == s.lr_at(it)
    s.step(); s2.step()
    assert s2.last_iteration == s.last_iteration == 40001

    # Still warming up when saved: still warming up when resumed.
    s3 = paper_schedule(None, warmup=True)
    s3.step(10)
    s4 = paper_schedule(None, warmup=True)
    s4.load_state_dict(unflatten_state(flatten_state(s3.state_dict(), "s"), "s"))
    assert not s4.warmup_done and s4.lr_at(10) == 0.01 and s4.last_iteration == 10
    bad = s3.state_dict()
    bad["warmup_done"] = True
    with pytest.raises(ValueError, match="contradicts"):
        s4.load_state_dict(bad)


# ----------------------------------------------------------------------------- other backends

def test_with_minires_tensor():
    engine = pytest.importorskip("minires.engine")
    w = engine.Tensor(np.array([1.0, -2.0], np.float32), requires_grad=True)
    opt = SGD([w], lr=0.5, momentum=0.5)
    for g in (G1, G2):
        w.grad = g.copy()
        opt.step()
    np.testing.assert_array_equal(w.data, f32(1.125, -3.1875))  # as in test_momentum


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs CuPy and a CUDA device")
def test_gpu_matches_cpu_and_checkpoints_move_devices():
    import cupy as cp

    rng = np.random.default_rng(2)
    start = rng.standard_normal((3, 4)).astype(np.float32)
    grads = [rng.standard_normal((3, 4)).astype(np.float32) for _ in range(4)]
    cpu, gpu = Param(start), Param(start)
    gpu.data = cp.asarray(start)
    hyper = dict(lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=True)
    opt_cpu, opt_gpu = SGD([cpu], **hyper), SGD([gpu], **hyper)
    for g in grads[:2]:
        cpu.grad, gpu.grad = g, cp.asarray(g)
        opt_cpu.step()
        opt_gpu.step()
    assert isinstance(opt_gpu.state[0]["momentum_buffer"], cp.ndarray)
    assert gpu.data.dtype == cp.float32
    np.testing.assert_allclose(cp.asnumpy(gpu.data), cpu.data, rtol=1e-6, atol=1e-7)
    # A GPU checkpoint loads onto a GPU parameter from NumPy arrays.
    sd = opt_gpu.state_dict()
    assert isinstance(sd["state"][0]["momentum_buffer"], np.ndarray)
    gpu2 = Param(start)
    gpu2.data = gpu.data.copy()
    opt_gpu2 = SGD([gpu2], **hyper)
    opt_gpu2.load_state_dict(sd)
    assert isinstance(opt_gpu2.state[0]["momentum_buffer"], cp.ndarray)
    gpu.grad = gpu2.grad = cp.asarray(grads[2])
    opt_gpu.step()
    opt_gpu2.step()
    cp.testing.assert_array_equal(gpu.data, gpu2.data)
    # A CPU gradient on a GPU parameter is refused, naming the devices.
    gpu.grad = grads[3]
    with pytest.raises(ValueError, match="device gpu.*device cpu"):
        opt_gpu.step()


def test_matches_torch():
    """Optional: agree with torch.optim.SGD (runs only where PyTorch is installed)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    start = rng.standard_normal((4, 5)).astype(np.float32)
    grads = [rng.standard_normal((4, 5)).astype(np.float32) for _ in range(6)]
    configs = [
        dict(lr=0.1),
        dict(lr=0.1, momentum=0.9),
        dict(lr=0.1, momentum=0.9, dampening=0.3),
        dict(lr=0.1, momentum=0.9, weight_decay=1e-2),
        dict(lr=0.1, momentum=0.9, weight_decay=1e-2, nesterov=True),
    ]
    for hyper in configs:
        p = Param(start)
        t = torch.tensor(start, requires_grad=True)
        ours, theirs = SGD([p], **hyper), torch.optim.SGD([t], foreach=False, **hyper)
        for k, g in enumerate(grads):
            if k == 3:  # a schedule changes lr midway
                ours.param_groups[0]["lr"] = theirs.param_groups[0]["lr"] = 0.01
            p.grad = g
            t.grad = torch.from_numpy(g.copy())
            ours.step()
            theirs.step()
        np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=1e-5, atol=1e-5, err_msg=str(hyper))


# ----------------------------------------------------------------------------- the loop's hooks

def test_observe_is_a_no_op_except_for_the_warm_up():
    plain = MultiStepLR(None, 0.1, [10])
    plain.observe(0.0)
    assert plain.lr_at(11) == pytest.approx(0.01)
    warm = WarmupUntil(MultiStepLR(None, 0.1, [10]))
    warm.step(3)
    warm.observe(0.9)                      # above the 80 % threshold: still warming up
    assert warm.lr_at(5) == 0.01 and not warm.warmup_done
    warm.observe(0.7)                      # below it: the warm-up ends after iteration 3
    assert warm.warmup_end_iteration == 3 and warm.lr_at(4) == 0.1


def test_resume_from_keeps_the_new_budget_and_the_saved_warm_up_end():
    saved = WarmupUntil(MultiStepLR(None, 0.1, [10]))
    saved.observe_train_error(0.5, iteration=2)
    plain = MultiStepLR(None, 0.1, [40])   # a longer resumed run: its own milestones
    plain.resume_from(MultiStepLR(None, 0.1, [10]).state_dict())
    assert plain.milestones == [40]
    warm = WarmupUntil(MultiStepLR(None, 0.1, [40]))
    warm.resume_from(saved.state_dict())
    assert warm.warmup_end_iteration == 2 and warm.schedule.milestones == [40]
