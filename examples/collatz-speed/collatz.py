"""Collatz stopping times with NumPy: the one file agents edit for the collatz-speed target.

benchmark.py (fixed) checks `stopping_times` against reference answers, then times it: faster
is better, a wrong answer is a crash. The top-level UPPER_CASE constants are the knobs the sweep
agent moves: floats are scaled (x1.19 to x4 a step), *_FRAC values are shifted within [0, 1].
"""

import numpy as np

BLOCK_SIZE = 512.0  # numbers iterated together; a float so that the sweep scales it
COMPACT_FRAC = 1.0  # drop the finished numbers from a block once this share of it has finished
# (1.0: never, every number is carried to the block's last step; 0.0: after every step)


def stopping_times(n: int) -> np.ndarray:
    """How many Collatz steps (x -> x / 2 when even, 3x + 1 when odd) take each of 1..n down to
    1, as an integer array of length n (entry i is for the number i + 1)."""
    steps = np.zeros(n, dtype=np.int64)
    block = max(1, int(BLOCK_SIZE))
    for first in range(1, n + 1, block):
        iterate(np.arange(first, min(first + block, n + 1), dtype=np.int64), steps)
    return steps


def iterate(numbers: np.ndarray, steps: np.ndarray) -> None:
    """Run one block of numbers down to 1 in lock step, writing each one's count into steps."""
    x, where, taken = numbers.copy(), numbers - 1, np.zeros(len(numbers), dtype=np.int64)
    while True:
        done = x == 1
        finished = done.mean()
        if finished == 1:
            break
        if 0 < finished >= COMPACT_FRAC:
            steps[where[done]] = taken[done]
            left = ~done
            x, where, taken, done = x[left], where[left], taken[left], done[left]
        x = np.where(done, 1, np.where(x & 1, 3 * x + 1, x >> 1))
        taken += ~done
    steps[where] = taken
