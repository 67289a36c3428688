"""Which convolution algorithm runs fastest *on this machine*, measured the first time a shape is met.

As cuDNN's benchmark mode and oneDNN's primitive selection do: the fastest conv algorithm depends
on the CPU, its caches and the BLAS, not only on the shape. A rule tuned on an AMD EPYC (Winograd
1.5x faster than im2col on a ResNet-20 step) does not carry over: on a 2-core Intel Xeon, im2col
was the faster kernel for every conv at 2 threads (benchmarks/README.md, "Round four"). So
``conv2d(..., algorithm="auto")`` asks :func:`choose`, which times every candidate kernel once per

    (direction, per-image input shape, weight shape, stride, padding, dtype, thread count)

where the direction is "forward", "backward" (dx and dW: every pair of algorithms, since one
kernel doing both shares work that two kernels repeat), or "input_grad" (dx) or "weight_grad"
(dW) alone when only one is needed (the first conv needs no dx), and keeps the winner; in a
near-tie (within ``MARGIN``) it keeps the fixed rule's choice. The batch size is not in the key: every CPU kernel works on cache-sized chunks of the batch, so
its time per image no longer depends on the batch once the batch fills a chunk per thread (and a
run's last, smaller batch then reuses the full batches' choice).

The winners persist in a small JSON file in the user cache (:func:`cache_path`), one table per
machine (:func:`machine`: CPU model, core count, NumPy and BLAS versions), so timing happens once
per machine. The file is replaced atomically under a lock: concurrent runs never corrupt it.
``python -m minires.autotune`` prints it, ``--clear`` deletes this machine's table.

Reproducible runs: inside ``with pinned(table):`` the choices in ``table`` are used as they are
(no cache, no timing) and every new decision is added to it. A training run records that table in
its config.json and checkpoints, and ``--resume`` pins it again; in a ``--distributed`` run rank 0
decides and broadcasts its table, and the other ranks decide nothing (``decide=False``).

Timing is on unless ``MINIRES_AUTOTUNE=0`` (the tests set it, for determinism) or
``minires.ops.conv.use_algorithm(autotune=False)``; off, "auto" follows the fixed rule of
``minires.ops.conv.fixed_rule``.
"""
import contextlib
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np

DIRECTIONS = ("forward", "backward", "input_grad", "weight_grad")
# The cache file's format. Bump it when the keys change meaning or a kernel's speed changes
# (2: backward timed as (dx, dW) pairs; F(4x4) without float64 temporaries; 3: the CPU kernels
# channels-last, im2col's dx as a convolution; 4: im2col in 2 MB chunks, dW as its transpose, and
# near-ties kept for the fixed rule): older tables are re-timed.
FORMAT = 4
REPEATS = 2  # timed calls per candidate after one untimed warm-up; the faster of the two counts
# Another candidate replaces the fixed rule's choice only when timed at least this much faster:
# two timed calls cannot rank a near-tie. At 16->16 channels 32 px, 1 thread, the backward took
# 28.2-29.8 ms by im2col and 29.0-30.0 ms by F(2x2) over 12 fresh timings, and F(2x2) won one of
# them; that choice cost 4 % (benchmarks/README.md, "Round six").
MARGIN = 0.03

_enabled = None   # None: read MINIRES_AUTOTUNE at first use; else set by set_enabled
_decided = {}     # key -> algorithm, decided in this process (from the cache file or timed)
_pins = []        # the stack of pinned tables (innermost last): [(table, decide)]
_unwritable = False  # the cache file could not be written (warned once): decisions stay in this process
_warned_unreadable = set()  # cache files already reported as unreadable


def _enabled_from_environment():
    value = os.environ.get("MINIRES_AUTOTUNE", "1").strip()
    if value not in ("0", "1", ""):
        raise ValueError(f"MINIRES_AUTOTUNE must be 1 (time the conv algorithms) or 0 (fixed rule), got {value!r}")
    return value != "0"


