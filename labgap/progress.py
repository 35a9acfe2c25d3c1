"""Where a study is: one line per stage and per batch, with elapsed time and an estimate of the rest.

The estimate scales the time so far by the experiments still planned (the search's are known in
advance from its sizes, the replication's first look too, and each further look adds its own; a
study that resumes counts what it reads back as done). It is a rough
guide, not a promise: targets with slower training recipes take longer per experiment.
"""

import threading
import time
from collections.abc import Callable

from labgap.plan import StudyPlan

STAGES = ("plan", "search", "confirm and transfer", "analyse")


class StudyProgress:
    def __init__(
        self,
        plan: StudyPlan,
        log: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
    ):
        config = plan.config
        proposals = len(plan.agents) * config.rounds * config.proposals_per_round
        if config.candidate_method is not None:
            proposals = 1  # the given method, no search
        known = config.budget  # the known-methods baseline, on the search seeds
        search = (proposals + 1 + known) * config.quick_seeds
        fresh = config.confirmation_seeds * (3 + 2 * len(plan.targets))
        self.planned = search + fresh
        self.done = 0
        self._lock = threading.Lock()
        self._log = log
        self._clock = clock
        self._started = clock()
        self._stage = 0
        self._stage_started = self._started

    @property
    def current(self) -> str:
        """Where the study is, for a record of where it stopped."""
        if self._stage == 0:
            return "planning"
        return f"stage {self._stage}/{len(STAGES)} {STAGES[self._stage - 1]}"

    def stage(self, name: str) -> None:
        """A stage begins."""
        self._stage, self._stage_started = STAGES.index(name) + 1, self._clock()
        self._log(f"stage {self._stage}/{len(STAGES)} {name}: started; {self._left()}")

    def look(self, added: int, what: str) -> None:
        """The sequential design added a look: `added` more experiments are planned."""
        with self._lock:
            self.planned += added
        self._log(f"stage {self._stage}/{len(STAGES)} {STAGES[self._stage - 1]}: {what}")

    def experiments(self, task: str, ran: int, reused: int) -> None:
        """A batch of experiments was recorded (`ran` new ones, `reused` read back); agents and
        targets report from their own threads."""
        with self._lock:
            self.done = min(self.done + ran + reused, self.planned)
            done = self.done
        self._log(
            f"stage {self._stage}/{len(STAGES)} {STAGES[self._stage - 1]}: {task}: {ran} "
            f"experiment(s) run, {reused} read back; {done}/{self.planned} done; {self._left()}"
        )

    def finished(self, what: str) -> None:
        """The current stage ended; `what` says what it produced."""
        seconds = self._clock() - self._stage_started
        self._log(
            f"stage {self._stage}/{len(STAGES)} {STAGES[self._stage - 1]}: done in {seconds:.0f} s"
            f" ({what})"
        )

    def _left(self) -> str:
        elapsed = self._clock() - self._started
        if self.done == 0:
            return f"{elapsed:.0f} s elapsed"
        left = elapsed / self.done * (self.planned - self.done)
        return f"{elapsed:.0f} s elapsed, about {left:.0f} s left"
