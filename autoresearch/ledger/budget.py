"""What a tag has used of its limits: the agents' cost (--max-cost) and the new ideas tried or on
their way (--max-experiments). Ports and confirmations finish what was counted and count for
nothing."""

from __future__ import annotations

from autoresearch.ledger.state import State
from autoresearch.model import Job, Kind

NEW_IDEAS = ("experiment", "fix")  # the kinds --max-experiments counts


class Budget:
    """Counts over a tag's journaled state. Not locked: its owner (the coordinator) calls it
    under its own lock and saves the state."""

    def __init__(self, state: State):
        self.state = state

    def add_cost(self, cost: float | None) -> None:
        """Count an agent call's cost; one that did not report it makes the total unknown."""
        if cost is None:
            self.state.cost_unknown = True
        else:
            self.state.cost_usd += cost

    def spent(self) -> tuple[float, bool]:
        """The agents' cost so far in USD, and whether some call did not report its cost."""
        return self.state.cost_usd, self.state.cost_unknown

    def new_ideas(self, recorded: set[int], queued: bool) -> int:
        """`recorded` (the experiments and fixes with a row or a journal entry), plus those
        started (running, or to run again), those whose rows are held (candidates, runs being
        ported) and, with `queued`, those waiting for a GPU."""
        s = self.state
        return len(recorded) + \
            sum(1 for j in s.jobs if j.kind.value in NEW_IDEAS and (queued or started(j))) + \
            sum(1 for c in s.candidates if c.row.kind in NEW_IDEAS) + \
            sum(1 for t in s.tasks if t.row is not None and t.row.kind in NEW_IDEAS)

    def unstarted(self) -> list[Job]:
        """Queued new ideas not started yet (those a reached limit holds back)."""
        return [j for j in self.state.jobs if not started(j)
                and j.kind in (Kind.EXPERIMENT, Kind.FIX)]


def started(job: Job) -> bool:
    """Given a run number: running, or interrupted and to run again under that number."""
    return job.n is not None
