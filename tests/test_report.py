"""Summary numbers against values computed by hand, on our format and on other tools' files."""

import json
from dataclasses import asdict

import pytest
import typer
from conftest import DATA
from typer.testing import CliRunner

from autoresearch.errors import UserError
from autoresearch.ledger.results import append_result, read_results
from autoresearch.ledger.state import State, save_state
from autoresearch.ledger.values import progress
from autoresearch.model import Row, Status
from autoresearch.policy import Noise, Rule, min_detectable_gain, signed
from autoresearch.review.report import (
    best,
    estimate_threshold,
    experiment_numbers,
    hours_label,
    noise_threshold,
    running_best,
    summarize,
    with_runs,
    y_limits,
)
from autoresearch.review.review_cli import register
from autoresearch.review.views import choose_tag, tags_by_start

ECOSYSTEM = DATA / "results_mar8.tsv"


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
    # a noise run is the baseline's code again: its commit
    return [Row(commit=f"{1 if k == 'noise' else n:07x}", val_bpb=v,
                memory_gb=0.0 if s == "crash" else 40.0, status=s,
                description=f"change {n}", experiment=n, kind=k, tag="night",
                timestamp=f"2026-01-01T00:{m:02d}:00+00:00", total_seconds=t, cost_usd=c)
            for n, s, v, k, m, t, c in spec]


def test_summary_matches_hand_computed_values():
    s = summarize(table())
    # 7 runs; the experiments are #3-#7: the baseline and its noise run are runs only
    assert (s.runs, s.runs_by_kind) == (7, {"baseline": 1, "noise": 1, "experiment": 5})
    assert (s.experiments, s.kept, s.discarded, s.crashed) == (5, 3, 1, 1)
    assert s.baseline_bpb == pytest.approx(1.001)  # the baseline wave: 1.000 and 1.002
    assert (s.best_bpb, s.best_experiment, s.best_commit) == (pytest.approx(0.965), 7, "0000007")
    assert s.improvement == pytest.approx(0.036)
    assert s.improvement_pct == pytest.approx(3.6 / 1.001)
    # no events.log: the loop ran from the first row to the last, 0.6 h
    assert (s.active_hours, s.active_estimated) == (pytest.approx(0.6), True)
    assert s.experiments_per_hour == pytest.approx(5 / 0.6)
    assert s.runs_per_hour == pytest.approx(7 / 0.6)
    # total_seconds where present, plus the crash's 2-minute gap since the previous row
    assert s.gpu_hours == pytest.approx((300 + 300 + 310 + 300 + 120 + 320 + 305) / 3600)
    assert s.gpu_hours_estimated
    assert s.cost_usd == pytest.approx(0.40)
    # rows without paired gains (another tool's): each keep's commit against the one kept
    # before it: #3 1.001->0.99, #6 0.99->0.97, #7 0.97->0.965
    assert [(i.experiment, round(i.delta, 6)) for i in s.top_improvements] == [
        (6, 0.02), (3, 0.011), (7, 0.005)]
    assert [i.experiment for i in summarize(table(), top=1).top_improvements] == [6]


def test_series_for_the_plots():
    rows = table()
    assert experiment_numbers(rows) == [1, 2, 3, 4, 5, 6, 7]
    assert running_best(rows) == pytest.approx([1.001, 1.001, 0.99, 0.99, 0.99, 0.97, 0.965])
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
    # two baseline runs, 1.000 and 1.002: std 0.001414 from one degree of freedom
    smallest = min_detectable_gain(0.0014142136, Rule(), 1)
    assert estimate_threshold(rows) == pytest.approx(smallest)
    assert noise_threshold(tmp_path, "night", rows) == pytest.approx(smallest)
    noise = Noise(threshold=0.004, floor=0.001, values=[1.0, 1.002], std=0.0014, spread=0.002,
                  rule="max(floor, 2 x sample std of the baseline runs)")
    save_state(tmp_path, State(tag="night", branch="autoresearch/night", base_commit="abc",
                               created_at="", fixed_sha256={}, noise=noise))
    assert noise_threshold(tmp_path, "night", rows) == 0.004
    assert estimate_threshold(rows[2:]) is None  # no repeated baselines: no band


