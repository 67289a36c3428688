"""A CIFAR-shaped toy dataset for smoke runs and tests: no files, no download."""
import numpy as np

from .cifar10 import CIFAR10_CLASSES, IMAGE_SHAPE


def synthetic_cifar(n_train=2000, n_test=500, seed=0, *, noise_std=50.0):
    """A CIFAR-shaped toy dataset for smoke runs and tests: no files needed.

    Returns ``(x_train, y_train, x_test, y_test)`` like :func:`load_cifar10` (uint8
    ``(N,3,32,32)``, int64 labels, classes balanced). Each class has a prototype: a 4x4
    grid of random colours blown up to 32x32 and mirrored left-right (so horizontal flips
    keep the class); an image is its class prototype plus Gaussian noise of std
    ``noise_std`` (in 0..255 units), rounded and clipped. Averaged over 8x8 blocks the
    noise is small, so a network learns the labels within a few hundred steps.
    """
    for name, n in (("n_train", n_train), ("n_test", n_test)):
        if not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"synthetic_cifar: {name} must be a non-negative int, got {n!r}")
    rng = np.random.default_rng(seed)
    classes = len(CIFAR10_CLASSES)
    half = rng.uniform(48, 208, size=(classes, 3, 4, 2)).astype(np.float32)
    grid = np.concatenate([half, half[..., ::-1]], axis=-1)           # (10, 3, 4, 4)
    prototypes = grid.repeat(8, axis=2).repeat(8, axis=3)             # (10, 3, 32, 32)

    def sample(n):
        y = rng.permutation(np.arange(n) % classes).astype(np.int64)
        noise = rng.standard_normal((n,) + IMAGE_SHAPE, dtype=np.float32) * np.float32(noise_std)
        x = np.clip(np.rint(prototypes[y] + noise), 0, 255).astype(np.uint8)
        return x, y

    x_train, y_train = sample(n_train)
    x_test, y_test = sample(n_test)
    return x_train, y_train, x_test, y_test