def is_enabled():
    """Whether "auto" times the candidates (else it follows the fixed rule)."""
    global _enabled
    if _enabled is None:
        _enabled = _enabled_from_environment()
    return _enabled


def set_enabled(enabled):
    """Called by ``minires.ops.conv.use_algorithm(autotune=...)``, the one public switch."""
    global _enabled
    if not isinstance(enabled, bool):
        raise TypeError(f"use_algorithm: autotune must be True or False, got {enabled!r}")
    _enabled = enabled


def key(direction, x_shape, w_shape, stride, padding, dtype, threads):
    """'forward 16x32x32 w16x16x3x3 s1x1 p1x1 float32 t2': the batch size is left out (see above)."""
    dims = lambda t: "x".join(str(int(v)) for v in t)  # noqa: E731
    return (f"{direction} {dims(x_shape[1:])} w{dims(w_shape)} s{dims(stride)} p{dims(padding)} "
            f"{np.dtype(dtype).name} t{threads}")


# ----------------------------------------------------------------------------- deciding

@contextlib.contextmanager
def pinned(table=None, decide=True):
    """Use the choices in ``table`` (a dict key -> algorithm) as they are, and add each new
    decision to it; yields the table. ``decide=False``: a key not in the table gets the fixed
    rule, untimed (a distributed run's ranks other than 0, which follow rank 0's table)."""
    table = {} if table is None else table
    _pins.append((table, decide))
    try:
        yield table
    finally:
        _pins.pop()


def choose(k, candidates, rule):
    """The algorithm for key ``k``: one of ``candidates`` (a dict name -> a callable running that
    kernel once), or ``rule`` (the fixed rule's choice) when timing is off.

    Order: the innermost pinned table; then this process's decisions and the cache file; then
    timing every candidate (when enabled), whose winner is saved to the cache file.
    """
    table, decide = _pins[-1] if _pins else (None, True)
    if table is not None and k in table:
        if table[k] not in candidates:
            raise ValueError(f"conv2d: the recorded algorithm {table[k]!r} for {k!r} is not one of "
                             f"{sorted(candidates)} (a run recorded by another version of minires?)")
        return table[k]
    if len(candidates) == 1:
        choice = next(iter(candidates))
    elif not decide or not is_enabled():
        choice = rule
    else:
        choice = _decided.get(k) or _cached(k, candidates) or _time_and_save(k, candidates, rule)
        _decided[k] = choice
    if table is not None:
        table[k] = choice
    return choice


def _cached(k, candidates):
    entry = _read_cache().get(machine_id(), {}).get("choices", {}).get(k)
    return entry["algorithm"] if entry and entry.get("algorithm") in candidates else None


def _time_and_save(k, candidates, rule):
    """Time the candidates and take the fastest, or ``rule`` unless the fastest beats it by MARGIN;
    keep the choice in the cache file when it can be written (a read-only or full disk costs only
    the cache: this process keeps its decisions, with one warning)."""
    global _unwritable
    times = {name: measure(fn) for name, fn in candidates.items()}
    best = min(times, key=times.get)
    if rule in times and times[best] > (1 - MARGIN) * times[rule]:
        best = rule  # a near-tie: keep the rule's choice
    if not _unwritable:
        try:
            _update_cache(lambda mine: mine["choices"].__setitem__(
                k, {"algorithm": best, "ms": {name: round(1e3 * t, 3) for name, t in times.items()}}))
        except OSError as e:
            _unwritable = True
            print(f"minires.autotune: cannot write the cache {cache_path()} ({e}); the conv algorithms are "
                  "timed again in every new process (set MINIRES_AUTOTUNE_CACHE to a writable file)", file=sys.stderr)
    return best


