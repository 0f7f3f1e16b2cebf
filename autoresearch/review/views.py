"""What `status`, `results` and `diff` print: read-only views of state.json, live.json,
results.tsv and git. Safe to run while a loop is running (they never write)."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from autoresearch.errors import UserError
from autoresearch.execution.procs import pid_alive
from autoresearch.ledger.results import read_reported, read_results
from autoresearch.ledger.state import (
    State,
    list_tags,
    load_state,
    read_live,
    stop_requested,
    tag_dir,
)
from autoresearch.ledger.tags import tried_ref
from autoresearch.ledger.values import progress
from autoresearch.memory.digest import build_digest
from autoresearch.memory.journal import JOURNAL, describe_extra
from autoresearch.memory.journal import load as load_journal
from autoresearch.model import Row, is_measured
from autoresearch.names import RESULTS
from autoresearch.policy import signed
from autoresearch.redact import redact
from autoresearch.review.console import STATUS_STYLE, duration, live_workers
from autoresearch.review.report import (
    best,
    experiment_numbers,
    is_experiment,
    is_keep,
    noise_words,
    several_workers,
    worker_labels,
)
from autoresearch.target import DEFAULT, Metric, load_target, metric_beside
from autoresearch.workspace.git import Git


def read_rows(path: Path, reported: set[str] | None = None) -> list[Row]:
    """results.tsv's rows for a review command. What is wrong with the file goes to stderr as
    `warning: ...`, each problem once: a long-running caller passes the set it keeps of those
    already reported."""
    return read_reported(path, lambda problem: print(f"warning: {problem}", file=sys.stderr),
                         set() if reported is None else reported)


def tags_by_start(repo: Path | None, rows: list[Row]) -> list[str]:
    """Every tag known here, the one whose loop started last at the end: results.tsv's tags in
    the order of their first rows (the file is appended to as runs end), then, with `repo`, the
    tags whose loop state has no row yet (a loop still on its first runs), by creation time."""
    tags = list(dict.fromkeys(r.tag for r in rows if r.tag))
    waiting = [name for name in list_tags(repo) if name not in tags] if repo is not None else []
    return tags + sorted(waiting, key=lambda name: _created_at(repo, name))


def _created_at(repo: Path, tag: str) -> str:
    try:
        state = load_state(repo, tag)
    except UserError:  # a damaged state.json still names a tag
        return ""
    return state.created_at if state else ""


def state_repo(repo: Path, results: Path) -> Path | None:
    """`repo` when `results` is its loop's own results.tsv (its tags have loop state), else
    None: another file's tags are its rows' alone."""
    return repo if results.resolve() == (repo / RESULTS).resolve() else None


def choose_tag(tags: list[str], tag: str | None, quiet: bool = False) -> str | None:
    """The one rule of every review verb: --tag if it is known, else the newest of `tags`
    (tags_by_start's order), said in a first line on stderr when there are several; None when
    there is no tag at all (a file without the column). An unknown --tag is a UserError that
    lists the known ones."""
    if tag is not None:
        if tag not in tags:
            known = f"tags here: {', '.join(tags)}" if tags else "no loop has run here yet"
            raise UserError(f"no tag {tag!r} ({known}); pick one with --tag")
        return tag
    if not tags:
        return None
    if len(tags) > 1 and not quiet:
        print(f"tag: {tags[-1]} (newest of {len(tags)}; --tag to choose)", file=sys.stderr)
    return tags[-1]


def resolve_tag(repo: Path, tag: str | None) -> str:
    """The loop tag a verb that reads loop state works on: choose_tag over the tags with state,
    in the order of tags_by_start (the verb itself warns about damaged rows)."""
    results = repo / RESULTS
    rows = read_results(results, []) if results.is_file() else []
    with_state = set(list_tags(repo))
    chosen = choose_tag([t for t in tags_by_start(repo, rows) if t in with_state], tag)
    if chosen is None:
        raise UserError(f"no loop has run in {repo} yet: start one with "
                        "`uv run agent_loop.py run --tag <date> --agent sweep`")
    return chosen


def loop_running(live: dict) -> bool:
    """Whether the loop that wrote live.json is alive and working (not stopped or killed): some
    worker's GPU runs or its agent proposes. The loop marks every worker idle when it ends."""
    busy = any(w.get("phase") not in (None, "idle") or w.get("agent_phase") == "proposing"
               for w in live_workers(live))
    return bool(live.get("pid")) and pid_alive(live["pid"]) and busy


def status(repo: Path, tag: str | None, console: Console) -> None:
    tag = resolve_tag(repo, tag)
    state = load_state(repo, tag)
    live = read_live(repo, tag)
    rows = [r for r in read_rows(repo / RESULTS) if r.tag == tag]
    running = loop_running(live)
    console.print(Text.assemble(
        ("tag ", "dim"), (tag, "bold"), ("  branch ", "dim"), state.branch,
        ("  started ", "dim"), f"{state.created_at} from {state.base_commit[:7]}"))
    if running:
        console.print(Text.assemble(("loop: ", "dim"), ("running", "bold green"),
                                    f" (pid {live['pid']})"))
        for worker in live_workers(live):
            console.print(worker_line(worker))
        console.print(queue_line(live))
    else:
        seen = live.get("updated_at", "never")
        console.print(Text.assemble(("loop: ", "dim"), ("not running", "bold"),
                                    f" (last update {seen})"))
    flag = stop_requested(repo, tag)
    if flag:
        console.print(Text(f"stop requested ({flag})", style="yellow"))
    unfinished = [j for j in state.jobs if j.n is not None]
    if unfinished and not running:
        runs = ", ".join(f"#{j.n} ({j.kind.value}, {j.phase.value})" for j in unfinished)
        console.print(Text(f"interrupted: run {runs}; the next `run` finishes it",
                           style="yellow"))
    console.print(best_line(rows, metric_beside(repo / RESULTS)))
    console.print(noise_line(repo, state))
    console.print(counts_line(state, rows))


def worker_line(w: dict) -> Text:
    """What a worker does now: its GPU's run and progress, then its agent's task."""
    gpu = f" gpu {w['gpu']}" if w.get("gpu") else ""
    device = f" {w['device']}" if w.get("device") else ""
    text = Text(f"w{w.get('worker', 0)}{gpu}{device}: ", "dim")
    if w.get("phase") in ("training", "evaluating"):
        text.append(redact(f"#{w.get('experiment')} {w.get('kind', '')} {w.get('commit', '')} "
                           f"{w.get('description', '')} - {w['phase']}"))
        if w.get("step") is not None:
            text.append(f", step {w['step']} ({w.get('progress_pct') or 0:.1f}%), "
                        f"{duration(w.get('remaining_s'))} left")
    else:
        text.append("idle", "dim")
    if w.get("agent_phase") == "proposing":
        task = redact(w.get("agent_task") or "a new experiment")
        text.append(f"; agent: proposing {task}", "cyan")
    return text


def queue_line(live: dict) -> Text:
    """The runs waiting for a GPU, the candidates waiting for their paired runs, time left."""
    queued, confirming = live.get("queued") or 0, live.get("confirming") or 0
    text = Text.assemble(("queued: ", "dim"), f"{queued} run{'' if queued == 1 else 's'}; "
                         f"{confirming} candidate{'' if confirming == 1 else 's'} confirming")
    if live.get("time_left_s") is not None:
        text.append(f"; session time left {duration(live['time_left_s'])}")
    if live.get("stopping"):
        text.append("; stopping: finishing the runs under way", "yellow")
    return text


def best_line(rows: list[Row], metric: Metric = DEFAULT.metric) -> Text:
    """The best (report.best) and how far the keeps' measured gains took it from the baseline,
    in the metric's own values (named, with its direction, unless it is val_bpb)."""
    head = best(rows)
    named = "" if metric == DEFAULT.metric else f"{metric.label} "
    if head is None:
        return Text(f"best: {named}none yet (the baseline has not finished)", style="dim")
    text = Text.assemble(("best: ", "dim"), named, (head.label(metric), "bold green"),
                         f" #{head.experiment} {head.commit[:7]} {head.description}")
    base = progress(rows).baseline
    text.append(f"; baseline {metric.value(base) + 0.0:.6f}, change "
                f"{signed(metric.value(head.value - base))}")
    return text


def noise_line(repo: Path, state: State) -> Text:
    noise = state.noise
    if noise is None:
        return Text("noise: not measured yet", style="dim")
    return Text.assemble(("noise: ", "dim"), noise_words(repo, state),
                         f"; decisions: {noise.rule}")

def counts_line(state: State, rows: list[Row]) -> Text:
    by_status = {s: sum(r.status == s for r in rows) for s in ("keep", "discard", "crash")}
    by_kind = Counter(r.kind for r in rows)
    cost = f"${state.cost_usd:.2f}" + (" (+ unreported)" if state.cost_unknown else "")
    return Text.assemble(
        ("runs: ", "dim"), f"{len(rows)} (", *[(f"{v} {k} ", STATUS_STYLE[k])
                                              for k, v in by_status.items()],
        f"| {', '.join(f'{v} {k}' for k, v in by_kind.items()) or 'none'})",
        ("   experiments: ", "dim"),
        f"{sum(map(is_experiment, rows))} ({sum(map(is_keep, rows))} kept)",
        ("   rejected proposals: ", "dim"), str(state.rejected_total),
        ("   agent cost: ", "dim"), cost)


def results_table(path: Path, repo: Path | None, tag: str | None, top: int | None,
                  kept_only: bool) -> Table:
    """results.tsv's rows of one tag (choose_tag's; `repo` when the file is the loop's own,
    whose state.json files name its tags): every run, or only the keeps, or the `top` best."""
    all_rows = read_rows(path)
    tag = choose_tag(tags_by_start(repo, all_rows), tag)
    numbered = [(n, r) for n, r in zip(experiment_numbers(all_rows), all_rows, strict=True)
                if tag is None or r.tag == tag]
    labels = worker_labels([r for _, r in numbered])
    rows = [(n, r, w) for (n, r), w in zip(numbered, labels, strict=True)]
    if kept_only:
        rows = [(n, r, w) for n, r, w in rows if is_keep(r)]
    if top:
        rows = sorted(((n, r, w) for n, r, w in rows if is_measured(r)),
                      key=lambda found: found[1].val_bpb)[:top]
    # who ran each row, when several workers did: one worker's name on every row says nothing
    # and costs an 80-column terminal a fifth of the description's width
    by_worker = several_workers([r for _, r, _ in rows])
    title = f"{f'tag {tag} ' if tag else ''}({len(rows)} rows) · {path}"
    table = Table(title=title, title_justify="left")
    metric = metric_beside(path)
    columns = [("#", "right"), ("commit", "left"), (metric.name, "right"), ("mem GB", "right"),
               ("status", "left"), ("kind", "left"), ("description", "left")]
    if by_worker:
        columns.insert(-1, ("worker", "left"))
    for name, justify in columns:
        table.add_column(name, justify=justify, overflow="fold")
    for n, r, worker in rows:
        detail = f" [{r.reason}]" if r.is_crash and r.reason else ""
        cells = [str(n), r.commit, "-" if r.is_crash else f"{metric.value(r.val_bpb):.6f}",
                 f"{r.memory_gb:.1f}", Text(r.status, STATUS_STYLE.get(r.status, "")),
                 r.kind or "-", Text(r.description + detail)]
        if by_worker:
            cells.insert(-1, worker)
        table.add_row(*cells)
    return table


def resolve_commit(repo: Path, ref: str, tag: str | None) -> str:
    """A commit from what the user typed: a sha (prefix) or an experiment number (`7`)."""
    git = Git(repo)
    git.check_repo()
    if ref.isdigit() and len(ref) < 7:
        all_rows = read_rows(repo / RESULTS)
        tag = choose_tag(tags_by_start(repo, all_rows), tag)
        rows = [r for r in all_rows
                if r.experiment == int(ref) and (tag is None or r.tag == tag)]
        if rows:
            return git.resolve(tried_ref(rows[0].tag, int(ref))) or git.resolve(rows[0].commit)
    commit = git.resolve(ref)
    if commit is None:
        raise UserError(f"{ref!r} is neither a commit nor an experiment number in results.tsv")
    return commit


def diff(repo: Path, ref: str, tag: str | None, console: Console) -> None:
    text = redact(Git(repo, load_target(repo).editable).show(resolve_commit(repo, ref, tag)))
    if console.is_terminal:
        from rich.syntax import Syntax  # pygments' lexers: ~30 ms that only this view needs

        console.print(Syntax(text, "diff", theme="ansi_dark", word_wrap=True))
    else:
        sys.stdout.write(text)


def digest(repo: Path, tag: str) -> str:
    """The research journal's digest, as the agents get it: the bounded summary of the night."""
    target = load_target(repo)
    program = repo / target.program
    return build_digest(load_journal(tag_dir(repo, tag) / JOURNAL),
                        program.read_text(errors="replace") if program.is_file() else "",
                        metric=target.metric)


def journal(repo: Path, tag: str | None, full: bool, console: Console) -> None:
    tag = resolve_tag(repo, tag)
    if not full:
        console.print(digest(repo, tag), markup=False)
        return
    entries = load_journal(tag_dir(repo, tag) / JOURNAL)
    metric = metric_beside(repo / RESULTS)
    for e in entries:
        value = "-" if e.val_bpb is None else f"{metric.value(e.val_bpb):.6f}"
        delta = "" if e.delta is None else f" ({signed(metric.value(e.delta))})"
        links = "".join(f" {k.replace('_', ' ')} #{v}" for k, v in e.links.items())
        changes = f" [{', '.join(e.changes)}]" if e.changes else ""
        extra = f" ({describe_extra(e.extra)})" if e.extra else ""
        console.print(Text.assemble(
            f"#{e.n} {e.kind} w{e.worker} ", (e.status, STATUS_STYLE.get(e.status, "")),
            redact(f" {value}{delta}{extra} {e.description}{changes}{links}"),
            (redact(f" - {e.reason}") if e.reason else "", "dim")))