def test_the_newest_tag_of_a_file_without_loop_state():
    rows = table() + [Row("eeeeeee", 0.9, 40.0, "keep", "other night", tag="second")]
    tags = tags_by_start(None, rows)
    assert tags == ["night", "second"] and choose_tag(tags, None) == "second"
    assert choose_tag(tags, "night") == "night"
    with pytest.raises(UserError, match=r"no tag 'nope' \(tags here: night, second\)"):
        choose_tag(tags, "nope")


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
    for text in ("runs              7  (1 baseline, 1 noise, 5 experiment)",
                 "experiments       5  (3 kept, 1 discarded, 1 crashed)", "0.965000",
                 "-0.036000 (-3.60%)", "8.3  (runs/hour 11.7, over 36m00s of loop time "
                 "(from the rows' timestamps))", "0.54 (partly from timestamps)", "$0.40",
                 "top improvements"):
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


def parallel_night() -> list[Row]:
    """A loop's file: the baseline wave on commit c0 (a keep, two noise runs), a discard, a
    crash, then #6 (c3) confirmed against its control #7 (c0 again) by #8 (c3 again). The
    control's row reaches the file before the rows of #6 and #8, which are written together."""
    spec = [  # n, commit, status, val_bpb, kind
        (1, "c0", "keep", 1.000, "baseline"), (2, "c0", "discard", 1.004, "noise"),
        (3, "c0", "discard", 0.999, "noise"), (4, "c1", "discard", 0.990, "experiment"),
        (5, "c2", "crash", 0.0, "experiment"), (7, "c0", "discard", 1.002, "control"),
        (6, "c3", "keep", 0.985, "experiment"), (8, "c3", "keep", 0.987, "confirm"),
        (9, "c4", "discard", 0.990, "experiment")]
    evidence = {6: dict(pairs=1, gain=0.015, gain_low=0.01, gain_high=0.02, p_value=0.001)}
    return [Row(commit=c, val_bpb=v, memory_gb=40.0, status=s, description=f"change {n}",
                experiment=n, kind=k, tag="night", profile="cpu", device="cpu", total_seconds=60.0,
                **evidence.get(n, {}))
            for n, c, s, v, k in spec]


def test_the_best_is_the_baseline_wave_minus_the_kept_paired_gains():
    rows = parallel_night()
    head = best(rows)
    # the baseline wave (1.000, 1.004, 0.999) is 1.001; #6 was kept with a paired gain of 0.015
    assert (head.commit, head.keeps, head.experiment, head.description) == ("c3", 1, 6, "change 6")
    assert head.value == pytest.approx(0.986)
    assert str(head) == "0.986000 (baseline - 1 kept gain)"
    s = summarize(rows)
    assert (s.best_bpb, s.best_label, s.best_commit, s.best_experiment) == (
        head.value, str(head), "c3", 6)
    # the control (#7, 1.002) ran the baseline's code again: it does not move the baseline
    assert s.baseline_bpb == pytest.approx(1.001) and s.baseline_runs == 3
    assert s.improvement == pytest.approx(0.015)
    (step,) = s.top_improvements
    assert (step.experiment, step.commit, step.delta) == (6, "c3", 0.015)
    assert step.evidence == "1 look [+0.010000, +0.020000] p 0.001"
    # after each row, in experiment order: the baseline, then one step down at the keep (#6)
    assert running_best(rows) == pytest.approx(
        [1.001, 1.001, 1.001, 1.001, 1.001, 0.986, 0.986, 0.986, 0.986])
    assert best(rows[:2]).value == pytest.approx(1.002) and best(rows[:2]).keeps == 0
    assert best([r for r in rows if r.status != "keep"]) is None


