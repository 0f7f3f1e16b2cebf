"""progress.png from our results.tsv and another tool's, checked by pixels where it matters."""

import math
import struct
from pathlib import Path

import numpy as np
import pytest
import typer
from conftest import DATA
from matplotlib.image import imread
from matplotlib.markers import MarkerStyle
from typer.testing import CliRunner

from autoresearch.ledger.results import append_result, read_results
from autoresearch.model import Row
from autoresearch.review.plot import (
    CRASH_COLOR,
    DISCARD_COLOR,
    KEEP_COLOR,
    LABEL_OFFSET,
    draw_progress,
    plot_progress,
)
from autoresearch.review.report import best
from autoresearch.review.review_cli import register

ECOSYSTEM = DATA / "results_mar8.tsv"


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def pixels_of(image: np.ndarray, hex_color: str, tolerance: float = 0.06) -> np.ndarray:
    rgb = np.array([int(hex_color[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    return np.all(np.abs(image[..., :3] - rgb) < tolerance, axis=-1)


def three_statuses(path: Path) -> None:
    rows = [("keep", 1.00, "baseline"), ("discard", 1.01, "worse"), ("crash", 0.0, "oom"),
            ("keep", 0.98, "better lr"), ("discard", 0.985, "meh"), ("keep", 0.97, "deeper")]
    for n, (status, bpb, desc) in enumerate(rows, start=1):
        append_result(path, Row(f"{n:07x}", bpb, 0.0 if status == "crash" else 40.0, status, desc,
                                experiment=n, kind="baseline" if n == 1 else "experiment",
                                tag="t"))


def test_plot_all_statuses(tmp_path):
    results = tmp_path / "results.tsv"
    three_statuses(results)
    out = plot_progress(read_results(results), tmp_path / "progress.png", threshold=0.002)
    width, height = png_size(out)
    assert 1200 <= width <= 2000 and 700 <= height <= 1200
    assert out.stat().st_size > 20_000
    image = imread(out)
    red = pixels_of(image, CRASH_COLOR)
    assert red.sum() > 20, "the crash marker is missing"
    lowest_red = np.nonzero(red.any(axis=1))[0].max()  # the legend's cross is higher up
    # The crash (val_bpb 0.0) sits on the bottom edge of the axes: near the image's bottom
    # (x-axis labels below it), and the y-range was not stretched down to 0.
    assert 0.8 * height < lowest_red < 0.95 * height
    assert pixels_of(image, KEEP_COLOR).sum() > 500, "kept points and the best line are missing"


def test_plot_ecosystem_file(tmp_path):
    out = plot_progress(read_results(ECOSYSTEM), tmp_path / "eco.png")
    width, height = png_size(out)
    assert width > 1000 and height > 600
    image = imread(out)
    assert pixels_of(image, KEEP_COLOR).sum() > 1000
    assert pixels_of(image, CRASH_COLOR).sum() > 20
    assert pixels_of(image, DISCARD_COLOR, tolerance=0.03).sum() > 50


def test_plot_command(tmp_path):
    results = tmp_path / "results.tsv"
    three_statuses(results)
    app = typer.Typer()
    register(app)
    out = tmp_path / "sub" / "p.png"
    result = CliRunner().invoke(app, ["plot", "--results", str(results), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "(6 runs, 5 experiments)" in result.output
    png_size(out)
    result = CliRunner().invoke(app, ["plot", "--results", str(tmp_path / "none.tsv")])
    assert result.exit_code != 0 and "not found" in str(result.exception)


# ---- the drawn artists


def edge_night() -> list[Row]:
    """Baseline 1.0, best 0.97: runs above 1.03 (the baseline + the whole gain) are outliers.
    1.029 is the top of the range; 1.0325 lies in its 6 % padding (it used to be drawn there,
    cut in half by the edge); 1.05 is far above."""
    spec = [("keep", 1.0), ("discard", 1.029), ("keep", 0.98), ("crash", 0.0),
            ("discard", 1.0325), ("keep", 0.97), ("discard", 1.05), ("discard", 0.99)]
    return [Row(f"{n:07x}", v, 40.0, s, f"change {n}", experiment=n,
                kind="baseline" if n == 1 else "experiment", tag="t")
            for n, (s, v) in enumerate(spec, start=1)]


def drawn(rows: list[Row], **options):
    fig = draw_progress(rows, **options)
    fig.draw_without_rendering()
    return fig, fig.axes[0], fig.canvas.get_renderer()


@pytest.fixture(scope="module")
def edge_drawn():
    """edge_night drawn once with a noise band: the tests below only read the figure."""
    rows = edge_night()
    return (rows, *drawn(rows, threshold=0.002))


def collection(ax, label_start: str):
    found = [c for c in ax.collections if c.get_label().startswith(label_start)]
    return found[0] if found else None


def test_every_run_above_the_limit_is_a_triangle_and_every_run_inside_is_whole(edge_drawn):
    rows, fig, ax, renderer = edge_drawn
    top = ax.get_ylim()[1]
    frame = ax.get_window_extent(renderer)
    inside = []
    for label in ("discarded", "kept"):
        dots = collection(ax, label)
        radius = math.sqrt(dots.get_sizes()[0]) / 2 * fig.dpi / 72  # pixels
        for x, y in dots.get_offsets():
            inside.append((x, y))
            px, py = ax.transData.transform((x, y))
            assert frame.y0 <= py - radius and py + radius <= frame.y1, (x, y)  # not cut
    triangles = collection(ax, "off the chart")
    above = sorted(triangles.get_offsets()[:, 0])
    assert above == [n for n, r in enumerate(rows, 1) if r.val_bpb > top] == [7]
    assert sorted(x for x, _ in inside) == [1, 2, 3, 5, 6, 8]  # 1.0325 is inside, whole
    assert all(y <= top for _, y in inside)
    for point in triangles.get_offsets():  # on the top edge
        _, py = triangles.get_offset_transform().transform(point)
        assert frame.y1 - 0.03 * frame.height < py <= frame.y1
    assert triangles.get_label() == f"off the chart (> {top:.3f})"


def test_the_band_and_the_running_best_run_to_the_right_edge(edge_drawn):
    rows, _, ax, _ = edge_drawn
    right = ax.get_xlim()[1]
    [line] = [line for line in ax.get_lines() if line.get_label() == "running best"]
    assert line.get_xdata()[-1] == right
    assert line.get_ydata()[-1] == pytest.approx(best(rows).value)
    band = collection(ax, "noise band")
    corners = np.concatenate([path.vertices for path in band.get_paths()])
    assert corners[:, 0].max() == pytest.approx(right)
    assert corners[corners[:, 0] == corners[:, 0].max()][:, 1].max() == pytest.approx(0.972)


@pytest.mark.parametrize("where", ["left", "right", "ecosystem"])
def test_the_best_label_sits_next_to_its_point_inside_the_axes(where):
    if where == "ecosystem":
        rows = read_results(ECOSYSTEM)  # the best is #119 of 126: bottom right
    else:  # the best is the second of 40 runs (left) or the last one (right)
        values = [1.0, 0.95] + [0.97] * 38 if where == "left" else [1.0] + [0.97] * 38 + [0.95]
        rows = [Row(f"{n:07x}", v, 40.0, "keep" if v < 0.96 or n == 1 else "discard",
                    "a long description of the change that won the night " * 2, experiment=n)
                for n, v in enumerate(values, start=1)]
    fig, ax, renderer = drawn(rows)
    head = best(rows)
    [label] = [t for t in ax.texts if t.get_text().startswith("best ")]
    assert label.get_text().startswith(f"best {head}  (#{head.experiment}, {head.commit})")
    own = next(r.val_bpb for n, r in enumerate(rows, 1) if n == head.experiment)
    assert label.xy == (head.experiment, own)
    box = label.get_bbox_patch().get_window_extent(renderer)
    frame = ax.get_window_extent(renderer)
    assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
    px, py = ax.transData.transform(label.xy)
    gap = math.hypot(max(box.x0 - px, 0, px - box.x1), max(box.y0 - py, 0, py - box.y1))
    assert gap <= 2 * LABEL_OFFSET * fig.dpi / 72, gap  # next to its point, not in a corner


def test_each_worker_has_its_marker_and_its_legend_entry():
    rows = edge_night()
    for row in rows:  # w0 on GPU 0 ran the odd runs, w1 on GPU 1 the even ones
        w = (row.experiment + 1) % 2
        row.worker, row.gpu, row.node = w, str(w), "n"
    _, ax, _ = drawn(rows, threshold=0.002)
    legend = ax.get_legend()
    texts = [t.get_text() for t in legend.get_texts()]
    # the baseline (w0's) is a kept run, not a keep
    assert texts[-2:] == ["w0 gpu0: 4 runs, 1 keep", "w1 gpu1: 4 runs, 1 keep"]
    assert "discarded runs (4)" in texts and "kept runs (3)" in texts
    shapes = {"w0 gpu0": legend.legend_handles[-2].get_marker(),
              "w1 gpu1": legend.legend_handles[-1].get_marker()}
    assert shapes["w0 gpu0"] != shapes["w1 gpu1"]
    # each worker's kept and discarded points inside the range, drawn in its legend's shape
    for worker, mine in (("w0 gpu0", [1, 3, 5]), ("w1 gpu1", [2, 6, 8])):
        marker = MarkerStyle(shapes[worker])
        drawn_at = []
        for status in ("discarded", "kept"):
            [dots] = [c for c in ax.collections if c.get_gid() == f"{status} {worker}"]
            shape = marker.get_path().transformed(marker.get_transform())
            assert np.allclose(dots.get_paths()[0].vertices, shape.vertices), (worker, status)
            drawn_at += [int(x) for x, _ in dots.get_offsets()]
        assert sorted(drawn_at) == mine
    assert sorted(collection(ax, "off the chart").get_offsets()[:, 0]) == [7]  # as before


def test_one_worker_draws_as_before(edge_drawn):
    rows = edge_night()
    for row in rows:
        row.worker, row.gpu, row.node = 0, "0", "n"
    _, ax, _ = drawn(rows, threshold=0.002)
    _, _, plain, _ = edge_drawn
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == [t.get_text() for t in plain.get_legend().get_texts()]
    assert not any(c.get_gid() for c in ax.collections)
    assert sorted(collection(ax, "kept").get_offsets()[:, 0]) == [1, 3, 6]


def test_the_best_label_covers_no_run_where_a_corner_is_free():
    """The best (#20 of 40, low) would take its label up and to the right, where a cloud of
    runs sits just above it; up and to its left the plot is empty."""
    values = [1.0] + [0.99] * 18 + [0.95] + [0.952] * 10 + [0.99] * 10
    rows = [Row(f"{n:07x}", v, 40.0, "keep" if n in (1, 20) else "discard", f"change {n}",
                experiment=n, kind="baseline" if n == 1 else "experiment")
            for n, v in enumerate(values, start=1)]
    fig, ax, renderer = drawn(rows)
    [label] = [t for t in ax.texts if t.get_text().startswith("best ")]
    box = label.get_bbox_patch().get_window_extent(renderer)
    covered = [r.experiment for r in rows if r.experiment != 20 and box.contains(
        *ax.transData.transform((r.experiment, r.val_bpb)))]
    assert covered == []
