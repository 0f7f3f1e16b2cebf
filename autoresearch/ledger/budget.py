"""What a tag has used of its limits: the agents' cost (--max-cost) and the new ideas tried or on
their way (--max-experiments). Ports and confirmations finish what was counted and count for
nothing."""

from __future__ import annotations

from autoresearch.ledger.book import Ledger
from autoresearch.ledger.state import State
from autoresearch.model import Job, Kind

NEW_IDEAS = ("experiment", "fix")  # the kinds --max-experiments counts


class Budget:
    """Counts over a tag's journaled state and its ledger. Not locked: its owner (the
    coordinator) calls it under its own lock and saves the state."""

    def __init__(self, state: State, ledger: Ledger):
        self.state, self.ledger = state, ledger

    def add_cost(self, cost: float | None) -> None:
        """Count an agent call's cost; one that did not report it makes the total unknown."""
        if cost is None:
            self.state.cost_unknown = True
        else:
            self.state.cost_usd += cost

    def spent(self) -> tuple[float, bool]:
        """The agents' cost so far in USD, and whether some call did not report its cost."""
        return self.state.cost_usd, self.state.cost_unknown

    def new_ideas(self, queued: bool = True) -> int:
        """New ideas tried or on their way: the experiments and fixes recorded (in results.tsv,
        or in the journal when their row there is damaged), started (running, or to run again),
        those whose rows are held (candidates, runs being ported or about to be) and, with
        `queued`, those waiting for a GPU."""
        s = self.state
        return len(self.ledger.recorded(NEW_IDEAS)) + \
            sum(1 for j in s.jobs if j.kind.value in NEW_IDEAS and (queued or started(j))) + \
            sum(1 for c in s.candidates if c.row.kind in NEW_IDEAS) + \
            sum(1 for t in s.tasks if t.row is not None and t.row.kind in NEW_IDEAS) + \
            sum(1 for p in s.porting if p.row.kind in NEW_IDEAS)

    def held_back(self, max_experiments: int | None) -> list[Job]:
        """Queued new ideas that may not start: the experiments already started reach
        --max-experiments (a later `run` with a lower limit than the queue was made under)."""
        if max_experiments is None or self.new_ideas(queued=False) < max_experiments:
            return []
        return [j for j in self.state.jobs if not started(j)
                and j.kind in (Kind.EXPERIMENT, Kind.FIX)]


def started(job: Job) -> bool:
    """Given a run number: running, or interrupted and to run again under that number."""
    return job.n is not None
