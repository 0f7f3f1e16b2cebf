"""progress.png: the night at a glance.

Every run's val_bpb over experiment number: kept runs in green joined by the running best (a step
line), discarded ones faint grey, crashes as red crosses on the bottom edge (their val_bpb is 0.0),
runs above the y-range as grey triangles on the top edge, the noise band around the best, and the
best's value and description written next to it. When several workers (GPUs, nodes) ran the night,
each one's kept and discarded runs have a marker shape of their own, named in the legend. Drawn with
matplotlib's Agg canvas directly, so no display and no pyplot global state are involved.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from autoresearch.errors import UserError
from autoresearch.model import Row, is_measured
from autoresearch.policy import signed
from autoresearch.review.report import (
    Best,
    Summary,
    best,
    experiment_numbers,
    is_keep,
    running_best,
    several_workers,
    summarize,
    with_runs,
    worker_labels,
    y_limits,
)
from autoresearch.target import DEFAULT, Metric
from autoresearch.verify.private import private_curve

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.text import Annotation

FIGSIZE = (12, 6.5)  # inches
DPI = 130
KEEP_COLOR = "#1a9850"
PRIVATE_COLOR = "#7b3294"  # the private split's curve: apart from keep green and discard grey
DISCARD_COLOR = "#9e9e9e"
CRASH_COLOR = "#d73027"
BAND_ALPHA = 0.13
MAX_LABEL = 70  # characters of the best run's description shown on the plot
LABELED_STEPS = 4  # the biggest improvements also get a small caption
LABEL_OFFSET = 14  # points between the best's point and its label
EDGE_MARKERS = 0.985  # axes fraction of the off-the-chart triangles (crosses: 1 - this)
# A shape per worker: none of them the triangle (off the chart) or the cross (crashed); after the
# tenth worker the shapes repeat in the same order
WORKER_MARKERS = ("o", "s", "D", "P", "p", "h", "*", "H", "d", "8")
WORKER_EDGE = "#444444"  # the hollow marker of a worker's legend entry


def plot_progress(rows: list[Row], out: Path, *, threshold: float | None = None,
                  events: Path | None = None, metric: Metric = DEFAULT.metric) -> Path:
    """Draw the progress chart of `rows` into the PNG `out` and return its path; `events` is
    the tag's events.log (report.summarize)."""
    fig = draw_progress(rows, threshold=threshold, events=events, metric=metric)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out