def test_the_last_keep_is_the_head_but_the_best_never_rises():
    """Another tool may keep a simpler change that is a little worse: its head is the kept
    line's head, and the best stays where the earlier keep took it."""
    rows = [Row("a", 1.0, 1.0, "keep", "baseline"), Row("b", 0.95, 1.0, "keep", "lucky"),
            Row("c", 0.97, 1.0, "keep", "simpler"), Row("d", 0.9, 1.0, "discard", "worse idea")]
    head = best(rows)  # the night's progress never rises at a keep: the simpler one gained 0
    assert (head.commit, head.value, head.keeps, head.experiment) == ("c", 0.95, 2, 3)
    assert summarize(rows).best_bpb == 0.95
    assert running_best(rows) == [1.0, 0.95, 0.95, 0.95]


def test_the_baseline_wave_alone_is_no_change():
    """The issue's night: 3.105079 is the mean of the baseline's three runs, nothing kept
    since: the loop, status, summary, plot and dashboard all say 3.105079 and no change."""
    rows = [Row("c0", v, 40.0, s, "baseline", experiment=n, kind=k, tag="t", profile="cpu")
            for n, (v, s, k) in enumerate([(3.109422, "keep", "baseline"),
                                           (3.101000, "discard", "noise"),
                                           (3.104815, "discard", "noise")], start=1)]
    s = summarize(rows)
    assert str(best(rows)) == "3.105079 (baseline)"
    assert s.best_bpb == s.baseline_bpb and s.improvement == 0
    assert f"{-s.improvement:+.6f}" == "-0.000000"  # what the summary printed before
    assert signed(-s.improvement) == "+0.000000" and signed(-s.improvement_pct, 2) == "+0.00"


def test_signed_and_with_runs():
    assert signed(-0.0) == "+0.000000" and signed(-4e-7) == "+0.000000"
    assert signed(4e-7) == "+0.000000" and signed(-0.0123) == "-0.012300"
    assert signed(0.5) == "+0.500000" and signed(-0.004, 2) == "+0.00"
    assert with_runs(3.1050791, 3) == "3.105079 (mean of 3 runs)"
    assert with_runs(3.109422, 1) == "3.109422 (1 run)"


def test_hours_are_named_after_what_ran_them():
    def rows(*where: tuple[str, str]) -> list[Row]:
        return [Row("a", 1.0, 1.0, "keep", "x", profile=p, device=d) for p, d in where]

    assert hours_label(rows(("cpu", "cpu"), ("cpu", ""))) == "CPU hours"
    assert hours_label(rows(("h100", "NVIDIA H200"), ("cpu", "cpu"))) == "GPU hours"
    assert hours_label(rows(("cpu", "NVIDIA H200"))) == "GPU hours"  # the cpu profile on a GPU
    assert hours_label(rows(("", ""))) == "run hours"  # another tool's file does not say
    assert summarize(parallel_night()).hours_label == "CPU hours"


def test_summary_of_a_cpu_night_with_no_gain(tmp_path):
    path = tmp_path / "results.tsv"
    for n, (v, s, k) in enumerate([(3.109422, "keep", "baseline"), (3.101000, "discard", "noise"),
                                   (3.104815, "discard", "noise")], start=1):
        append_result(path, Row("c0ffee0", v, 1.0, s, "baseline", experiment=n, kind=k, tag="t",
                                profile="cpu", device="cpu", total_seconds=1800.0))
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, ["summary", "--results", str(path)], env={"COLUMNS": "150"})
    assert result.exit_code == 0, result.output
    out = result.output
    assert "best val_bpb      3.105079 (baseline)  #1 c0ffee0" in out
    assert "baseline val_bpb  3.105079 (mean of 3 runs)" in out
    assert "improvement       +0.000000 (+0.00%)" in out and "-0.000000" not in out
    assert "CPU hours         1.50" in out and "GPU hours" not in out
    data = json.loads(CliRunner().invoke(app, ["summary", "--results", str(path), "--json"]).output)
    assert data["gpu_hours"] == 1.5 and data["hours_label"] == "CPU hours"
    assert (data["best_bpb"], data["best_label"]) == (
        pytest.approx(3.105079), "3.105079 (baseline)")


