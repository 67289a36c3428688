"""The CPU fast paths of the ops, beside their GPU counterparts in ``minires/gpu_kernels.py``.

Each op in ``minires/ops`` is the plain whole-batch math (its ``forward``/``backward``, the
reference). On NumPy data the engine calls the op's ``forward_cpu``/``backward_cpu`` instead,
and where speed pays those are a one-line call into a module here:

* ``chunks.py``: the batch in cache-sized chunks, run on the worker threads (``minires.threads``);
* ``conv.py``: im2col convolution chunk by chunk, channels-last, on the threads;
* ``winograd.py``: Winograd's F(2x2, 3x3) and F(4x4, 3x3), the other algorithms for 3x3 stride-1 convs;
* ``norm.py``: batch norm's passes, on blocks of channels or of channels-last pixels;
* ``elementwise.py``: ReLU and the residual add, each thread on a stretch of memory.

The contract: array in, array out. A kernel gets every setting as an argument and returns what
the op saves; it never reads or writes the op. Each is tested against the op's reference over
drawn shapes, both memory layouts and 1 and 3 threads (tests/test_fast_paths.py), and each
trick carries its measured gain. ``minires.use_reference()`` (or ``MINIRES_REFERENCE=1``) runs
the reference alone.
"""
