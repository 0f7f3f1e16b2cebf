"""What the loop shows while it runs.

On a terminal: a rich Live panel (current experiment, its training progress, best val_bpb, time
left, the last few outcomes) under a scrolling log of events. When stdout is not a terminal
(nohup, CI, `| tee`): plain timestamped lines, with a progress line at most once a minute.
Every text that comes from outside (events, descriptions, reasons) is shown redacted.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from autoresearch.model import Row
from autoresearch.redact import redact
from autoresearch.target import DEFAULT, Metric

RECENT_OUTCOMES = 6
PLAIN_PROGRESS_EVERY = 60.0  # seconds between progress lines in plain output
STATUS_STYLE = {"keep": "green", "discard": "yellow", "crash": "red"}


def make_console(plain: bool = False, metric: Metric = DEFAULT.metric) -> PlainConsole:
    """The loop's console; its values are `metric`'s own (rows and live.json hold its loss)."""
    console = Console(highlight=False, soft_wrap=True)
    return PlainConsole(console, metric) if plain or not console.is_terminal else \
        LiveConsole(console, metric)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def outcome_text(row: Row, metric: Metric = DEFAULT.metric) -> Text:
    value = "-" if row.is_crash else f"{metric.value(row.val_bpb):.6f}"
    detail = f" ({row.reason})" if row.reason else ""
    return Text.assemble(
        (f"#{row.experiment} {row.status:<7}", STATUS_STYLE.get(row.status, "")),
        redact(f" {value} {row.commit} {row.kind}: {row.description}{detail}"))


class PlainConsole:
    def __init__(self, console: Console, metric: Metric = DEFAULT.metric):
        self.console = console
        self.metric = metric
        self.last_progress = 0.0

    def __enter__(self) -> PlainConsole:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def event(self, text: str, style: str = "") -> None:
        stamp = datetime.now().strftime("%H:%M:%S")
        self.console.print(Text(f"{stamp} {redact(text)}", style=style))

    def outcome(self, row: Row) -> None:
        stamp = datetime.now().strftime("%H:%M:%S")
        self.console.print(Text.assemble(f"{stamp} ", outcome_text(row, self.metric)))

    def update(self, live: dict) -> None:
        now = datetime.now().timestamp()
        if live.get("phase") in ("training", "evaluating") and live.get("step") is not None \
                and now - self.last_progress >= PLAIN_PROGRESS_EVERY:
            self.last_progress = now
            self.event(f"#{live.get('experiment')} {live['phase']}: step {live['step']} "
                       f"({live.get('progress_pct', 0):.1f}%), loss {live.get('loss')}, "
                       f"{duration(live.get('remaining_s'))} left")


class LiveConsole(PlainConsole):
    def __init__(self, console: Console, metric: Metric = DEFAULT.metric):
        super().__init__(console, metric)
        self.state: dict = {}
        self.recent: deque[Row] = deque(maxlen=RECENT_OUTCOMES)
        self.live = Live(self.render(), console=console, refresh_per_second=2)

    def __enter__(self) -> LiveConsole:
        self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.stop()

    def outcome(self, row: Row) -> None:
        super().outcome(row)
        self.recent.append(row)
        self.live.update(self.render())

    def update(self, live: dict) -> None:
        self.state = live
        self.live.update(self.render())

    def render(self) -> Panel:
        s = self.state
        best = s.get("best_val_bpb")
        threshold = s.get("threshold")
        header = Text.assemble(
            ("best ", "dim"),
            (f"{self.metric.value(best):.6f}" if best is not None else "-", "bold green"),
            f" {s.get('best_commit', '')}",
            ("   threshold ", "dim"), f"{threshold:.6f}" if threshold is not None else "-",
            ("   time left ", "dim"), duration(s.get("time_left_s")) if s.get("time_left_s")
            is not None else "no --hours limit",
            ("   stopping: finishing the runs under way" if s.get("stopping") else "",
             "bold yellow"))
        workers = live_workers(s)
        rows = Table.grid(padding=(0, 1))
        for w in workers:
            rows.add_row(*worker_row(w, len(workers) > 1))
        queue = Text(f"queued {s.get('queued', 0)} · confirming {s.get('confirming', 0)}",
                     style="dim")
        outcomes = [outcome_text(row, self.metric) for row in self.recent] or \
            [Text("no results yet", "dim")]
        title = f"autoresearch {s.get('tag', '')} · agent {s.get('agent', '')}"
        lines = [header, queue, Text("last outcomes", "dim"), *outcomes]
        for line in lines:
            # the console soft-wraps (a log line is never cut), which would cut these at the
            # panel's edge: on an 80-column terminal most of a description was lost
            line.no_wrap, line.overflow = False, "fold"
        return Panel(Group(lines[0], rows, *lines[1:]), title=title, border_style="blue")


def live_workers(live: dict) -> list[dict]:
    """live.json's workers in worker order; a file from before the loop had several is one."""
    workers = (live.get("workers") or {"0": live}) if live else {}
    return [workers[k] for k in sorted(workers, key=lambda k: int(k) if k.isdigit() else -1)]


def worker_row(w: dict, named: bool) -> tuple:
    """A worker's line in the live panel: its GPU's run and progress, and what its agent does."""
    pct = w.get("progress_pct") or 0.0
    busy = w.get("phase") in ("training", "evaluating")
    loss = w.get("loss")
    what = Text.assemble(
        (f"#{w.get('experiment')} {w.get('kind', '')} ", "bold") if busy else ("", ""),
        redact(f"{w.get('commit', '')} {w.get('description', '')}") if busy else "",
        f"  {w.get('phase', 'idle')}",
        f" step {w['step']}" if busy and w.get("step") is not None else "",
        f" loss {loss:.4f}" if busy and isinstance(loss, float) else "",
        f" {duration(w.get('remaining_s'))} left" if busy and w.get("remaining_s") else "",
        ("  agent: " + redact(w.get("agent_task", "")), "cyan")
        if w.get("agent_phase") == "proposing" else "")
    gpu = f" gpu{w['gpu']}" if w.get("gpu") else ""
    name = Text(f"w{w.get('worker', 0)}{gpu}" if named else "", style="dim")
    return name, ProgressBar(total=100, completed=pct if busy else 0, width=20), what
