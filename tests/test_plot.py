"""progress.png from our results.tsv and another tool's, checked by pixels where it matters."""

import struct
from pathlib import Path

import numpy as np
import typer
from matplotlib.image import imread
from typer.testing import CliRunner

from autoresearch.ledger.results import Row, append_result, read_results
from autoresearch.review.plot import CRASH_COLOR, DISCARD_COLOR, KEEP_COLOR, plot_progress
from autoresearch.review.review_cli import register

ECOSYSTEM = Path("/work/shared/data/ecosystem/results_mar8.tsv")


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
    assert "6 experiments" in result.output
    png_size(out)
    result = CliRunner().invoke(app, ["plot", "--results", str(tmp_path / "none.tsv")])
    assert result.exit_code != 0 and "not found" in str(result.exception)
