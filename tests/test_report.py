"""Summary numbers against values computed by hand, on our format and on other tools' files."""

import json
from dataclasses import asdict
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from autoresearch.errors import UserError
from autoresearch.ledger.results import Row, append_result, read_results
from autoresearch.ledger.state import State, save_state
from autoresearch.review.report import (
    estimate_threshold,
    experiment_numbers,
    noise_threshold,
    running_best,
    select_tag,
    summarize,
    y_limits,
)
from autoresearch.review.review_cli import register

ECOSYSTEM = Path("/work/shared/data/ecosystem/results_mar8.tsv")


def table() -> list[Row]:
    """7 runs, 6 minutes apart except the crash (2 minutes after #4)."""
    spec = [  # n, status, val_bpb, kind, minute, total_seconds, cost
        (1, "keep", 1.000, "baseline", 0, 300.0, None),
        (2, "discard", 1.002, "noise", 6, 300.0, None),
        (3, "keep", 0.990, "experiment", 12, 310.0, 0.10),
        (4, "discard", 0.995, "experiment", 18, 300.0, 0.05),
        (5, "crash", 0.0, "experiment", 20, None, 0.05),
        (6, "keep", 0.970, "experiment", 30, 320.0, 0.20),
        (7, "keep", 0.965, "experiment", 36, 305.0, None),
    ]
    return [Row(commit=f"{n:07x}", val_bpb=v, memory_gb=0.0 if s == "crash" else 40.0, status=s,
                description=f"change {n}", experiment=n, kind=k, tag="night",
                timestamp=f"2026-01-01T00:{m:02d}:00+00:00", total_seconds=t, cost_usd=c)
            for n, s, v, k, m, t, c in spec]


def test_summary_matches_hand_computed_values():
    s = summarize(table())
    assert (s.experiments, s.kept, s.discarded, s.crashed) == (7, 4, 2, 1)
    assert s.baseline_bpb == 1.0
    assert (s.best_bpb, s.best_experiment, s.best_commit) == (0.965, 7, "0000007")
    assert s.improvement == pytest.approx(0.035)
    assert s.improvement_pct == pytest.approx(3.5)
    # 7 finished runs between 00:00 and 00:36: 6 intervals in 0.6 h
    assert s.experiments_per_hour == pytest.approx(10.0)
    # total_seconds where present, plus the crash's 2-minute gap since the previous row
    assert s.gpu_hours == pytest.approx((300 + 300 + 310 + 300 + 120 + 320 + 305) / 3600)
    assert s.gpu_hours_estimated
    assert s.cost_usd == pytest.approx(0.40)
    # improvement over the best before: #3 1.0->0.99, #6 0.99->0.97, #7 0.97->0.965
    assert [(i.experiment, round(i.delta, 6)) for i in s.top_improvements] == [
        (6, 0.02), (3, 0.01), (7, 0.005)]
    assert [i.experiment for i in summarize(table(), top=1).top_improvements] == [6]


def test_series_for_the_plots():
    rows = table()
    assert experiment_numbers(rows) == [1, 2, 3, 4, 5, 6, 7]
    assert running_best(rows) == [1.0, 1.0, 0.99, 0.99, 0.99, 0.97, 0.965]
    lo, hi = y_limits(rows)
    # range from non-crash values only: 0.965 .. 1.002, padded by 6% of 0.037
    assert lo == pytest.approx(0.965 - 0.00222)
    assert hi == pytest.approx(1.002 + 0.00222)


def test_y_limits_cap_blowups_and_ignore_crashes():
    rows = table() + [Row("bad0001", 3.2, 40.0, "discard", "diverged", experiment=8)]
    lo, hi = y_limits(rows)
    assert lo > 0.9  # the crash's 0.0 does not pull the range down
    assert hi < 1.01  # 3.2 is beyond baseline + the 0.035 improvement: off the chart
    assert y_limits([Row("c", 0.0, 0.0, "crash", "x")]) is None


