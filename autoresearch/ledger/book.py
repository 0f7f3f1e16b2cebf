"""A tag's written record: results.tsv and the journal beside it, read and appended to.

Both are read many times per decision, by every worker, so each parse is kept until its file
changes. Writing goes in an order that can be repeated after a crash: the rows not yet in
results.tsv are appended (fsynced), then the journal entries of the rows that have none.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from autoresearch.ledger.results import append_result, read_reported
from autoresearch.ledger.state import tag_dir
from autoresearch.ledger.values import model_of, progress
from autoresearch.memory import journal
from autoresearch.model import AGENT_KINDS, Row
from autoresearch.names import RESULTS
from autoresearch.policy import Fit
from autoresearch.target import DEFAULT, Metric


class Ledger:
    """results.tsv (the tag's rows) and the journal of one tag."""

    def __init__(self, repo: Path, tag: str, git: journal.Commits, warn: Callable[[str], None],
                 metric: Metric = DEFAULT.metric):
        self.repo, self.tag, self.git = repo, tag, git
        self.metric = metric  # results.tsv's metric column: rows hold its loss
        self.journal_path = tag_dir(repo, tag) / journal.JOURNAL
        self.reported: set[str] = set()  # results.tsv's damaged rows, each warned about once
        self.results = Parsed(repo / RESULTS,
                              lambda path: read_reported(path, warn, self.reported, metric))
        self.journal = Parsed(self.journal_path, journal.load)

    def rows(self) -> list[Row]:
        return [r for r in self.results.get() if r.tag == self.tag]

    def entries(self) -> list[journal.Entry]:
        return self.journal.get()

    def model(self, rows: list[Row] | None = None) -> Fit:
        """The noise model fitted to the tag's measured runs."""
        return model_of(rows if rows is not None else self.rows())

    def best_value(self) -> float | None:
        """The night's best: the baseline minus the kept gains (ledger/values.py)."""
        return progress(self.rows()).best

    def plateau(self, after: int) -> int:
        """Agent experiments since the last keep, once there are `after` of them (0: never)."""
        count = 0
        for row in reversed(self.rows()):
            if row.status == "keep":
                break
            count += row.kind in AGENT_KINDS
        return count if after and count >= after else 0

    def recorded(self, kinds: tuple[str, ...]) -> set[int]:
        """The run numbers of these kinds with a row, or with a journal entry when their row
        is damaged."""
        return {r.experiment for r in self.rows() if r.kind in kinds} | \
            {e.n for e in self.entries() if e.kind in kinds}

    def write(self, rows: list[Row], subjects: dict[int | None, int | None]) -> None:
        """Append rows not yet in results.tsv (fsynced), then their journal entries.
        `subjects`: the run a row is about (a confirmation's candidate), by run number."""
        present = {r.experiment for r in self.rows()}
        for row in rows:
            if row.experiment not in present:
                append_result(self.repo / RESULTS, row, self.metric)
        self._journal(rows, subjects)

    def rebuild_journal(self) -> int:
        """Write the journal entries of rows that have none (the file was lost, or a loop died
        between the row and its entry), from results.tsv and the commits. How many it wrote."""
        known = {e.n for e in self.entries()}
        missing = [r for r in self.rows() if r.experiment not in known]
        self._journal(missing, {r.experiment: journal.subject_of(r) for r in missing})
        return len(missing)

    def _journal(self, rows: list[Row], subjects: dict[int | None, int | None]) -> None:
        model = self.model()
        bests = {step.row.experiment: step.best for step in progress(self.rows()).steps}
        journal.append(self.journal_path, journal.new_entries(
            rows, self.git, self.entries(), subjects, bests,
            lambda commit, worker: expected(model, commit, worker),
            lambda row: journal.run_extras(self.repo / row.run_dir, self.metric.extra)
            if row.run_dir else {}))


def expected(model: Fit, commit: str, worker: int | None) -> float | None:
    """A commit's value on one worker: its fitted value plus that worker's offset."""
    value = model.values.get(commit[:7])
    return None if value is None else value + model.offsets.get(str(worker or 0), 0.0)


class Parsed:
    """A file's parse, redone only when the file changed (its size, mtime or inode)."""

    def __init__(self, path: Path, parse: Callable[[Path], list]):
        self.path, self.parse = path, parse
        self.key: tuple | None = None
        self.value: list = []

    def get(self) -> list:
        try:
            st = self.path.stat()
            key = (st.st_size, st.st_mtime_ns, st.st_ino)
        except OSError:
            key = None
        if key is None or key != self.key:
            self.value, self.key = self.parse(self.path), key
        return self.value