def draw_progress(rows: list[Row], *, threshold: float | None = None,
                  events: Path | None = None, metric: Metric = DEFAULT.metric) -> Figure:
    """The progress chart of `rows` as a matplotlib Figure (on an Agg canvas). It is drawn in
    the metric's loss (better is down, as for val_bpb); a higher-is-better metric's axis is
    labelled with its own values."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.transforms import blended_transform_factory

    if not rows:
        raise UserError("results.tsv has no rows yet: start the loop (agent_loop.py run) first")
    xs = experiment_numbers(rows)
    labels = worker_labels(rows)
    summary = summarize(rows, events=events, metric=metric)

    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_xlim(min(xs) - 1, max(xs) + 1)
    ax.set_ylim(*(y_limits(rows, threshold) or (0.0, 1.0)))
    right = ax.get_xlim()[1]
    hi = ax.get_ylim()[1]  # the limit drawn: a run above it is off the chart, one below inside
    on_edge = blended_transform_factory(ax.transData, ax.transAxes)  # x in data, y in axes

    def points(status: str, inside: bool, worker: str | None = None
               ) -> tuple[list[int], list[float]]:
        chosen = [(x, r.val_bpb) for x, r, w in zip(xs, rows, labels, strict=True)
                  if r.status == status and is_measured(r) and (r.val_bpb <= hi) == inside
                  and worker in (None, w)]
        return [p[0] for p in chosen], [p[1] for p in chosen]

    # Noise band and running best first, so the points sit on top of them; both run on to the
    # right edge, so a best found last still shows a step.
    steps = sorted((x, b) for x, b in zip(xs, running_best(rows), strict=True) if b is not None)
    if steps:
        bx = [s[0] for s in steps] + [right]
        by = [s[1] for s in steps] + [steps[-1][1]]
        if threshold:
            ax.fill_between(bx, [b - threshold for b in by], [b + threshold for b in by],
                            step="post", color=KEEP_COLOR, alpha=BAND_ALPHA, linewidth=0,
                            label=f"noise band (±{threshold:.4f})")
        ax.step(bx, by, where="post", color=KEEP_COLOR, linewidth=2, label="running best")

    shapes = _worker_shapes(labels) if several_workers(rows) else {None: "o"}
    # the legend counts the points drawn: runs of every kind (summary.kept counts keeps)
    counted = Counter(r.status for r in rows if is_measured(r))
    legend = {status: f"{word} runs ({counted[status]})"
             for status, word in (("discard", "discarded"), ("keep", "kept"))}
    for worker, marker in shapes.items():
        # one worker: the two collections carry the legend; several: the proxies below do
        named = worker is None
        dx, dy = points("discard", inside=True, worker=worker)
        ax.scatter(dx, dy, s=22, color=DISCARD_COLOR, alpha=0.55, linewidths=0, zorder=3,
                   marker=marker, gid=f"discarded {worker}" if worker else None,
                   label=legend["discard"] if named else "_nolegend_")
        kx, ky = points("keep", inside=True, worker=worker)
        ax.scatter(kx, ky, s=46, color=KEEP_COLOR, edgecolors="white", linewidths=0.8, zorder=4,
                   marker=marker, gid=f"kept {worker}" if worker else None,
                   label=legend["keep"] if named else "_nolegend_")
    curve = private_curve(rows)  # the kept line on the private held-out split, if scored
    if curve:
        ax.plot([c[0] for c in curve], [c[1] for c in curve], color=PRIVATE_COLOR, linewidth=1.2,
                linestyle="--", marker="D", markersize=4, zorder=4, gid="private",
                label="kept, on the private split")
    ox = sorted(points("discard", inside=False)[0] + points("keep", inside=False)[0])
    if ox:
        ax.scatter(ox, [EDGE_MARKERS] * len(ox), transform=on_edge, marker="^", s=36,
                   clip_on=False, color=DISCARD_COLOR, zorder=4,
                   label=f"off the chart (> {hi:.3f})")
    cx = [x for x, r in zip(xs, rows, strict=True) if not is_measured(r)]
    if cx:
        ax.scatter(cx, [1 - EDGE_MARKERS] * len(cx), transform=on_edge, marker="x", s=46,
                   linewidths=2, color=CRASH_COLOR, clip_on=False, zorder=5,
                   label=f"crashed ({len(cx)})")

    head = best(rows)
    for step in summary.top_improvements[:LABELED_STEPS]:
        at = metric.loss(step.val_bpb)  # summarize gives the metric's value: the chart's loss
        if step.commit != summary.best_commit and step.delta > 0 and at <= hi:
            ax.annotate(_shorten(step.description, MAX_LABEL // 2), (step.experiment, at),
                        xytext=(7, 5), textcoords="offset points", fontsize=8, color="#33633f",
                        zorder=6, bbox={"facecolor": "white", "alpha": 0.75, "linewidth": 0,
                                        "pad": 1})

    ax.set_xlabel("run #")
    ax.set_ylabel(metric.label)
    if metric.direction != "lower":
        ax.yaxis.set_major_formatter(lambda loss, _: f"{metric.value(loss) + 0.0:g}")
    ax.grid(True, color="#e6e6e6", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    handles, names = ax.get_legend_handles_labels()
    if None not in shapes:
        extra = _worker_legend(shapes, labels, rows, legend)
        handles, names = handles + extra, names + [h.get_label() for h in extra]
    ax.legend(handles, names, loc="upper right", fontsize=9, framealpha=0.92)
    ax.set_title(_headline(summary), fontsize=12, loc="left")
    if head is not None:
        # its point: the kept run that brought the best's commit in
        own = next(r.val_bpb for x, r in zip(xs, rows, strict=True) if x == head.experiment)
        if ax.get_ylim()[0] <= own <= hi:
            inside = [(x, r.val_bpb) for x, r in zip(xs, rows, strict=True)
                      if is_measured(r) and r.val_bpb <= hi and x != head.experiment]
            _label_best(ax, head, own, inside, metric)
    return fig


def _worker_shapes(labels: list[str]) -> dict[str, str]:
    """Each worker's marker, in the order the workers first appear ("" for rows without one)."""
    workers = list(dict.fromkeys(labels))
    return {w: WORKER_MARKERS[i % len(WORKER_MARKERS)] for i, w in enumerate(workers)}


