"""The guard shared by every worker: one scan at a time, each change blamed on its suspects.

Workers that ask while another's scan runs share the next one: a scan that began after a worker
asked sees everything its step did, and whoever's scan finds a change blames it on the suspects of
that scan, so a shared scan blames no step less.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from autoresearch.errors import UserError
from autoresearch.workspace.git import TRAIN
from autoresearch.workspace.guard import Blame, Guard, Suspects, culprits, lost_message


class Watch:
    """The loop's guard, scanned on a worker's request; what each suspect is blamed for."""

    def __init__(self, guard: Guard, first_wave: Callable[[], bool],
                 log: Callable[[str, str], None], editable: str = TRAIN):
        self.guard, self.first_wave, self.log = guard, first_wave, log
        self.editable = editable  # the one file agents may change: named in what is told
        self.lock = threading.Lock()
        self.scanned_at = 0.0  # when the latest scan began
        self.suspects = Suspects()  # the agent turns and runs a change may be blamed on
        self.blamed: dict[str, Blame] = {}  # by suspect, until it asks (inspect)

    @property
    def violations(self) -> int:
        """How often the guard had to undo something (a run that saw it move is void)."""
        return self.guard.violations

    def trusted(self, path: Path) -> str:
        return self.guard.trusted(path)

    @contextmanager
    def suspect(self, who: str) -> Iterator[None]:
        """`who` (an agent turn, a run) may write outside its work tree while this lasts."""
        self.suspects.begin(who)
        try:
            yield
        finally:
            self.suspects.end(who)

    def inspect(self, backup: Path, who: str) -> Blame:
        """Undo changes to the guarded areas and blame them on whoever could have made them
        (guard.culprits); what is blamed on `who` (a suspect: "run #7", "w1's agent").
        Changes that cannot be undone stop the loop."""
        asked = time.monotonic()
        with self.lock:
            if self.scanned_at <= asked:
                self._scan(backup, who)
            return self.blamed.pop(who, Blame())

    def _scan(self, backup: Path, who: str) -> None:
        started = time.monotonic()
        suspects = self.suspects.take()
        changes = self.guard.changes()
        suspects |= self.suspects.now()
        self.scanned_at = started
        if changes and self.first_wave() and all(self.guard.is_derived(c) for c in changes):
            # only the first wave, the unmodified code, may write the harness's caches
            self.guard.accept(changes)
            return
        if not changes:
            return
        undone, lost = self.guard.undo(changes, backup)
        blamed = culprits(suspects or {who})
        for culprit in blamed:
            self.blamed.setdefault(culprit, Blame()).add([str(c.path) for c in changes],
                                                          sole=len(blamed) == 1)
        self.log(f"{' or '.join(sorted(blamed))} (found by {who}): changed "
                 f"{', '.join(map(str, changes[:5]))} outside {self.editable}; undone: "
                 f"{', '.join(undone) or 'nothing'} (what was found is in {backup})", "red")
        if lost:
            raise UserError(lost_message(lost))
