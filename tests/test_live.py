"""The live state: typed moves in the loop, read back where users read it (live.json through
`status`'s loop_running and the live panel's worker lines, and the UI's updates)."""

from __future__ import annotations

from loop_helpers import edit, make_repo, run_loop

from autoresearch.ledger.state import read_live
from autoresearch.review.console import live_workers, worker_row
from autoresearch.review.views import loop_running


def test_live_json_and_the_ui_follow_a_run_and_end_idle(tmp_path):
    repo = make_repo(tmp_path / "repo")
    _, _, ui = run_loop(repo, [edit("worse val", VAL_BPB=1.2)])
    started = [u for u in ui.updates if u["phase"] == "training" and u.get("step") is None]
    # the baseline, then the experiment; an update in between may repeat one (the proposer going
    # idle after its job's run has started: two threads, either may come first)
    assert list(dict.fromkeys(u["experiment"] for u in started)) == [1, 2]
    second = started[-1]
    assert second["kind"] == "experiment" and second["description"] == "worse val"
    assert second["workers"]["0"]["commit"] == second["commit"] and len(second["commit"]) == 7
    assert second["tag"] == "t" and second["best_commit"] and second["threshold"] is not None
    proposing = [u for u in ui.updates if u["agent_phase"] == "proposing"]
    assert proposing and proposing[0]["agent_task"] == "a new experiment"
    name, _, what = worker_row(live_workers(second)[0], named=True)
    assert name.plain == "w0" and "worse val" in what.plain and "training" in what.plain

    live = read_live(repo, "t")
    assert live["pid"] and live["updated_at"] and live["workers"]["0"]["phase"] == "idle"
    assert live["agent_phase"] == "idle" and live["queued"] == 0
    assert not loop_running(live)  # the loop marked every worker idle when it ended
