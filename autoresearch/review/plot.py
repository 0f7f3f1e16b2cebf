"""progress.png: the night at a glance.

Every run's val_bpb over experiment number: kept runs in green joined by the running best (a step
line), discarded ones faint grey, crashes as red crosses on the bottom edge (their val_bpb is 0.0),
runs far worse than the baseline as grey triangles on the top edge, the noise band around the best,
and the best run's description written next to it. Drawn with matplotlib's Agg canvas directly, so
no display and no pyplot global state are involved.
"""

from __future__ import annotations

from pathlib import Path

from autoresearch.errors import UserError
from autoresearch.ledger.results import Row
from autoresearch.review.report import (
    experiment_numbers,
    is_measured,
    running_best,
    summarize,
    y_limits,
)

FIGSIZE = (12, 6.5)  # inches
DPI = 130
KEEP_COLOR = "#1a9850"
DISCARD_COLOR = "#9e9e9e"
CRASH_COLOR = "#d73027"
BAND_ALPHA = 0.13
MAX_LABEL = 70  # characters of the best run's description shown on the plot
LABELED_STEPS = 4  # the biggest improvements also get a small caption


def plot_progress(rows: list[Row], out: Path, *, threshold: float | None = None) -> Path:
    """Draw the progress chart of `rows` into the PNG `out` and return its path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.transforms import blended_transform_factory

    if not rows:
        raise UserError("results.tsv has no rows yet: start the loop (agent_loop.py run) first")
    xs = experiment_numbers(rows)
    summary = summarize(rows)
    limits = y_limits(rows, threshold) or (0.0, 1.0)
    lo, hi = limits

    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    on_edge = blended_transform_factory(ax.transData, ax.transAxes)  # x in data, y in axes

    def points(status: str, inside: bool) -> tuple[list[int], list[float]]:
        chosen = [(x, r.val_bpb) for x, r in zip(xs, rows, strict=True)
                  if r.status == status and is_measured(r) and (r.val_bpb <= hi) == inside]
        return [p[0] for p in chosen], [p[1] for p in chosen]

    # Noise band and running best first, so the points sit on top of them.
    best = running_best(rows)
    steps = [(x, b) for x, b in zip(xs, best, strict=True) if b is not None]
    if steps:
        # run on half an experiment past the last one, so a best found last still shows a step
        bx = [s[0] for s in steps] + [max(xs) + 0.5]
        by = [s[1] for s in steps] + [steps[-1][1]]
        if threshold:
            ax.fill_between(bx, [b - threshold for b in by], [b + threshold for b in by],
                            step="post", color=KEEP_COLOR, alpha=BAND_ALPHA, linewidth=0,
                            label=f"noise band (±{threshold:.4f})")
        ax.step(bx, by, where="post", color=KEEP_COLOR, linewidth=2, label="running best")

    dx, dy = points("discard", inside=True)
    ax.scatter(dx, dy, s=22, color=DISCARD_COLOR, alpha=0.55, linewidths=0, zorder=3,
               label=f"discarded ({summary.discarded})")
    kx, ky = points("keep", inside=True)
    ax.scatter(kx, ky, s=46, color=KEEP_COLOR, edgecolors="white", linewidths=0.8, zorder=4,
               label=f"kept ({summary.kept})")
    ox = points("discard", inside=False)[0] + points("keep", inside=False)[0]
    if ox:
        ax.scatter(ox, [0.985] * len(ox), transform=on_edge, marker="^", s=36, clip_on=False,
                   color=DISCARD_COLOR, zorder=4, label=f"off the chart (> {hi:.3f})")
    cx = [x for x, r in zip(xs, rows, strict=True) if not is_measured(r)]
    if cx:
        ax.scatter(cx, [0.015] * len(cx), transform=on_edge, marker="x", s=46, linewidths=2,
                   color=CRASH_COLOR, clip_on=False, zorder=5,
                   label=f"crashed ({len(cx)})")

    for step in summary.top_improvements[:LABELED_STEPS]:
        if step.experiment != summary.best_experiment and step.delta > 0:
            ax.annotate(_shorten(step.description, MAX_LABEL // 2), (step.experiment, step.val_bpb),
                        xytext=(7, 5), textcoords="offset points", fontsize=8, color="#33633f",
                        zorder=6, bbox={"facecolor": "white", "alpha": 0.75, "linewidth": 0,
                                        "pad": 1})

    if summary.best_bpb is not None:
        ax.annotate(
            f"best {summary.best_bpb:.6f}  (#{summary.best_experiment}, "
            f"{summary.best_commit})\n{_shorten(summary.best_description, MAX_LABEL)}",
            xy=(summary.best_experiment, summary.best_bpb), xycoords="data",
            xytext=(0.97, 0.16), textcoords="axes fraction", ha="right", va="bottom",
            fontsize=9.5, zorder=6,
            bbox={"boxstyle": "round,pad=0.4", "facecolor": "white", "edgecolor": KEEP_COLOR},
            arrowprops={"arrowstyle": "->", "color": KEEP_COLOR, "linewidth": 1.2},
        )

    ax.set_xlim(min(xs) - 1, max(xs) + 1)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("experiment #")
    ax.set_ylabel("val_bpb (lower is better)")
    ax.grid(True, color="#e6e6e6", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.legend(loc="upper right", fontsize=9, framealpha=0.92)
    ax.set_title(_headline(summary), fontsize=12, loc="left")

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _headline(summary) -> str:
    line = (f"autoresearch: {summary.experiments} experiments, {summary.kept} kept, "
            f"{summary.discarded} discarded, {summary.crashed} crashed")
    if summary.improvement is not None:
        line += (f"\nval_bpb {summary.baseline_bpb:.6f} → {summary.best_bpb:.6f} "
                 f"({-summary.improvement:+.6f}, {-summary.improvement_pct:+.2f}%)")
    return line