def test_hand_damaged_rows_are_skipped_with_their_line_numbers(tmp_path):
    path = tmp_path / "results.tsv"
    path.write_text(
        "commit\tval_bpb\tmemory_gb\tstatus\tdescription\texperiment\ttag\n"
        "aaaaaaa\t1.000000\t44.0\tkeep\tbaseline\t1\tn\n"
        "bbbbbbb\t0.990000\t44.0\tkeep\tan extra cell\t2\tn\tstray\n"
        "ccccccc\t0,98\t44.0\tkeep\ta decimal comma\t3\tn\n"
        "ddddddd\t0.970000\t44.0\tkept\ta typo\t4\tn\n"
        "\n"
        "eeeeeee\t0.995000\t44.0\tdiscard\tsecond number 1\t1\tn\r\n"
        "fffffff\t0.996000\t44.0\tdiscard\tanother tag's 1\t1\tm\n"
        "0000001\t0.999000\t44.0\tdiscard\tall cells, ok\t5\tn\n"
        "0000002\t0.999000\t44.0\tdiscard\ttorn\t6\n")
    problems: list[str] = []
    rows = read_results(path, problems)
    assert [r.commit for r in rows] == ["aaaaaaa", "fffffff", "0000001"]
    assert problems == [
        "results.tsv line 3: 8 cells, but the header names 7 columns; row skipped",
        "results.tsv line 4: val_bpb '0,98' is not a number; row skipped",
        "results.tsv line 5: status 'kept' is not one of keep, discard, crash; row skipped",
        "results.tsv line 7: experiment 1 of tag n is already on line 2; row skipped",
        "results.tsv line 10: 6 cells, but the header names 7 columns (a torn row); row skipped"]
    assert read_results(path) == rows  # without a list the rows are the same
    assert best([r for r in rows if r.tag == "n"]).commit == "aaaaaaa"  # not #2, #3 or #4


def night_on_two_nodes() -> list[Row]:
    """Two GPUs on node a, one on node b (its worker also numbered 0): 7 runs, 5 minutes each,
    except a crash that reports no run time (its time: the gap since its worker's last row)."""
    spec = [  # n, status, val_bpb, kind, worker, gpu, node, minute, total_seconds
        (1, "keep", 1.000, "baseline", 0, "0", "a", 5, 300.0),
        (2, "discard", 1.002, "noise", 1, "1", "a", 5, 300.0),
        (3, "discard", 1.001, "noise", 0, "0", "b", 5, 300.0),
        (4, "keep", 0.990, "experiment", 0, "0", "a", 10, 300.0),
        (5, "discard", 0.995, "experiment", 1, "1", "a", 10, 300.0),
        (6, "crash", 0.0, "experiment", 0, "0", "b", 12, None),
        (7, "keep", 0.980, "experiment", 0, "0", "b", 17, 300.0)]
    # a noise run is the baseline's code again: its commit
    return [Row(commit=f"{1 if k == 'noise' else n:07x}", val_bpb=v, memory_gb=40.0, status=s,
                description=f"change {n}",
                experiment=n, kind=k, tag="night", timestamp=f"2026-01-01T00:{m:02d}:00+00:00",
                total_seconds=t, profile="h100", worker=w, gpu=g, device="NVIDIA H200", node=node)
            for n, s, v, k, w, g, node, m, t in spec]


