"""Deterministic weights from a key name and an index, reproducible bit for bit in Rust.

Committing the weights of a torchvision ResNet-50 (100 MB) is out of the question; committing the
rule that made them is not. Each value comes from a counter-based hash (FNV-1a of the key, then
SplitMix64 of key hash + element index), mapped to [0, 1) with 24 bits, so f64 arithmetic and
the final cast to f32 are exact and identical in numpy and in Rust (tests/golden_torchvision.rs
holds the twin of this file).
"""
import numpy as np

MASK = (1 << 64) - 1


def fnv1a(key: str) -> int:
    h = 0xCBF29CE484222325
    for b in key.encode():
        h = ((h ^ b) * 0x100000001B3) & MASK
    return h


def uniform(key: str, n: int) -> np.ndarray:
    """n values in [0, 1), multiples of 2^-24."""
    with np.errstate(over="ignore"):
        z = np.uint64(fnv1a(key)) + np.arange(n, dtype=np.uint64)
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(40)).astype(np.float64) / float(1 << 24)


def value(key: str, shape) -> np.ndarray:
    """The tensor `key` of `shape` as float32, by what kind of parameter its name says it is."""
    n = int(np.prod(shape)) if len(shape) else 1
    u = uniform(key, n)
    if key.endswith("running_var"):
        v = 0.5 + u
    elif key.endswith("running_mean") or key.endswith("bias"):
        v = 0.2 * (2.0 * u - 1.0)
    elif len(shape) == 1:  # a batch-norm weight
        v = 0.5 + 0.5 * u
    else:  # conv or linear weight: unit-variance-preserving uniform
        fan_in = int(np.prod(shape[1:]))
        v = (2.0 * u - 1.0) * np.sqrt(3.0 / fan_in)
    return v.astype(np.float32).reshape(shape)
