"""scripts/simulate-night.py: the night simulator runs, tells the rules apart on no-op edits, and a
seed is a promise of the same numbers."""

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "simulate-night.py"

# A small night in results.tsv form: a baseline, keeps and discards around the best of their time.
NIGHT = """commit\tval_bpb\tmemory_gb\tstatus\tdescription
baseline\t0.997900\t44.0\tkeep\tbaseline
a1\t0.986041\t43.9\tkeep\thalve batch
a2\t0.986600\t43.9\tdiscard\twarmup
a3\t0.000000\t0.0\tcrash\tbatch 131K
a4\t0.985800\t43.9\tkeep\twarmdown
a5\t0.985900\t43.9\tdiscard\tseed
a6\t0.989000\t43.9\tdiscard\tnarrow
a7\t0.985500\t43.9\tkeep\trope base
"""


def simulate(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    results = tmp_path / "results.tsv"
    results.write_text(NIGHT)
    return subprocess.run([sys.executable, str(SCRIPT), "--results", str(results), *args],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)


def rows(result: subprocess.CompletedProcess) -> dict[str, dict]:
    assert result.returncode == 0, result.stderr
    return {row["rule"].split()[0]: row for row in json.loads(result.stdout)["rows"]}


def test_help_names_the_calibration_and_the_seed():
    result = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for flag in ("--seed", "--within-std", "--offset-std", "--contention-std", "--drift-std",
                 "--noop-fraction", "--workers", "--json", "--max-pairs", "--alpha",
                 "--schedule", "--replica-batch", "--first-wave", "--noise-runs", "--rule-drift",
                 "--bonferroni"):
        assert flag in result.stdout


def test_the_file_gain_is_the_night_s_kept_gain_and_the_table_prints(tmp_path):
    result = simulate(tmp_path, "--nights", "2", "--power-trials", "0", "--workers", "1", "2")
    assert result.returncode == 0, result.stderr
    assert "file's gain 0.0124 over 6 experiments" in result.stdout  # 0.9979 - 0.9855
    for rule in ("karpathy one run", "today (floor 0.001)", "today at 0.0054",
                 "screen 0.0006 + 1 pair", "sequential"):
        assert f"| {rule}" in result.stdout


def test_one_run_keeps_no_ops_under_noise_the_sequential_rule_rarely(tmp_path):
    got = rows(simulate(tmp_path, "--nights", "6", "--workers", "1", "--noop-fraction", "1",
                        "--rules", "karpathy", "sequential", "--power-trials", "0", "--json"))
    # Beating the best's one run is a coin flip at first; the best's value then grows luckier.
    assert got["karpathy"]["noop_keep_pct"] > 0 and got["karpathy"]["keeps"] > 1
    assert got["karpathy"]["gain"] == 0.0  # every edit was a no-op: nothing real to capture
    assert got["sequential"]["noop_keep_pct"] <= 3  # the stated alpha, 0.03


def test_the_same_seed_gives_the_same_night(tmp_path):
    args = ("--nights", "3", "--workers", "2", "--rules", "karpathy", "sequential",
            "--power-trials", "20", "--json")
    first = rows(simulate(tmp_path, "--seed", "7", *args))
    assert rows(simulate(tmp_path, "--seed", "7", *args)) == first
    assert rows(simulate(tmp_path, "--seed", "8", *args)) != first


def test_a_missing_results_file_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), "--results", "nowhere.tsv"],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode != 0
    assert result.stderr.strip() == ("nowhere.tsv: not found; give karpathy's results.tsv "
                                     "with --results")


def test_today_s_rule_from_a_commit_the_history_lacks_is_one_line(tmp_path):
    result = simulate(tmp_path, "--rules", "today", "--today-rev", "0" * 40, "--nights", "1")
    assert result.returncode != 0
    assert result.stderr.strip() == ("today's rule is autoresearch/policy.py at 0000000, not in "
                                     "this checkout's history: give another commit with "
                                     "--today-rev")


