"""The batch in chunks for the worker threads: what the two conv kernels share.

Why chunks: the column matrix of a conv is kh*kw times its input, 75 MB for a 16-channel 32x32
conv at batch 128. Built for the whole batch it goes out to main memory and back, and an
allocation that large comes fresh from the OS (page faults) on every call. Chunks of about
``conv.CHUNK_BYTES`` of columns stay in cache and reuse their memory: forward + backward 1.7x
faster than the whole batch at once on the 16-channel 32x32 shape, 1.5x at 32 channels 16x16,
1.04x at 64 channels 8x8 (benchmarks/README.md). Their size is measured inside whole training
steps, where the conv's input arrives from main memory, not in a loop over one conv, where it
stays in cache (``benchmarks/size_sweep.py``).

Why threads: the chunks are independent, so ``get_num_threads()`` worker threads each take whole
chunks end to end (pad, im2col, matmul, col2im) with BLAS at one thread; NumPy releases the GIL
inside all four, so the copies, single-threaded before, use every core too.
"""
from ..threads import get_num_threads


def batch_chunks(n, bytes_per_image, chunk_bytes, min_images=1):
    """Split a batch of ``n`` images into slices of about ``chunk_bytes`` of work memory each,
    ``bytes_per_image`` being one image's share (its columns, for im2col), and of at least
    ``min_images`` images where the batch allows one such slice per thread.

    The number of chunks is rounded up towards a multiple of the thread count (fewer when images
    run out), so the worker threads get about equal shares. An empty batch is one empty chunk.
    """
    if n == 0:
        return [slice(0, 0)]
    threads = get_num_threads()
    chunks = -(-n * bytes_per_image // chunk_bytes)
    chunks = min(chunks, max(1, n // min_images))  # fewer, larger chunks where images are small
    chunks = min(n, -(-chunks // threads) * threads)
    step = -(-n // chunks)
    return [slice(a, min(a + step, n)) for a in range(0, n, step)]
