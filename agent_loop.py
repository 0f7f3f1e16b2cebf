"""autoresearch: an agent edits train.py overnight; this loop commits, runs, measures, decides,
records and reverts, so nothing is forgotten.

\b
Start (or resume, with the same command) a run on branch autoresearch/<tag>:
  uv run agent_loop.py run --tag nov21 --agent claude
  uv run agent_loop.py run --tag nov21 --agent openai --model gpt-5 --hours 8 --max-cost 20
  uv run agent_loop.py run --tag cpu-demo --agent sweep --max-experiments 5
  uv run agent_loop.py run --tag dec1 --agent claude --gpus all      # a worker per GPU
  uv run agent_loop.py run --tag dec1 --agent codex --ray auto       # runs as Ray tasks
Watch and steer it from another terminal (from any folder of the checkout, or name it with
-C path, before or after the command):
  uv run agent_loop.py status
  uv run agent_loop.py results --top 10
  uv run agent_loop.py diff 7
  uv run agent_loop.py journal
  uv run agent_loop.py stop
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from autoresearch.config import PLATEAU_AFTER
from autoresearch.errors import UserError
from autoresearch.ledger.state import read_live, request_stop
from autoresearch.names import (
    DEFAULT_DRIFT_STD,
    DEFAULT_FLOOR,
    MAX_REPLICAS_PAIRS,
    MAX_REPLICAS_RUNS,
)
from autoresearch.redact import redact
from autoresearch.review import review_cli, views
from autoresearch.workspace.git import find_root


class App(typer.Typer):
    """A Typer app whose commands turn a UserError into one red line and exit status 1, and get
    their `repo` as the absolute root of the checkout (see checkout)."""

    def command(self, *args, **kwargs) -> Callable:
        register = super().command(*args, **kwargs)

        def decorator(func: Callable) -> Callable:
            @functools.wraps(func)
            def friendly(*a, **kw):
                try:
                    if "repo" in kw:
                        kw["repo"] = checkout(kw["repo"])
                    return func(*a, **kw)
                except UserError as e:
                    err = Console(stderr=True, highlight=False, soft_wrap=True)
                    err.print(f"error: {redact(str(e))}", style="red", markup=False)
                    raise typer.Exit(1) from None

            register(friendly)
            return func

        return decorator


app = App(help=__doc__, no_args_is_help=True, add_completion=False, rich_markup_mode=None)
review_cli.register(app)

Repo = Annotated[Path, typer.Option("--repo", "-C", help="the autoresearch checkout")]
Tag = Annotated[str | None, typer.Option(
    "--tag", help="which loop tag (default: the newest, the one whose loop started last)")]
BEFORE_COMMAND: dict[str, Path | None] = {"repo": None}  # -C given before the command


@app.callback()
def main(repo: Annotated[Path | None, typer.Option(
        "--repo", "-C", help="the autoresearch checkout, for any command (as with git -C)")
         ] = None) -> None:
    """Runs before every command: keeps its -C for checkout()."""
    BEFORE_COMMAND["repo"] = repo


def checkout(repo: Path) -> Path:
    """The root of the checkout a command works on, absolute: the command's -C taken from the
    one before the command (as `git -C a -C b` is a/b; an absolute one stands alone), from the
    current folder without either, then git's top level of that, so every command finds the same
    root from any subfolder and every path handed on to git or a child process is absolute."""
    return find_root((BEFORE_COMMAND["repo"] or Path(".")) / repo)


def positive(value: float | None) -> float | None:
    """Typer callback: None or a number above zero."""
    if value is not None and value <= 0:
        raise typer.BadParameter(f"must be greater than 0, got {value:g}")
    return value


@app.command()
def run(
    tag: Annotated[str, typer.Option(help="name of the run: branch autoresearch/<tag>")],
    agent: Annotated[str, typer.Option(
        help="who proposes edits: sweep (no LLM, no key), claude, codex, openai, anthropic")],
    model: Annotated[str | None, typer.Option(help="model name for the backend")] = None,
    base_url: Annotated[str | None, typer.Option(
        help="API endpoint (openai/anthropic), e.g. http://127.0.0.1:8000/v1 for a local "
             "server")] = None,
    api_key_env: Annotated[str | None, typer.Option(
        help="environment variable holding the API key")] = None,
    gpus: Annotated[str | None, typer.Option(
        help="run one worker per listed GPU: 'all', '0,1,2,3', or '0,0' (two workers on GPU 0)."
             " Default: one worker on the GPU (or CPU) this process sees")] = None,
    mixed_gpus: Annotated[bool, typer.Option(
        help="allow GPUs of different models (runs are then compared only within a model)")
    ] = False,
    workers: Annotated[int | None, typer.Option(
        min=1, help="run N workers on the CPU, GPUs hidden (a target with gpu = false; default "
                    "1 for such a target); with --ray, N runs at once on the cluster's "
                    "CPUs")] = None,
    ray: Annotated[str | None, typer.Option(
        help="run on a Ray cluster, one task per GPU: 'auto' (the cluster on this machine), "
             "host:6379 or ray://host:10001 (needs `uv sync --extra ray`)")] = None,
    max_experiments: Annotated[int | None, typer.Option(
        min=0, help="stop after N agent experiments in this tag (baseline, noise and "
                    "confirmation runs not counted)")] = None,
    hours: Annotated[float | None, typer.Option(
        callback=positive, help="start no new run after H hours of this invocation")] = None,
    max_cost: Annotated[float | None, typer.Option(
        min=0, help="stop proposing when agent spend in this tag reaches USD")] = None,
    price_in: Annotated[float | None, typer.Option(
        min=0, help="USD per million input tokens, for a model without a list price (codex, a "
                    "local or routed model); with --price-out")] = None,
    price_out: Annotated[float | None, typer.Option(
        min=0, help="USD per million output tokens; with --price-in")] = None,
    noise_runs: Annotated[int, typer.Option(
        min=0, help="extra baseline runs to measure noise: the first wave runs the baseline on "
                    "every worker at once, in rounds, until at least 1 + N runs (0: one round; "
                    "the noise is learnt from the first replicas)")] = 2,
    noise_floor: Annotated[float, typer.Option(
        min=0, help="your minimum val_bpb gain: a keep's measured gain must clear it (the "
                    "sequential test sets the bar above it)")] = DEFAULT_FLOOR,
    max_pairs: Annotated[int | None, typer.Option(
        min=1, help="most replicas that confirm one candidate after its first run: runs of it "
                    f"(default {MAX_REPLICAS_RUNS}), or with --controls, (control, candidate) "
                    f"pairs (default {MAX_REPLICAS_PAIRS})", show_default=False)] = None,
    controls: Annotated[bool, typer.Option(
        help="confirm with (control, candidate) pairs on one worker instead of runs of the "
             "candidate against its parent's fitted value: twice the runs, safe on a machine "
             "that drifts fast")] = False,
    alpha: Annotated[float | None, typer.Option(
        min=0.001, max=0.5, help="the false-keep rate: how often a change with no real gain is "
                                 "kept (default 0.015, which holds false keeps under 5 % of "
                                 "keeps up to a run-to-run std of 0.0009; 0.05 with "
                                 "--controls). 0.03 on a quiet machine (std 0.0003) keeps "
                                 "~2 points more of the gain (BENCHMARKS.md)")
    ] = None,
    drift_std: Annotated[float, typer.Option(
        min=0, help="how far a worker's val_bpb wanders a run (the std of a random walk's "
                    "step): the test widens a gain's error by the age of its parent's runs. "
                    "Measure it with repeated baseline runs (scripts/bench-variance.py)")
    ] = DEFAULT_DRIFT_STD,
    timeout: Annotated[float | None, typer.Option(
        callback=positive, help="seconds before a run is killed (default 2 x TIME_BUDGET + "
                                "120)")] = None,
    max_fix_attempts: Annotated[int, typer.Option(
        min=0,
        help="times the agent may fix its own crashed experiment (syntax/import/other)")] = 2,
    plateau_after: Annotated[int, typer.Option(
        min=0, help="experiments in a row without a keep before the agents are asked for a "
                    "different kind of change (0 = never)")] = PLATEAU_AFTER,
    keep_checkpoints: Annotated[int, typer.Option(
        min=0, help="keep model.pt of the newest K keeps (the kept line's best), delete the "
        "rest")] = 3,
    train_cmd: Annotated[str | None, typer.Option(
        envvar="AUTORESEARCH_TRAIN_CMD",
        help="command that trains, run in the run folder (default: this python + train.py)")
    ] = None,
    agent_timeout: Annotated[float, typer.Option(
        callback=positive, help="seconds per agent call before it counts as failed")] = 900.0,
    seed: Annotated[int, typer.Option(help="seed for the sweep agent")] = 0,
    sample: Annotated[bool, typer.Option(
        help="write sample_output.txt (text from the model) for each kept run")] = True,
    verify: Annotated[bool, typer.Option(
        help="verify each keep on the private held-out split, which runs cannot read "
             "(README: Held-out verification)")] = True,
    plain: Annotated[bool, typer.Option(
        help="plain line output even on a terminal (automatic when piped)")] = False,
    repo: Repo = Path("."),
) -> None:
    """Start or resume the research loop on branch autoresearch/<tag>.

    \b
    The first wave runs the unmodified code on every worker (the baseline, and the noise
    threshold); then, on every worker, until stopped: its agent edits train.py, the loop
    commits, runs, decides, appends a row to results.tsv. Your checkout is never touched:
    agents work in .autoresearch/<tag>/trees/. Kill it any way you like (Ctrl-C finishes the
    runs under way, twice aborts them) and run the same command again to continue.

    \b
    Examples:
      uv run agent_loop.py run --tag nov21 --agent claude
      uv run agent_loop.py run --tag nov21 --agent claude --gpus all
      uv run agent_loop.py run --tag nov21 --agent codex --ray auto
      uv run agent_loop.py run --tag nov21 --agent openai --model gpt-5 --hours 8 --max-cost 20
      uv run agent_loop.py run --tag nov21 --agent openai --base-url http://127.0.0.1:8000/v1
      AUTORESEARCH_PROFILE=cpu uv run agent_loop.py run --tag demo --agent sweep --max-experiments 3
    """
    from autoresearch.agents import make_agent, price_option
    from autoresearch.config import Options
    from autoresearch.execution.local import LocalConfig
    from autoresearch.execution.ray import RayConfig
    from autoresearch.launch import launch
    from autoresearch.target import target_to_run

    target = target_to_run(repo)  # first: a bad [tool.autoresearch] table is the user's to fix
    opts = Options(tag=tag, target=target, noise_runs=noise_runs, noise_floor=noise_floor,
                   timeout=timeout, max_pairs=max_pairs, controls=controls,
                   drift_std=drift_std, alpha=alpha, max_experiments=max_experiments,
                   hours=hours, max_cost=max_cost, max_fix_attempts=max_fix_attempts,
                   keep_checkpoints=keep_checkpoints, sample=sample, gpus=gpus,
                   mixed_gpus=mixed_gpus, plateau_after=plateau_after, verify=verify,
                   workers=workers)
    backend = RayConfig(ray, mixed_gpus, train_cmd, gpus, workers, target.gpu,
                        not target.custom) if ray else \
        LocalConfig(gpus, mixed_gpus, train_cmd, workers, target.gpu)
    price = price_option(price_in, price_out)
    reason = launch(repo, opts, backend, functools.partial(
        make_agent, agent, model=model, base_url=base_url, api_key_env=api_key_env,
        timeout=agent_timeout, seed=seed, price=price), plain)
    typer.echo(f"stopped: {reason}. {how_to_continue(reason, tag)}")
    if reason.startswith("aborted"):
        raise typer.Exit(130)


def how_to_continue(reason: str, tag: str) -> str:
    """What the user runs next, for each way the loop can end."""
    review = f"review with `uv run agent_loop.py summary --tag {tag}`"
    if "--max-experiments" in reason:
        return f"To go on, run the same command with a larger --max-experiments; {review}"
    if "--max-cost" in reason:
        return f"To go on, run the same command with a larger --max-cost; {review}"
    return f"Resume with the same command; {review}"


@app.command()
def status(tag: Tag = None, repo: Repo = Path(".")) -> None:
    """What is running now, the best so far, the noise threshold and how it was measured,
    counts and agent cost.

    \b
    Example:
      uv run agent_loop.py status --tag nov21
    """
    views.status(repo, tag, Console(highlight=False, soft_wrap=True))


@app.command()
def results(
    top: Annotated[int | None, typer.Option(help="only the N best (lowest val_bpb)")] = None,
    kept_only: Annotated[bool, typer.Option(help="only the keeps (kept experiments)")] = False,
    tag: Annotated[str | None, typer.Option(help="the tag to show (default: the newest)")] = None,
    results_file: Annotated[Path, typer.Option("--results", help="results.tsv to read")] = Path(
        "results.tsv"),
    repo: Repo = Path("."),
) -> None:
    """Show results.tsv as a table.

    \b
    Examples:
      uv run agent_loop.py results
      uv run agent_loop.py results --top 10 --kept-only
    """
    path = repo / results_file  # an absolute path replaces repo
    if not path.exists():
        raise UserError(f"{path} not found: the loop writes it after its first run")
    Console(highlight=False).print(
        views.results_table(path, views.state_repo(repo, path), tag, top, kept_only))


@app.command()
def diff(
    ref: Annotated[str, typer.Argument(help="a commit (sha prefix) or an experiment number")],
    tag: Tag = None,
    repo: Repo = Path("."),
) -> None:
    """What an experiment changed in train.py (`git show` of its commit), kept or not.

    \b
    Examples:
      uv run agent_loop.py diff 7           # experiment number 7 (results.tsv column)
      uv run agent_loop.py diff a1b2c3d     # a commit from results.tsv
    """
    views.diff(repo, ref, tag, Console(highlight=False))


@app.command()
def journal(
    full: Annotated[bool, typer.Option(help="every entry, one line each, instead of the digest")
                    ] = False,
    tag: Tag = None,
    repo: Repo = Path("."),
) -> None:
    """The tag's research journal: the digest the agents read (what worked, what failed by
    theme, near-misses, crash causes, untried ideas from program.md), or --full, every run.

    \b
    Examples:
      uv run agent_loop.py journal
      uv run agent_loop.py journal --full --tag nov21
    """
    views.journal(repo, tag, full, Console(highlight=False, soft_wrap=True))


@app.command()
def stop(
    now: Annotated[bool, typer.Option(
        help="abort the running experiment instead of letting it finish (it is re-run by the "
             "next `run`)")] = False,
    tag: Tag = None,
    repo: Repo = Path("."),
) -> None:
    """Ask a running loop to stop cleanly: after the current experiment, or --now.

    \b
    Examples:
      uv run agent_loop.py stop
      uv run agent_loop.py stop --now
    """
    tag = views.resolve_tag(repo, tag)
    request_stop(repo, tag, now)
    when = "now (the experiment under way is re-run by the next `run`)" if now else \
        "after the current experiment"
    typer.echo(f"asked loop {tag} to stop {when}" if views.loop_running(read_live(repo, tag)) else
               f"no loop of tag {tag} seems to be running (flag written; `run` clears it when "
               f"it starts)")


if __name__ == "__main__":
    app()
