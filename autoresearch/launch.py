"""`agent_loop.py run` once its arguments are read: the backend opened (this machine's GPUs or a
Ray cluster), an agent made for every worker, the loop run on a console; why it ended."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from autoresearch.agents import Agent
from autoresearch.config import Harness, Options
from autoresearch.errors import UserError
from autoresearch.execution.executor import Executor
from autoresearch.execution.local import LocalConfig, bytecode_warning
from autoresearch.execution.ray import RayConfig
from autoresearch.review.console import make_console
from autoresearch.scheduler import Loop
from autoresearch.workspace.guard import data_fingerprint


def launch(repo: Path, opts: Options, backend: LocalConfig | RayConfig,
           make_agent: Callable[[], Agent], plain: bool) -> str:
    """Run the loop on `backend` with an agent per worker; why it ended (Loop.run)."""
    executor: Executor | None = None
    if isinstance(backend, RayConfig):
        slots, executor = backend.open(data_fingerprint(Harness.of(repo, opts.target).cache_dir))
    else:
        slots = backend.slots()
    opts.train_cmd = backend.command()
    agents = [make_agent() for _ in slots]
    if opts.max_cost is not None and not agents[0].cost_known:
        raise UserError(f"--max-cost needs the dollar cost of every agent call, and "
                        f"{agents[0].name} has no known price: pass --price-in and --price-out "
                        "(USD per million tokens), or drop --max-cost")
    if not opts.target.custom and (note := bytecode_warning()):  # about train.py's PyTorch
        print(note, file=sys.stderr)
    with make_console(plain, opts.target.metric) as ui:
        return Loop(repo, opts, agents, ui, executor=executor, slots=slots).run()