def measure(fn, repeats=REPEATS):
    """Seconds of one call of ``fn``: the fastest of ``repeats`` calls after one untimed warm-up
    (the warm-up pays for first-touch memory and BLAS's thread start)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


# ----------------------------------------------------------------------------- the machine

def cpu_model():
    """The CPU's model name ('Intel(R) Xeon(R) Processor', 'AMD EPYC 7B13'), as the OS tells it."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def blas_description():
    """'openblas 0.3.31 (Haswell kernel)' from threadpoolctl when installed, else NumPy's build config."""
    try:
        from threadpoolctl import threadpool_info
        pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
        if pools:
            return "; ".join(f"{p.get('internal_api')} {p.get('version')} ({p.get('architecture')} kernel)"
                             for p in pools)
    except ImportError:
        pass
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # numpy's build config is informative only; its layout has changed before
        return "unknown BLAS"


def machine():
    """What the choices depend on besides the shape: the cache's key for this machine."""
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "numpy": np.__version__, "blas": blas_description()}


def machine_id():
    m = machine()
    return f"{m['cpu']} | {m['cores']} cores | numpy {m['numpy']} | {m['blas']}"


# ----------------------------------------------------------------------------- the cache file

def cache_path():
    """``$MINIRES_AUTOTUNE_CACHE`` when set, else ``autotune.json`` in the user cache
    (``$XDG_CACHE_HOME/minires``, else ``~/.cache/minires``), created at the first timing."""
    if os.environ.get("MINIRES_AUTOTUNE_CACHE"):
        return os.environ["MINIRES_AUTOTUNE_CACHE"]
    from ..data.find import cache_dir
    return str(cache_dir() / "autotune.json")


def _read_cache():
    """The file's machines table ({} when there is no file, or one that is not ours: it is then
    replaced at the next write, with a warning)."""
    path = cache_path()
    try:
        with open(path) as f:
            data = json.load(f)
        return data["machines"] if data.get("version") == FORMAT else {}
    except (FileNotFoundError, NotADirectoryError):
        return {}
    except (OSError, ValueError, KeyError, AttributeError) as e:
        if path not in _warned_unreadable:  # once per file, not once per conv shape
            _warned_unreadable.add(path)
            print(f"minires.autotune: ignoring the unreadable cache {path} ({e}); it will be rewritten",
                  file=sys.stderr)
        return {}


@contextlib.contextmanager
def _locked(path):
    """An exclusive lock on ``path + '.lock'`` while a writer reads, merges and replaces the file
    (so two runs that time at once both keep their entries); no lock where fcntl is missing."""
    try:
        import fcntl
    except ImportError:  # Windows: the replace below is still atomic, an entry may be lost
        yield
        return
    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _update_cache(change):
    """Apply ``change`` to this machine's entry and replace the file atomically (write a
    temporary file beside it, then ``os.replace``): readers see the old file or the new one."""
    path = cache_path()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with _locked(path):
        machines = _read_cache()
        mine = machines.setdefault(machine_id(), {"machine": machine(), "choices": {}})
        change(mine)
        if not mine["choices"]:
            del machines[machine_id()]
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".autotune-", suffix=".json")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump({"version": FORMAT, "machines": machines}, f, indent=1, sort_keys=True)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise


def clear():
    """Forget this machine's choices (the file's and this process's); returns how many there were."""
    _decided.clear()
    n = len(_read_cache().get(machine_id(), {}).get("choices", {}))
    if n:
        _update_cache(lambda mine: mine["choices"].clear())
    return n


def report():
    """The cache as text: this machine's choices with their times, then the other machines'."""
    machines = _read_cache()
    mine = machines.get(machine_id(), {}).get("choices", {})
    lines = [f"autotune cache: {cache_path()}", f"this machine: {machine_id()}"]
    if not mine:
        lines.append("  no choices yet (they are timed the first time a training run or conv2d(..., "
                     "algorithm='auto') meets a shape)")
    for k in sorted(mine):
        times = ", ".join(f"{name} {ms:g} ms" for name, ms in sorted(mine[k]["ms"].items(), key=lambda kv: kv[1]))
        lines.append(f"  {k:<52} -> {mine[k]['algorithm']:<9} ({times})")
    others = [m for m in machines if m != machine_id()]
    if others:
        lines.append(f"other machines in the file: {len(others)} ({'; '.join(others)})")
    return "\n".join(lines)
