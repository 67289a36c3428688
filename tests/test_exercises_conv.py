"""Notebook 02's exercises (im2col with loops, im2col as a strided view): each check says "failed"
on planted wrong solutions, with the hint for that mistake (the contract: tests/test_exercises.py)."""
import pytest

from exercise_tools import grade
from minires.exercises.conv import check_im2col_loops, check_window_view

LOOPS = '''
def im2col_loops(padded, kh, kw, sh, sw, oh, ow):
    c, n = padded.shape[:2]
    cols = np.empty((c * kh * kw, n * oh * ow), dtype=padded.dtype)
    for ci in range(c):
        for i in range(kh):
            for j in range(kw):
                for ni in range(n):
                    for y in range(oh):
                        for x in range(ow):
                            cols[{row}, {column}] = padded[{channel}, ni, {at}]
    return cols
'''
RIGHT = dict(channel="ci", row="(ci * kh + i) * kw + j", column="(ni * oh + y) * ow + x", at="y * sh + i, x * sw + j")

WRONG_LOOPS = [  # (changes to the right loops, what the report must say)
    (dict(at="y * sh + j, x * sw + i"), "kernel offsets are transposed"),        # i and j swapped
    (dict(at="y + i, x + j"), "stride is missing"),
    (dict(column="(ni * ow + x) * oh + y"), "output pixels are transposed"),
    (dict(row="(i * kw + j) * c + ci"), "ordered (i, j, c)"),
    (dict(column="(y * ow + x) * n + ni"), "ordered (y, x, n)"),
    (dict(at="y * sh + kh - 1 - i, x * sw + kw - 1 - j"), "kernel is flipped"),   # convolution, not correlation
    (dict(channel="c - 1 - ci"), "rows ordered c, then i, then j"),                # channels reversed: generic hint
    (dict(at="y * sh + i + 1, x * sw + j"), "your code raised IndexError"),     # reads past the padding
    (dict(at="y * sw + i, x * sh + j"), "strides are swapped"),                  # sh with the columns
]


@pytest.mark.parametrize("change, says", WRONG_LOOPS)
def test_wrong_loops_fail_with_their_hint(change, says):
    result = grade(LOOPS.format(**{**RIGHT, **change}), "im2col_loops", check_im2col_loops)
    assert result.status == "failed", str(result)
    assert says in result.message, str(result)


def test_right_loops_pass():
    assert grade(LOOPS.format(**RIGHT), "im2col_loops", check_im2col_loops).passed


def test_loops_returning_the_wrong_shape_fail():
    source = LOOPS.format(**RIGHT).replace("return cols", "return cols.T")
    result = grade(source, "im2col_loops", check_im2col_loops)
    assert result.status == "failed" and "has shape" in result.message, str(result)


@pytest.mark.parametrize("ending, says", [
    ("", "im2col_loops returned None; it must return the column matrix"),      # forgot the return
    ("    return cols.tolist()\n", "im2col_loops returned a list of 9 items"),
    ("    return cols, cols.shape\n", "im2col_loops returned a tuple of 2 items"),
])
def test_loops_returning_no_array_are_told_what_they_returned(ending, says):
    source = LOOPS.format(**RIGHT).replace("    return cols\n", ending)
    result = grade(source, "im2col_loops", check_im2col_loops)
    assert result.status == "failed" and says in result.message, str(result)
    assert "your code raised" not in result.message, str(result)  # not a traceback from inside the check


VIEW = '''
def window_view(padded, kh, kw, sh, sw, oh, ow):
    s_c, s_n, s_h, s_w = padded.strides
    c, n = padded.shape[:2]
    return np.lib.stride_tricks.as_strided(padded, shape=(c, kh, kw, n, oh, ow), strides={strides})
'''

SLIDING = '''
def window_view(padded, kh, kw, sh, sw, oh, ow):
    w = np.lib.stride_tricks.sliding_window_view(padded, (kh, kw), axis=(2, 3))  # (C, N, Hp-kh+1, Wp-kw+1, kh, kw)
    return w[:, :, ::sh, ::sw][:, :, :oh, :ow].transpose(0, 4, 5, 1, 2, 3)
'''


@pytest.mark.parametrize("strides, says", [
    ("(s_c, s_w, s_h, s_n, s_h * sh, s_w * sw)", "kernel offsets are transposed"),
    ("(s_c, s_h, s_w, s_n, s_h, s_w)", "stride is missing"),
    ("(s_c, s_h * sh, s_w * sw, s_n, s_h, s_w)", "differs in"),   # kernel offsets and output pixels mixed up
    ("(s_c, s_h * kh, s_w * kw, s_n, s_h * sh, s_w * sw)", "outside padded's memory"),  # caught before reading
    ("(s_c, s_h, s_w, s_c, s_h * sh, s_w * sw)", "outside padded's memory"),            # n steps a channel
    ("(s_c, s_h, s_w, s_n, s_h * sw, s_w * sh)", "strides are swapped"),
])
def test_wrong_strides_fail(strides, says):
    result = grade(VIEW.format(strides=strides), "window_view", check_window_view)
    assert result.status == "failed", str(result)
    assert says in result.message, str(result)


def test_a_copy_is_not_a_view():
    """Right values, but copied: the exercise is the view, and the check says so."""
    source = SLIDING.replace("return w[", "return np.ascontiguousarray(w[").rstrip() + ")\n"
    result = grade(source, "window_view", check_window_view)
    assert result.status == "failed" and "is a copy" in result.message, str(result)


def test_sliding_window_view_solution_passes():
    assert grade(SLIDING, "window_view", check_window_view).passed
    right = VIEW.format(strides="(s_c, s_h, s_w, s_n, s_h * sh, s_w * sw)")
    assert grade(right, "window_view", check_window_view).passed


def test_a_view_function_returning_nothing_is_told_so():
    right = VIEW.format(strides="(s_c, s_h, s_w, s_n, s_h * sh, s_w * sw)")
    source = right.replace("    return np.lib", "    windows = np.lib")
    result = grade(source, "window_view", check_window_view)
    assert result.status == "failed", str(result)
    assert "window_view returned None; it must return a view of padded" in result.message, str(result)
    assert "without a return statement" in result.message, str(result)


def test_every_geometry_with_unequal_strides_has_unequal_sides_and_kernels():
    """Swapped strides, kernel sides or input sides all show only on such a geometry."""
    from minires.exercises.conv import CONFIGS
    unequal = [g for g in CONFIGS if g[6][0] != g[6][1]]
    assert len(unequal) >= 2 and all(h != w and kh != kw for _, _, h, w, kh, kw, _, _ in unequal)
