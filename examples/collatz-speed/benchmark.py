"""The fixed harness of the collatz-speed target: do not edit (the loop refuses any change to it).

Checks collatz.stopping_times against reference.json (the sha256 of each right answer), then
times stopping_times(TIMED_N) REPEATS times, each in a fresh process (so nothing computed by an
earlier call or at import is reused), checking every timed answer too. Prints the summary block
the loop reads, the best CPU time as the metric and the best wall time beside it:

    ---
    cpu_seconds: 0.536120
    wall_seconds: 1.086412

CPU time, not wall time, is the metric because it is what the code costs whatever else the
machine runs: on a busy 2-core box the wall time of the same call varied by 25 %, its CPU time by
2 %. It counts every thread of the process and the processes it waits for, so parallelism does
not hide work.

A wrong answer prints one line naming the case and exits 1: fast and wrong is a crash.
"""

import hashlib
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

TIMED_N = 100_000  # the size that is timed
REPEATS = 3  # best of 3: the minimum is the call without cache misses from others
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
    """Exits 1 unless the answer for 1..n is the reference's, byte for byte."""
    expected = reference[str(n)]
    if digest != expected["sha256"]:
        fail(f"stopping_times({n}) is wrong: its sum is {total}, the reference's "
             f"{expected['sum']} (sha256 differs)")


def fail(message: str) -> None:
    """One line on stderr, exit 1: the loop records a crash and shows the agent this line."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def cpu_seconds() -> float:
    """CPU seconds (user and system) of this process and of the children it has waited for."""
    return sum(usage.ru_utime + usage.ru_stime for usage in
               (resource.getrusage(resource.RUSAGE_SELF),
                resource.getrusage(resource.RUSAGE_CHILDREN)))


def time_once() -> None:
    """One timed call in this process, printed as JSON: import collatz, then run it."""
    cpu, wall = cpu_seconds(), time.perf_counter()
    import collatz

    answer = collatz.stopping_times(TIMED_N)
    cpu, wall = cpu_seconds() - cpu, time.perf_counter() - wall
    digest, total = fingerprint(answer, TIMED_N)
    print(json.dumps({"cpu_seconds": cpu, "wall_seconds": wall, "sha256": digest,
                      "sum": total}))


def timed_run(reference: dict) -> dict[str, float]:
    """The CPU and wall seconds of one checked call of stopping_times(TIMED_N), in a fresh
    process."""
    proc = subprocess.run([sys.executable, __file__, "--time-once"], capture_output=True,
                          text=True, cwd=Path(__file__).parent)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        sys.exit(proc.returncode)
    result = json.loads(proc.stdout.splitlines()[-1])
    check(TIMED_N, result["sha256"], result["sum"], reference)
    return result


def main() -> None:
    reference = json.loads(REFERENCE.read_text(encoding="utf-8"))  # before collatz runs at all
    import collatz

    for n in sorted(int(key) for key in reference if int(key) != TIMED_N):
        check(n, *fingerprint(collatz.stopping_times(n), n), reference)
    runs = [timed_run(reference) for _ in range(REPEATS)]
    print("---")
    print(f"cpu_seconds: {min(run['cpu_seconds'] for run in runs):.6f}")
    print(f"wall_seconds: {min(run['wall_seconds'] for run in runs):.6f}")


if __name__ == "__main__":
    time_once() if sys.argv[1:] == ["--time-once"] else main()
