"""The search stage: agent rounds on the lab task, for either agent backend.

Both backends get numbers only from the guarded scorer, over the pipeline's own trials, and both
leave the same rows (scoring_calls, forum_posts); the leaderboard is read from those.
"""

import threading

import polars as pl

from flows.run import StudyRun
from labgap.agents.base import ForumPost, Proposal
from labgap.agents.embedded import EmbeddedAgent
from labgap.methods import MethodSpec
from labgap.scoring import BudgetExhausted, GuardedScorer, read_leaderboard
from labgap.store import to_frame
from labgap.w2s import TrialResult
from tasks.stages import agent_propose


def search(run: StudyRun) -> tuple[pl.DataFrame, float]:
    """Returns the leaderboard (gated) and vanilla's mean dev PGR on the search seeds."""
    baseline_dev_pgr = run.baseline_dev_pgr()
    if run.config.agent_backend == "claude":
        claude_rounds(run)
    else:
        embedded_rounds(run)
    board = read_leaderboard(run.store, run.study_id)
    run.gate("scoring", board)
    return board, baseline_dev_pgr


def embedded_rounds(run: StudyRun) -> None:
    """Propose → run in parallel → score → post, every round; agents replay identically on resume."""
    config, lab = run.config, run.plan.lab.spec
    seeds = config.search_seeds()
    agents = [EmbeddedAgent(a.agent_id, a.direction, a.sampler_seed) for a in run.plan.agents]
    scorer = GuardedScorer(config.budget)
    forum: list[ForumPost] = []
    for round_index in range(config.rounds):
        proposals: list[Proposal] = []
        for agent in agents:
            left = scorer.budget_left(agent.agent_id)
            if left <= 0:
                run.record_stop(agent.agent_id, round_index, "scoring budget used up")
                continue
            wanted = min(config.proposals_per_round, left)
            proposals.extend(agent_propose(agent, round_index, wanted, forum))
        if not proposals:
            run.logger.info(f"round {round_index + 1}: every agent has stopped")
            break
        methods = list({p.method.method_hash: p.method for p in proposals}.values())
        results = run.trials(lab, methods, seeds, "search", f"search-round{round_index}")
        by_method: dict[str, list[TrialResult]] = {}
        for trial in results:
            by_method.setdefault(trial.method_hash, []).append(trial)
        by_agent = {agent.agent_id: agent for agent in agents}
        calls = []
        for proposal in proposals:
            own = by_method[proposal.method.method_hash]
            call = scorer.score(proposal.agent_id, round_index, proposal.method, own)
            calls.append(call)
            by_agent[proposal.agent_id].observe(proposal, call.dev_pgr, len(seeds))
        run.store.insert("scoring_calls", to_frame(calls, study_id=run.study_id))
        posts = [post for agent in agents if (post := agent.finding(round_index)) is not None]
        run.post(posts)
        forum.extend(posts)
        best = max((c.dev_pgr for c in calls if c.dev_pgr is not None), default=None)
        run.logger.info(
            f"round {round_index + 1}/{config.rounds}: {len(calls)} method(s) scored, "
            f"best dev PGR this round {best if best is None else round(best, 3)}"
        )


class PipelineGateway:
    """What a Claude agent's tools reach: the guarded scorer over the pipeline's own trials.

    Idempotent for resumed conversations: a method already scored for that agent and round is
    answered from the record without charging the budget again.
    """

    def __init__(self, run: StudyRun):
        self.run = run
        used = run.store.query(
            "SELECT agent_id, count(*) AS n FROM scoring_calls WHERE study_id = ? GROUP BY ALL",
            [run.study_id],
        )
        self.scorer = GuardedScorer(
            run.config.budget, {row["agent_id"]: row["n"] for row in used.iter_rows(named=True)}
        )
        self.lock = threading.Lock()

    def run_experiments(
        self, agent_id: int, round: int, methods: list[MethodSpec], n_seeds: int
    ) -> list[float | None]:
        with self.lock:
            recorded = self.run.store.query(
                "SELECT method_hash, dev_pgr FROM scoring_calls "
                "WHERE study_id = ? AND agent_id = ? AND round = ?",
                [self.run.study_id, agent_id, round],
            )
            known = dict(zip(recorded["method_hash"], recorded["dev_pgr"], strict=True))
            new = [
                m
                for m in {m.method_hash: m for m in methods}.values()
                if m.method_hash not in known
            ]
            left = self.scorer.budget_left(agent_id)
            if len(new) > left:
                raise BudgetExhausted(
                    f"{left} dev-scoring call(s) left, {len(new)} new method(s) asked"
                )
            if new:
                seeds = self.run.config.search_seeds(n_seeds)
                trials = self.run.trials(
                    self.run.plan.lab.spec,
                    new,
                    seeds,
                    "search",
                    f"search-agent{agent_id}-round{round}",
                )
                calls = [
                    self.scorer.score(
                        agent_id,
                        round,
                        method,
                        [t for t in trials if t.method_hash == method.method_hash],
                    )
                    for method in new
                ]
                self.run.store.insert("scoring_calls", to_frame(calls, study_id=self.run.study_id))
                known.update({call.method_hash: call.dev_pgr for call in calls})
            return [known[m.method_hash] for m in methods]

    def read_forum(self) -> list[ForumPost]:
        rows = self.run.store.query(
            "SELECT round, agent_id, method_json, dev_pgr, n_seeds, rationale FROM forum_posts "
            "WHERE study_id = ? ORDER BY round, agent_id",
            [self.run.study_id],
        )
        return [
            ForumPost(
                round=row["round"],
                agent_id=row["agent_id"],
                method=MethodSpec.model_validate_json(row["method_json"]),
                dev_pgr=row["dev_pgr"],
                n_seeds=row["n_seeds"],
                rationale=row["rationale"],
            )
            for row in rows.iter_rows(named=True)
        ]


def claude_rounds(run: StudyRun) -> None:
    """Each round each Claude agent converses with its tools until it submits or runs out."""
    from tasks.claude import claude_agents, claude_round

    gateway = PipelineGateway(run)
    agents = claude_agents(run)
    stopped: set[int] = set()
    for round_index in range(run.config.rounds):
        for agent in agents:
            if agent.agent_id in stopped:
                continue
            outcome = claude_round(agent, round_index, gateway)
            posts = outcome.posts or [p for p in [agent.finding(round_index)] if p is not None]
            run.post(posts)
            if outcome.out_of_budget:
                stopped.add(agent.agent_id)
                run.record_stop(agent.agent_id, round_index, outcome.stop_reason or "budget")
        run.logger.info(f"round {round_index + 1}/{run.config.rounds}: Claude agents done")