def test_other_tools_file_without_extra_columns(tmp_path):
    path = tmp_path / "results.tsv"
    path.write_text("commit\tval_bpb\tmemory_gb\tstatus\tdescription\n"
                    "aaaaaaa\t1.000000\t44.0\tkeep\tbaseline\n"
                    "bbbbbbb\t0.000000\t0.0\tcrash\toom\n"
                    "ccccccc\t0.990000\t44.0\tkeep\tbetter\n"
                    "ddddddd\t0.995000\t44.0\tdiscard\tworse\n")
    rows = read_results(path)
    assert experiment_numbers(rows) == [1, 2, 3, 4]  # row order stands in for the number
    s = summarize(rows)
    assert (s.kept, s.discarded, s.crashed, s.best_experiment) == (2, 1, 1, 3)
    assert s.improvement == pytest.approx(0.01)
    assert s.experiments_per_hour is None and s.gpu_hours is None and s.cost_usd is None


def test_ecosystem_file():
    s = summarize(read_results(ECOSYSTEM))
    assert (s.experiments, s.kept, s.discarded, s.crashed) == (126, 23, 102, 1)
    assert (s.baseline_bpb, s.best_bpb, s.best_commit) == (0.9979, 0.969686, "438a26e")
    assert s.best_experiment == 119
    assert s.top_improvements[0].commit == "bea057b"  # halving the batch: -0.011859
    assert s.top_improvements[0].delta == pytest.approx(0.997900 - 0.986041)


def test_threshold_from_state_json_else_estimated(tmp_path):
    rows = table()
    # two repeated baselines, 1.000 and 1.002: 2 x stdev = 0.002828 (above the 0.001 floor)
    assert estimate_threshold(rows) == pytest.approx(2 * 0.0014142136)
    assert noise_threshold(tmp_path, "night", rows) == pytest.approx(0.0028284, abs=1e-6)
    save_state(tmp_path, State(tag="night", branch="autoresearch/night", base_commit="abc",
                               created_at="", fixed_sha256={}, noise={"threshold": 0.004}))
    assert noise_threshold(tmp_path, "night", rows) == 0.004
    assert estimate_threshold(rows[2:]) is None  # no repeated baselines: no band


def test_select_tag():
    rows = table() + [Row("eeeeeee", 0.9, 40.0, "keep", "other night", tag="second")]
    picked, tag = select_tag(rows, None)
    assert tag == "second" and len(picked) == 1  # the newest row's tag
    picked, tag = select_tag(rows, "night")
    assert len(picked) == 7
    with pytest.raises(UserError, match="tags present: night, second"):
        select_tag(rows, "nope")


def test_summary_command(tmp_path):
    path = tmp_path / "results.tsv"
    for row in table():
        append_result(path, row)
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, ["summary", "--results", str(path), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == json.loads(json.dumps(asdict(summarize(table()))))
    result = CliRunner().invoke(app, ["summary", "--results", str(path)], env={"COLUMNS": "150"})
    assert result.exit_code == 0, result.output
    for text in ("7  (4 kept, 2 discarded, 1 crashed)", "0.965000", "-0.035000 (-3.50%)",
                 "10.0", "0.54 (partly from timestamps)", "$0.40", "top improvements"):
        assert text in result.output


def test_a_row_appended_to_a_file_without_its_final_newline_is_not_glued_on(tmp_path):
    path = tmp_path / "results.tsv"
    append_result(path, Row("aaaaaaa", 1.0, 1.0, "keep", "first", experiment=1,
                            run_dir="runs/0001-aaaaaaa"))
    path.write_text(path.read_text().rstrip("\n"))  # saved by an editor without the last newline
    append_result(path, Row("bbbbbbb", 0.9, 1.0, "keep", "second", experiment=2))
    rows = read_results(path)
    assert [(r.experiment, r.commit, r.run_dir) for r in rows] == [
        (1, "aaaaaaa", "runs/0001-aaaaaaa"), (2, "bbbbbbb", "")]


def test_an_unreadable_results_file_is_a_user_error(tmp_path):
    binary = tmp_path / "progress.png"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xd8\xff\xfe")
    with pytest.raises(UserError, match="not a readable results.tsv"):
        read_results(binary)
    with pytest.raises(UserError, match="not a readable results.tsv"):
        read_results(tmp_path)
