"""The morning-review commands of agent_loop.py: plot, summary, sample, dashboard.

    uv run agent_loop.py summary                 # what happened overnight, in numbers
    uv run agent_loop.py plot                    # progress.png
    uv run agent_loop.py sample 42 --prompt "Once upon a time"
    uv run agent_loop.py dashboard               # http://127.0.0.1:8765/, live while the loop runs
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from autoresearch.artifacts.checkpoints import resolve_run
from autoresearch.artifacts.sample import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_PROMPT,
    DEFAULT_SEED,
    DEFAULT_TEMPERATURE,
    DEFAULT_TOP_K,
    sample_run,
)
from autoresearch.errors import UserError
from autoresearch.memory.journal import describe_extra
from autoresearch.model import Row
from autoresearch.policy import signed
from autoresearch.review.console import duration
from autoresearch.review.report import (
    TOP_IMPROVEMENTS,
    Summary,
    events_log,
    is_experiment,
    kept_extras,
    noise_summary,
    noise_threshold,
    runs_saved,
    summarize,
    with_runs,
)
from autoresearch.review.views import choose_tag, read_rows, state_repo, tags_by_start
from autoresearch.target import DEFAULT, Metric, metric_beside
from autoresearch.verify.private import PrivateSummary, private_summary

DEFAULT_PORT = 8765

ResultsOpt = Annotated[Path, typer.Option(
    "--results", help="results.tsv to read, any tool's (relative to --repo)")]
TagOpt = Annotated[str | None, typer.Option(
    "--tag", help="loop tag (default: the newest, the one whose loop started last)")]
RepoOpt = Annotated[Path, typer.Option("--repo", "-C", help="the autoresearch checkout")]


def _load(repo: Path, results: Path, tag: str | None
          ) -> tuple[Path, list[Row], str | None, Path | None]:
    """results.tsv's path, the chosen tag's rows, the tag, and its events.log (a loop's)."""
    results = repo / results  # an absolute path replaces repo
    if not results.exists():
        raise UserError(f"{results} not found: run the loop first, or point --results at a file")
    rows = read_rows(results)
    loop_repo = state_repo(repo, results)
    tag = choose_tag(tags_by_start(loop_repo, rows), tag)
    rows = [r for r in rows if tag is None or r.tag == tag]
    if not rows:
        raise UserError(f"{results} has no runs yet")
    return results, rows, tag, events_log(loop_repo, tag)


def plot(
    results: ResultsOpt = Path("results.tsv"),
    out: Annotated[Path, typer.Option("--out", help="PNG to write")] = Path("progress.png"),
    tag: TagOpt = None,
    repo: RepoOpt = Path("."),
) -> None:
    """Draw every run's val_bpb into progress.png: kept runs and the running best,
    discarded ones faint, crashes as red crosses, the noise band and the best's description.

    \b
    Examples:
      uv run agent_loop.py plot
      uv run agent_loop.py plot --results other/results.tsv --out night.png
    """
    from autoresearch.review.plot import (
        plot_progress,  # matplotlib is slow to import: only when needed
    )

    results, rows, tag, events = _load(repo, results, tag)
    threshold = noise_threshold(repo, tag, rows)
    path = plot_progress(rows, out, threshold=threshold, events=events,
                         metric=metric_beside(results))
    experiments = sum(map(is_experiment, rows))
    typer.echo(f"wrote {path} ({len(rows)} runs, {experiments} experiments)")


def summary(
    results: ResultsOpt = Path("results.tsv"),
    tag: TagOpt = None,
    top: Annotated[int, typer.Option(
        "--top", help="how many top improvements to list")] = TOP_IMPROVEMENTS,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    repo: RepoOpt = Path("."),
) -> None:
    """Runs by kind, experiments kept/discarded/crashed, best val_bpb and gain over the
    baseline, experiments and runs per hour of the loop's running time, GPU (or CPU) hours,
    agent cost, the biggest improvements, and with several workers what each one ran.

    \b
    Examples:
      uv run agent_loop.py summary
      uv run agent_loop.py summary --top 10 --json
    """
    results, rows, tag, events = _load(repo, results, tag)
    stats = summarize(rows, top=top, events=events, metric=metric_beside(results),
                      extras=kept_extras(repo, tag))
    stats.runs_saved = runs_saved(repo, tag)
    stats.noise = noise_summary(repo, tag)
    private = private_summary(rows, stats.improvement)
    if as_json:
        scored = {"private": asdict(private)} if private.baseline is not None else {}
        typer.echo(json.dumps(dict(asdict(stats), **scored), indent=2))
        return
    print_summary(stats, title=f"autoresearch summary — {tag or results.name}", private=private)


def print_summary(s: Summary, title: str, private: PrivateSummary | None = None) -> None:
    console = Console()
    table = Table(title=title, show_header=False, title_justify="left", box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    kinds = ", ".join(f"{n} {kind}" for kind, n in s.runs_by_kind.items())
    table.add_row("runs", f"{s.runs}  ({kinds})")
    table.add_row("experiments", f"{s.experiments}  ([green]{s.kept} kept[/], "
                  f"[dim]{s.discarded} discarded[/], [red]{s.crashed} crashed[/])")
    metric = Metric(s.metric, s.direction)
    if metric != DEFAULT.metric:  # the LLM harness's val_bpb needs no introduction
        table.add_row("metric", metric.label)
    table.add_row(f"baseline {s.metric}", "—" if s.baseline_bpb is None else
                  with_runs(s.baseline_bpb, s.baseline_runs))
    if s.best_bpb is not None:
        table.add_row(f"best {s.metric}", f"[green]{s.best_label}[/]  "
                      f"#{s.best_experiment} {s.best_commit}  {s.best_description}")
    if s.improvement is not None:
        pct = "" if s.improvement_pct is None else \
            f" ({signed(metric.value(-s.improvement_pct), 2)}%)"
        table.add_row("improvement", f"{signed(metric.value(-s.improvement))}{pct}")
    if private is not None and private.baseline is not None:
        table.add_row("private split", private_text(private))
    estimated = " (from the rows' timestamps)" if s.active_estimated else ""
    table.add_row("experiments/hour", "—" if s.active_hours is None else
                  f"{_num(s.experiments_per_hour, 1)}  (runs/hour {_num(s.runs_per_hour, 1)}, "
                  f"over {duration(s.active_hours * 3600)} of loop time{estimated})")
    approx = " (partly from timestamps)" if s.gpu_hours_estimated else ""
    table.add_row(s.hours_label, _num(s.gpu_hours, 2) + approx)
    if s.noise:
        table.add_row("noise", s.noise)
    table.add_row("agent cost", f"${s.cost_usd:.2f}" if s.cost_usd is not None else "—")
    if s.runs_saved is not None:
        table.add_row("runs saved", f"{s.runs_saved} (proposals not run: the same program had "
                                    f"run, or a change of comments only)")
    console.print(table)
    if len(s.workers) > 1:
        console.print(workers_table(s))
    if s.top_improvements:
        steps = Table(title="top improvements", title_justify="left")
        extra = any(step.extra for step in s.top_improvements)  # a target's own extra metrics
        for name, justify in (("#", "right"), ("commit", "left"), ("best after", "right"),
                              ("gain", "right"), ("how sure", "left"),
                              *([("extras", "left")] if extra else []),
                              ("description", "left")):
            steps.add_column(name, justify=justify)
        for step in s.top_improvements:
            steps.add_row(str(step.experiment), step.commit[:7], f"{step.val_bpb:.6f}",
                          _delta(step.delta, metric), step.evidence or "—",
                          *([describe_extra(step.extra) or "—"] if extra else []),
                          step.description)
        console.print(steps)


def private_text(p: PrivateSummary) -> str:
    """Baseline and best on the private held-out split, the improvement there, and the gap to
    the public one (README: Held-out verification)."""
    text = f"baseline {_num(p.baseline)}, best {_num(p.best)}"
    if p.improvement is not None:
        text += f", improvement {signed(-p.improvement)}"
    if p.gap is not None:
        text += f", gap to public {signed(p.gap)}"
    return text


def workers_table(s: Summary) -> Table:
    """Which worker, on which GPU of which node, ran how many runs, how many keeps, how long."""
    table = Table(title="workers", title_justify="left")
    for name, justify in (("worker", "left"), ("gpu", "left"), ("device", "left"),
                          ("node", "left"), ("runs", "right"), ("keeps", "right"),
                          (s.hours_label, "right")):
        table.add_column(name, justify=justify)
    for w in s.workers:
        approx = " (partly from timestamps)" if w.hours_estimated else ""
        table.add_row("-" if w.worker is None else f"w{w.worker}", w.gpu or "-", w.device or "-",
                      w.node or "-", str(w.runs), str(w.kept), _num(w.hours, 2) + approx)
    return table


def _delta(delta: float, metric: Metric = DEFAULT.metric) -> str:
    """An improvement (a gain, positive = better) as the change in the metric, green: negative
    for val_bpb, positive for a higher-is-better metric."""
    change = signed(metric.value(-delta))
    return f"[green]{change}[/]" if change != signed(0.0) and delta > 0 else change


def _num(value: float | None, digits: int = 6) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def sample(
    run: Annotated[str, typer.Argument(help="run dir, run name, experiment number or commit")],
    prompt: Annotated[str, typer.Option("--prompt")] = DEFAULT_PROMPT,
    max_tokens: Annotated[int, typer.Option("--max-tokens")] = DEFAULT_MAX_TOKENS,
    temperature: Annotated[float, typer.Option("--temperature", help="0 = greedy")]
    = DEFAULT_TEMPERATURE,
    top_k: Annotated[int, typer.Option("--top-k", help="0 = no top-k cut")] = DEFAULT_TOP_K,
    seed: Annotated[int, typer.Option("--seed")] = DEFAULT_SEED,
    device: Annotated[str | None, typer.Option("--device", help="cuda, cpu, mps")] = None,
    repo: RepoOpt = Path("."),
) -> None:
    """Generate text with an experiment's weights, loaded with that experiment's own train.py
    (the copy in its run dir). Only kept runs have weights; older ones are pruned.

    \b
    Examples:
      uv run agent_loop.py sample 42 --prompt "Once upon a time"
      uv run agent_loop.py sample a1b2c3d --temperature 0 --max-tokens 100 --device cpu
    """
    run_dir = resolve_run(repo, run)
    text = sample_run(run_dir, prompt, max_tokens=max_tokens, temperature=temperature,
                      top_k=top_k or None, seed=seed, device=device, repo=repo)
    typer.echo(text)


def dashboard(
    port: Annotated[int, typer.Option("--port")] = DEFAULT_PORT,
    host: Annotated[str, typer.Option("--host", help="bind address (LAN: 0.0.0.0)")]
    = "127.0.0.1",
    tag: TagOpt = None,
    results: ResultsOpt = Path("results.tsv"),
    repo: RepoOpt = Path("."),
) -> None:
    """Serve a live, read-only web page of the loop: chart, experiments (and which worker ran
    each), each one's diff, log and sample, what each worker does now, and the research journal's
    digest. Ctrl-C stops it.

    \b
    Examples:
      uv run agent_loop.py dashboard                      # http://127.0.0.1:8765/
      ssh -L 8765:127.0.0.1:8765 gpu-box                  # then browse it from your laptop
    """
    # the web server's modules (http.server and the like) load only for this command
    from autoresearch.review.dashboard import LOOPBACK, Board, make_server

    results = repo / results  # an absolute path replaces repo
    rows = read_rows(results) if results.exists() else []
    tag_shown = choose_tag(tags_by_start(state_repo(repo, results), rows), tag)
    server = make_server(Board(repo, results, tag), host, port)
    url = f"http://{host}:{server.server_address[1]}/"
    shown = f"tag {tag_shown}" if tag_shown else "no loop yet"
    typer.echo(f"dashboard: {url}  ({shown}; read-only; Ctrl-C to stop)")
    if host not in LOOPBACK:
        typer.secho("warning: listening beyond this machine: anyone who can reach it can read "
                    "your logs and diffs", fg="yellow")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def register(app: typer.Typer) -> None:
    """Add plot, summary, sample and dashboard to agent_loop.py's app."""
    app.command("plot")(plot)
    app.command("summary")(summary)
    app.command("sample")(sample)
    app.command("dashboard")(dashboard)
