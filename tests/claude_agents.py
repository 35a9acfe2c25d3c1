"""Shared pieces of the Claude agent tests: a fake `Lab` whose dev PGRs come from a formula (no
training), a real `GuardedLab` on scripted trials, agents wired to the fake Messages API, and
rounds run as the study runs them."""

import json
import random
import threading
from concurrent.futures import ThreadPoolExecutor

from claude_logs import MemoryConversationLog
from fake_anthropic import FakeAnthropic
from studies import scripted_trial

from labgap.data.tasks import TaskSpec
from labgap.engine.w2s import TrialResult
from labgap.llm.budgets import StudyBudgetTracker
from labgap.llm.client import make_client
from labgap.llm.settings import ClaudeSettings
from labgap.methods.kinds import Method
from labgap.methods.spec import MethodSpec
from labgap.programs.method import ProgramMethod
from labgap.search.agent import ForumPost
from labgap.search.claude.agent import ClaudeAgent
from labgap.search.directions import DIRECTIONS
from labgap.search.scoring import BudgetExhausted, GuardedLab, ScoringCall
from labgap.trials import LocalExecutor, TrialBook

TASK = "Rotten Tomatoes sentiment: LR on TF-IDF (weak) -> MLP on MiniLM embeddings (strong)."


def pipeline_pgr(method: Method) -> float:
    """The fake pipeline's deterministic dev PGR (a program's from its method hash)."""
    if isinstance(method, ProgramMethod):
        return round(0.2 + int(method.method_hash[:4], 16) / 2**16 / 2, 6)
    return round(0.1 + 0.5 * method.aux_weight - abs(method.warmup - 0.2), 6)


def shown(dev_pgr: float) -> float:
    """A dev PGR as agents are shown it."""
    return round(dev_pgr, 3)


MIN_SEEDS = 3
"""The fake study's minimum number of seeds, used when `score` is not told how many."""


class FakeLab:
    """The pipeline's side: scoring calls from a formula, within a per-agent budget."""

    def __init__(self, scoring_budget: int = 100, fail_on_call: int | None = None):
        self.scoring_budget = scoring_budget
        self.fail_on_call = fail_on_call
        self.calls: list[tuple[int, int, list[Method], int]] = []
        self._used: dict[int, int] = {}
        self._lock = threading.Lock()

    def score(self, agent_id, round, methods, n_seeds=None) -> list[ScoringCall]:
        n_seeds = n_seeds or MIN_SEEDS
        with self._lock:
            if self.fail_on_call is not None and len(self.calls) + 1 == self.fail_on_call:
                raise RuntimeError("worker crashed")
            left = self.scoring_budget - self._used.get(agent_id, 0)
            if len(methods) > left:
                raise BudgetExhausted(f"{left} scoring call(s) left for {len(methods)} methods")
            self._used[agent_id] = self._used.get(agent_id, 0) + len(methods)
            self.calls.append((agent_id, round, list(methods), n_seeds))
        return [
            ScoringCall(
                agent_id=agent_id,
                round=round,
                method_hash=method.method_hash,
                method_json=method.canonical_json(),
                family=method.family,
                seeds=json.dumps(list(range(n_seeds))),
                dev_pgr=pipeline_pgr(method),
                budget_left=left - i - 1,
            )
            for i, method in enumerate(methods)
        ]


class ScriptedTrials:
    """Trial results without training: dev accuracy from the method and seed, on a dev split of
    200 examples, so a one-seed dev PGR is a ratio of correct-count differences (over 43)."""

    def run(self, task: TaskSpec, method: MethodSpec, seed: int, limits=None) -> TrialResult:
        noise = random.Random(f"{task.name}|{method.method_hash}|{seed}")
        weak, ceiling = 137 / 200, 180 / 200
        student = (141 + round(30 * method.aux_weight) + noise.randrange(8)) / 200
        return scripted_trial(task, method, seed, weak, ceiling, student, student, 0.5, 0.0)


class RecordingLab(GuardedLab):
    """A real `GuardedLab` (on scripted trials unless given an engine), keeping the rows it
    would write to `scoring_calls`."""

    def __init__(self, task: TaskSpec, budget: int = 100, min_seeds: int = 2, engine=None):
        self.rows: list[ScoringCall] = []
        self.trials_run: list[TrialResult] = []
        self.book = TrialBook(
            LocalExecutor(engine or ScriptedTrials()),
            [],
            lambda phase, batch, trials: self.trials_run.extend(trials),
        )
        super().__init__(
            task,
            self.book,
            lambda n: list(range(n or min_seeds)),
            budget,
            [],
            self.rows.extend,
        )


def make_agent(
    agent_id: int,
    server: FakeAnthropic,
    log: MemoryConversationLog,
    api_key: str,
    tracker: StudyBudgetTracker | None = None,
    sleeps: list[float] | None = None,
    min_seeds: int | None = None,
    allow_unsandboxed_programs: bool = False,
    **settings_overrides,
) -> ClaudeAgent:
    settings = ClaudeSettings(
        base_url=server.base_url, max_tokens=256, request_timeout_seconds=10, **settings_overrides
    )
    return ClaudeAgent(
        agent_id,
        DIRECTIONS[agent_id % len(DIRECTIONS)],
        settings,
        log,
        task_description=TASK,
        study_budget=tracker or StudyBudgetTracker(settings.study_budget),
        min_seeds=min_seeds,
        client=make_client(settings, api_key=api_key),
        sleep=(sleeps if sleeps is not None else []).append,
        allow_unsandboxed_programs=allow_unsandboxed_programs,
    )


def run_rounds(agents, lab, rounds):
    """Rounds as the flow runs them: the agents of a round in parallel, all given the forum as it
    was when the round began; their posts join the forum for the next round."""
    outcomes = []
    forum: list[ForumPost] = []
    for round_index in range(rounds):
        with ThreadPoolExecutor(len(agents)) as pool:
            done = list(
                pool.map(
                    ClaudeAgent.run_round,
                    agents,
                    [round_index] * len(agents),
                    [list(forum)] * len(agents),
                    [lab] * len(agents),
                )
            )
        forum.extend(post for outcome in done for post in outcome.posts)
        outcomes.append(done)
    return outcomes