def test_gpu_offsets_cost_today_s_rule_its_power_not_the_sequential_rule_s(tmp_path):
    # Two GPUs 0.0046 apart (std) and runs 0.0003 apart: today's rule pools both into one std.
    got = rows(simulate(tmp_path, "--workers", "2", "--rules", "today", "sequential",
                        "--nights", "1", "--power-trials", "40", "--json"))
    assert got["sequential"]["min_gain"] < 0.003
    assert got["today"]["min_gain"] > 3 * got["sequential"]["min_gain"]


def load_simulator():
    """The script as a module, for its scheduling pieces."""
    spec = importlib.util.spec_from_file_location("simulate_night", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_a_replica_goes_to_a_worker_that_has_not_run_it_while_there_is_one():
    sim = load_simulator()
    decision = sim.Decision(commit=1, judge=iter(()), home=0, age=1, port=False)

    def waiting(mode: str, workers: int):
        plan = sim.Schedule(mode, workers)
        plan.queue.append(sim.Want(decision, 1, sim.CANDIDATE, 0, frozenset({0})))
        return plan

    assert waiting("other", 2).take(0) is None  # worker 0 ran it: it proposes instead
    assert waiting("other", 2).take(1) is not None  # the other worker takes it, before ideas
    assert waiting("other", 1).take(0) is not None  # no other worker: the same one runs it
    assert waiting("any", 2).take(1) is not None
    assert waiting("own", 2).take(1) is None  # only the worker that proposed it


def test_on_one_worker_every_schedule_plays_the_same_night(tmp_path):
    args = ("--nights", "4", "--workers", "1", "--rules", "sequential", "pairs",
            "--power-trials", "0", "--json")
    own = rows(simulate(tmp_path, "--schedule", "own", *args))
    assert rows(simulate(tmp_path, "--schedule", "other", *args)) == own
    assert rows(simulate(tmp_path, "--schedule", "any", "--replica-batch", "2", *args)) != own


def test_the_first_wave_takes_its_runs_per_worker_and_the_noise_runs(tmp_path):
    for per_worker, more, runs in ((1, 2, 8), (2, 0, 16), (1, 8, 16), (1, 0, 8)):
        got = rows(simulate(tmp_path, "--nights", "2", "--workers", "8", "--rules", "sequential",
                            "--first-wave", str(per_worker), "--noise-runs", str(more),
                            "--power-trials", "0", "--json"))
        row = got["sequential"]
        assert round(row["wave_pct"] * row["runs"] / 100) == runs


def test_allowing_for_the_drift_keeps_fewer_no_ops_on_a_drifting_machine(tmp_path):
    args = ("--nights", "8", "--workers", "1", "--rules", "sequential", "--noop-fraction", "1",
            "--drift-std", "0.0003", "--power-trials", "0", "--json")
    blind = rows(simulate(tmp_path, "--rule-drift", "0", *args))["sequential"]
    aware = rows(simulate(tmp_path, "--rule-drift", "0.0003", *args))["sequential"]
    assert aware["noop_keep_pct"] < blind["noop_keep_pct"] / 3


def test_rules_that_compare_runs_of_one_worker_keep_their_replicas_there(tmp_path):
    # today's rule and karpathy's ran every replica on the candidate's worker: no offset to fit
    args = ("--nights", "3", "--workers", "2", "--rules", "karpathy", "today", "screen",
            "--power-trials", "0", "--json")
    assert rows(simulate(tmp_path, "--schedule", "other", *args)) == \
        rows(simulate(tmp_path, "--schedule", "own", *args))


def test_a_batch_of_no_runs_is_one_line(tmp_path):
    result = simulate(tmp_path, "--replica-batch", "0")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].endswith(
        "argument --replica-batch: 0 is not a count of at least 1")