def test_summary_per_worker(tmp_path):
    s = summarize(night_on_two_nodes())
    # kept: the keeps (kept experiments), not the baseline's kept run
    assert [(w.node, w.worker, w.gpu, w.device, w.runs, w.kept) for w in s.workers] == [
        ("a", 0, "0", "NVIDIA H200", 2, 1), ("a", 1, "1", "NVIDIA H200", 2, 0),
        ("b", 0, "0", "NVIDIA H200", 3, 1)]
    # node b: #3 and #7 ran 300 s each; the crash counts the 7 minutes since #3 (its worker's
    # previous row), not the 2 since #5 (another worker's)
    assert [w.hours for w in s.workers] == pytest.approx([600 / 3600, 600 / 3600, 1020 / 3600])
    assert [w.hours_estimated for w in s.workers] == [False, False, True]
    assert s.gpu_hours == pytest.approx(2220 / 3600) and s.gpu_hours_estimated
    path = tmp_path / "results.tsv"
    for row in night_on_two_nodes():
        append_result(path, row)
    app = typer.Typer()
    register(app)
    out = CliRunner().invoke(app, ["summary", "--results", str(path)],
                             env={"COLUMNS": "150"}).output
    lines = out[out.index("workers"):].splitlines()
    assert [c.strip() for c in lines[2].split("┃")[1:-1]] == [
        "worker", "gpu", "device", "node", "runs", "keeps", "GPU hours"]
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in lines[4:7]]
    assert cells == [["w0", "0", "NVIDIA H200", "a", "2", "1", "0.17"],
                     ["w1", "1", "NVIDIA H200", "a", "2", "0", "0.17"],
                     ["w0", "0", "NVIDIA H200", "b", "3", "1", "0.28 (partly from timestamps)"]]
    data = json.loads(CliRunner().invoke(app, ["summary", "--results", str(path), "--json"]).output)
    assert data["workers"][2] == {"worker": 0, "gpu": "0", "device": "NVIDIA H200", "node": "b",
                                  "runs": 3, "kept": 1, "hours": pytest.approx(1020 / 3600),
                                  "hours_estimated": True}


def test_summary_of_one_worker_has_no_worker_section(tmp_path):
    path = tmp_path / "results.tsv"
    for row in night_on_two_nodes():
        if (row.worker, row.node) == (0, "a"):
            append_result(path, row)
    app = typer.Typer()
    register(app)
    out = CliRunner().invoke(app, ["summary", "--results", str(path)], env={"COLUMNS": "150"})
    assert "1  (1 kept" in out.output and "workers" not in out.output
    data = json.loads(CliRunner().invoke(app, ["summary", "--results", str(path), "--json"]).output)
    assert [(w["worker"], w["runs"]) for w in data["workers"]] == [(0, 2)]
    assert summarize(table()).workers == []  # rows that do not say who ran them


def test_another_tools_keeps_move_the_best():
    """karpathy's mar8 file (no kind column): its keep rows after the first are the night's keeps,
    and the best steps down at each of them to the file's own best (a gain of 0.0282)."""
    rows = read_results(ECOSYSTEM)
    night = progress(rows)
    assert len(night.steps) == sum(r.status == "keep" for r in rows) - 1  # the first: baseline
    assert night.baseline == pytest.approx(rows[0].val_bpb)
    assert night.best == pytest.approx(min(r.val_bpb for r in rows if r.status == "keep"))
    assert all(b.best <= a.best for a, b in zip(night.steps, night.steps[1:], strict=False))


def test_a_rows_status_is_a_status_that_reads_and_writes_as_its_text(tmp_path):
    """Row.status is model.Status whether the row was made with a string, read from results.tsv
    or loaded from state.json; comparisons with the text and the TSV cell stay as they were."""
    path = tmp_path / "results.tsv"
    append_result(path, Row("abc1234", 1.0, 2.0, "keep", "a change"))
    [row] = read_results(path)
    assert row.status is Status.KEEP and row.status == "keep" and str(row.status) == "keep"
    assert path.read_text().splitlines()[1].split("\t")[3] == "keep"
    assert Row(**json.loads(json.dumps(asdict(row)))).status is Status.KEEP
    with pytest.raises(ValueError):
        Row("abc1234", 1.0, 2.0, "kept", "a status that is none")
