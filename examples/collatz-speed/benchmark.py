"""The fixed harness of the collatz-speed target: do not edit (the loop refuses any change to it).

Checks collatz.stopping_times against reference.json (the sha256 of each right answer), then
times stopping_times(TIMED_N) REPEATS times, each in a fresh process (so nothing computed by an
earlier call or at import is reused), checking every timed answer too. Prints the summary block
the loop reads, the best time as the metric:

    ---
    seconds: 0.412345
    median_seconds: 0.431200

A wrong answer prints one line naming the case and exits 1: fast and wrong is a crash.
"""

import hashlib
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

TIMED_N = 100_000  # the size that is timed
REPEATS = 3  # best of 3: the minimum is what the code costs, without the box's other load
REFERENCE = Path(__file__).with_name("reference.json")


def fingerprint(answer: object, n: int) -> tuple[str, int]:
    """The sha256 and sum of an answer for 1..n; exits 1 when it is not n integers."""
    values = np.asarray(answer)
    if values.shape != (n,) or not np.issubdtype(values.dtype, np.integer):
        fail(f"stopping_times({n}) returned shape {values.shape} of {values.dtype}, "
             f"expected ({n},) of integers")
    exact = values.astype(np.int64)
    return hashlib.sha256(exact.tobytes()).hexdigest(), int(exact.sum())


def check(n: int, digest: str, total: int, reference: dict) -> None:
    expected = reference[str(n)]
    if digest != expected["sha256"]:
        fail(f"stopping_times({n}) is wrong: its sum is {total}, the reference's "
             f"{expected['sum']} (sha256 differs)")


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def time_once() -> None:
    """One timed call in this process, printed as JSON: import collatz, then run it."""
    start = time.perf_counter()
    import collatz

    answer = collatz.stopping_times(TIMED_N)
    seconds = time.perf_counter() - start
    digest, total = fingerprint(answer, TIMED_N)
    print(json.dumps({"seconds": seconds, "sha256": digest, "sum": total}))


def timed_run(reference: dict) -> float:
    """The seconds of one checked call of stopping_times(TIMED_N), in a fresh process."""
    proc = subprocess.run([sys.executable, __file__, "--time-once"], capture_output=True,
                          text=True, cwd=Path(__file__).parent)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        sys.exit(proc.returncode)
    result = json.loads(proc.stdout.splitlines()[-1])
    check(TIMED_N, result["sha256"], result["sum"], reference)
    return result["seconds"]


def main() -> None:
    reference = json.loads(REFERENCE.read_text(encoding="utf-8"))  # before collatz runs at all
    import collatz

    for n in sorted(int(key) for key in reference if int(key) != TIMED_N):
        check(n, *fingerprint(collatz.stopping_times(n), n), reference)
    times = [timed_run(reference) for _ in range(REPEATS)]
    print("---")
    print(f"seconds: {min(times):.6f}")
    print(f"median_seconds: {statistics.median(times):.6f}")


if __name__ == "__main__":
    time_once() if sys.argv[1:] == ["--time-once"] else main()