def test_the_exact_boundary_spends_the_alpha_bonferroni_left_unused(tmp_path):
    args = ("--nights", "6", "--workers", "1", "--rules", "sequential", "--noop-fraction", "1",
            "--alpha", "0.05", "--power-trials", "0", "--json")
    exact = rows(simulate(tmp_path, *args))["sequential"]
    bonferroni = rows(simulate(tmp_path, "--bonferroni", *args))["sequential"]
    assert bonferroni["rule"].endswith(" Bonferroni") and not exact["rule"].endswith("Bonferroni")
    # the no-ops' parents are winners, valued a little too well: both stay below alpha
    assert bonferroni["noop_keep_pct"] < exact["noop_keep_pct"] <= 5


def test_online_fdr_alphas_follow_the_papers_wealth_update():
    # hand-computed from the definitions: g_j = 6 / (pi^2 j^2) at decay 2 (zeta(2) = pi^2 / 6)
    sim = load_simulator()
    g = [0.0] + [6 / (math.pi ** 2 * j ** 2) for j in range(1, 6)]
    # LORD++: alpha_t = w0 g_t + (level - w0) g_(t - tau_1) + level sum_j g_(t - tau_j)
    lord = sim.OnlineFdr(level=0.1, w0=0.05, decay=2)
    assert lord.alpha_for_next() == (0, pytest.approx(0.05 * g[1]))
    lord.record(0, True, 0.001)
    assert lord.alpha_for_next()[1] == pytest.approx(0.05 * g[2] + 0.05 * g[1])
    lord.record(1, True, 0.001)
    assert lord.alpha_for_next()[1] == pytest.approx(0.05 * g[3] + 0.05 * g[2] + 0.1 * g[1])
    # ADDIS (lam 0.1, tau 0.5): a discarded test (p > tau) and a candidate (p <= lam) cost
    # nothing; a selected non-candidate moves every term one step down the sequence
    addis = sim.OnlineFdr(level=0.2, w0=0.1, lam=0.1, tau=0.5, decay=2)
    first = addis.alpha_for_next()[1]
    assert first == pytest.approx(0.4 * 0.1 * g[1])
    addis.record(0, False, 0.9)  # discarded
    assert addis.alpha_for_next()[1] == pytest.approx(first)
    addis.record(1, False, 0.3)  # selected, not a candidate
    assert addis.alpha_for_next()[1] == pytest.approx(0.4 * 0.1 * g[2])
    addis.record(2, True, 0.01)  # a discovery: selected 2 up to it
    after = 0.4 * (0.1 * g[2] + 0.1 * g[1])
    assert addis.alpha_for_next()[1] == pytest.approx(after)
    addis.record(3, False, 0.05)  # a candidate after the discovery: the index stays
    assert addis.alpha_for_next()[1] == pytest.approx(after)
    # asynchronous: a test still open counts as selected, without a discovery
    assert addis.alpha_for_next()[1] == pytest.approx(0.4 * (0.1 * g[3] + 0.1 * g[2]))
    # the cap: alpha never exceeds lam
    rich = sim.OnlineFdr(level=1.0, w0=1.0, lam=0.03, tau=1.0, decay=2)
    assert rich.alpha_for_next()[1] == 0.03


def test_alpha_is_quantized_down_onto_the_grid():
    sim = load_simulator()
    for alpha in (0.03, 0.0123, 1e-4, 0.2):
        got = sim.quantize_alpha(alpha)
        assert alpha / sim.ALPHA_GRID_STEP < got <= alpha
    assert sim.quantize_alpha(1e-9) == sim.ALPHA_GRID_MIN


@pytest.mark.slow
def test_online_fdr_rows_keep_less_than_the_fixed_alpha_on_the_same_nights(tmp_path):
    args = ("--nights", "6", "--workers", "1", "--rules", "sequential", "--power-trials", "0",
            "--json")
    fixed = rows(simulate(tmp_path, "--alpha", "0.03", *args))["sequential"]
    for kind, name in (("lord", "LORD++"), ("saffron", "SAFFRON"), ("addis", "ADDIS")):
        got = rows(simulate(tmp_path, "--fdr", kind, "--fdr-level", "0.05", *args))[name]
        assert got["rule"].startswith(f"{name} fdr=0.05")
        # the wealth starts small and grows only with keeps: fewer than alpha 0.03 finds
        assert got["keeps"] < fixed["keeps"]