def _worker_legend(shapes: dict[str, str], labels: list[str], rows: list[Row],
                   legend: dict[str, str]) -> list[Line2D]:
    """Legend entries for several workers: the two colours (kept, discarded: `legend`) as
    circles, then a hollow marker per worker with how many runs it did and how many keeps."""
    from matplotlib.lines import Line2D

    def entry(label: str, marker: str, face: str, edge: str) -> Line2D:
        return Line2D([], [], linestyle="none", marker=marker, markersize=7, label=label,
                      markerfacecolor=face, markeredgecolor=edge)

    out = [entry(legend["discard"], "o", DISCARD_COLOR, DISCARD_COLOR),
           entry(legend["keep"], "o", KEEP_COLOR, KEEP_COLOR)]
    for worker, marker in shapes.items():
        mine = [r for r, w in zip(rows, labels, strict=True) if w == worker]
        keeps = sum(map(is_keep, mine))
        out.append(entry(f"{worker or 'no worker'}: {len(mine)} runs, {keeps} "
                         f"keep{'' if keeps == 1 else 's'}", marker,
                         "none", WORKER_EDGE))
    return out


def _label_best(ax: Axes, head: Best, y: float, points: list[tuple[float, float]],
                metric: Metric = DEFAULT.metric) -> None:
    """The best's value, commit and description in a box next to its point (head.experiment,
    y), inside the axes, where it covers the fewest of the runs' `points` (x, y in data): a
    corner by its point, the side with more room first."""
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    right_half = (head.experiment - x0) / (x1 - x0) > 0.5
    top_half = (y - y0) / (y1 - y0) > 0.5
    label = ax.annotate(
        f"best {head.label(metric)}  (#{head.experiment}, {head.commit})\n"
        f"{_shorten(head.description, MAX_LABEL)}",
        xy=(head.experiment, y), xycoords="data", xytext=(0, 0), textcoords="offset points",
        fontsize=9.5, zorder=6,
        bbox={"boxstyle": "round,pad=0.4", "facecolor": "white", "edgecolor": KEEP_COLOR},
        arrowprops={"arrowstyle": "-", "color": KEEP_COLOR, "linewidth": 1},
    )
    label.set_in_layout(False)  # the layout must not shrink the axes to make room for it
    fig = ax.figure
    fig.draw_without_rendering()  # lay the figure out: the axes' final place on the canvas
    pixels = [tuple(p) for p in ax.transData.transform(points)] if points else []
    corners = [(left, down) for left in (right_half, not right_half)
               for down in (top_half, not top_half)]
    placed = []  # (points covered, preference, offset, alignment)
    for preference, (left, down) in enumerate(corners):
        label.set_horizontalalignment("right" if left else "left")
        label.set_verticalalignment("top" if down else "bottom")
        label.xyann = (-LABEL_OFFSET if left else LABEL_OFFSET,
                       -LABEL_OFFSET if down else LABEL_OFFSET)
        _inside_axes(label, ax)
        fig.draw_without_rendering()  # the box follows the text only when drawn
        box = label.get_bbox_patch().get_window_extent(fig.canvas.get_renderer())
        covered = sum(box.x0 <= px <= box.x1 and box.y0 <= py <= box.y1 for px, py in pixels)
        placed.append((covered, preference, label.xyann, (left, down)))
    _, _, offset, (left, down) = min(placed)
    label.set_horizontalalignment("right" if left else "left")
    label.set_verticalalignment("top" if down else "bottom")
    label.xyann = offset


def _inside_axes(label: Annotation, ax: Axes) -> None:
    """Move a label back inside the axes if it sticks out."""
    fig = ax.figure
    fig.draw_without_rendering()  # where the label's box is now
    renderer = fig.canvas.get_renderer()
    box, frame = label.get_bbox_patch().get_window_extent(renderer), ax.get_window_extent(renderer)
    inner = frame.padded(-1)  # a pixel inside: rounding must not leave it on the edge
    dx = max(0.0, inner.x0 - box.x0) - max(0.0, box.x1 - inner.x1)
    dy = max(0.0, inner.y0 - box.y0) - max(0.0, box.y1 - inner.y1)
    if dx or dy:
        to_points = 72 / fig.dpi
        ox, oy = label.xyann
        label.xyann = (ox + dx * to_points, oy + dy * to_points)


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _headline(summary: Summary) -> str:
    line = (f"autoresearch: {summary.runs} runs; {summary.experiments} experiments: "
            f"{summary.kept} kept, {summary.discarded} discarded, {summary.crashed} crashed")
    if summary.improvement is not None:
        metric = Metric(summary.metric, summary.direction)
        pct = "" if summary.improvement_pct is None else \
            f", {signed(metric.value(-summary.improvement_pct), 2)}%"
        line += (f"\n{summary.metric} {with_runs(summary.baseline_bpb, summary.baseline_runs)} → "
                 f"{summary.best_label} ({signed(metric.value(-summary.improvement))}{pct})")
    return line
