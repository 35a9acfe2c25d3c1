"""The embedded (Optuna) agent on synthetic objectives: no training, only its search behaviour."""

import math
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from labgap.methods.spec import PRESETS, MethodSpec
from labgap.programs.method import ProgramMethod
from labgap.search.agent import Agent, ForumPost, Proposal
from labgap.search.directions import (
    DIRECTIONS,
    ResearchDirection,
    direction_by_key,
)
from labgap.search.embedded import EmbeddedAgent
from labgap.search.space import Choice
from labgap.search.variation import vary_method

BASE_BY_LOSS = {"xent": 0.05, "product": 0.15, "bootstrap": 0.2, "logconf": 0.3}


def synthetic_pgr(method: MethodSpec | ProgramMethod) -> float:
    """Peaks (0.9) at logconf with aux_weight 0.7 and warmup 0.2; plain xent stays near 0.05; a
    program scores by a hash of its parameters (a landscape the agents must explore)."""
    if isinstance(method, ProgramMethod):
        return int(method.method_hash[:4], 16) / 0xFFFF
    score = BASE_BY_LOSS[method.loss]
    if method.loss != "xent":
        score += 0.5 * max(0.0, 1 - abs(method.aux_weight - 0.7) / 0.5)
        score += 0.1 * max(0.0, 1 - abs(method.warmup - 0.2) / 0.3)
    return score


def run_rounds(agents, rounds, n, score=synthetic_pgr, forum=None):
    """The study loop in miniature: propose, score, post findings. Returns proposals per round."""
    forum = list(forum or [])
    history = []
    for round_index in range(rounds):
        proposed = []
        for agent in agents:
            for proposal in agent.propose(round_index, n, forum):
                agent.observe(proposal, score(proposal.method), 5)
                proposed.append(proposal)
        forum += [post for agent in agents if (post := agent.finding(round_index)) is not None]
        history.append(proposed)
    return history


def star_post(agent_id=3, dev_pgr=0.9) -> ForumPost:
    return ForumPost(
        round=0,
        agent_id=agent_id,
        method=MethodSpec(loss="logconf", aux_weight=0.7, warmup=0.2),
        dev_pgr=dev_pgr,
        n_seeds=5,
        rationale="logconf aux_weight=0.7 warmup=0.2",
    )


def test_embedded_agent_satisfies_the_protocol():
    assert isinstance(EmbeddedAgent(0, DIRECTIONS[0], seed=1), Agent)


def test_same_seed_and_observations_give_identical_proposals():
    """What lets the flow resume a crashed study by replaying recorded scores."""
    directions = DIRECTIONS[:3]

    def study(seed):
        agents = [EmbeddedAgent(i, d, seed=seed + i) for i, d in enumerate(directions)]
        return run_rounds(agents, rounds=3, n=3, forum=[star_post(agent_id=7)])

    first, replay, other = study(10), study(10), study(20)
    assert first == replay
    assert first != other
    assert any("borrow agent 7" in p.rationale for proposals in first for p in proposals)


def test_replaying_only_the_observations_reproduces_the_next_round():
    """A resumed agent is rebuilt from recorded scores, not from its own earlier run."""
    direction = direction_by_key("loss-design")
    original = EmbeddedAgent(0, direction, seed=5)
    recorded = []
    for round_index in range(3):
        for proposal in original.propose(round_index, 2, []):
            recorded.append((proposal, synthetic_pgr(proposal.method)))
            original.observe(proposal, recorded[-1][1], 5)

    resumed = EmbeddedAgent(0, direction, seed=5)
    for round_index in range(3):
        for proposal in resumed.propose(round_index, 2, []):
            expected, dev_pgr = recorded.pop(0)
            assert proposal == expected
            resumed.observe(proposal, dev_pgr, 5)
    assert resumed.propose(3, 2, []) == original.propose(3, 2, [])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_agent_improves_over_rounds(seed):
    agent = EmbeddedAgent(0, direction_by_key("loss-design"), seed=seed)
    history = run_rounds([agent], rounds=6, n=3)
    known, *explored = history[0]
    best_explored_in_round_1 = max(synthetic_pgr(p.method) for p in explored)
    best_after_round_6 = agent.finding(5).dev_pgr
    assert best_after_round_6 > best_explored_in_round_1
    assert best_after_round_6 >= synthetic_pgr(known.method) > 0.75
    assert history[0][0].rationale.startswith("start from the known method 'logconf'")
    assert history[0][1].rationale.startswith("explore: ")
    assert history[-1][-1].rationale.startswith("exploit: TPE around best (dev PGR ")


def test_agent_borrows_a_better_posted_method_it_cannot_reach_itself():
    """Regularisation only ever trains with xent (≈0.05 here); agent 3 posted logconf at 0.9."""
    direction = direction_by_key("regularisation")
    agent = EmbeddedAgent(0, direction, seed=4)
    history = run_rounds([agent], rounds=4, n=2, forum=[star_post()])
    borrowed = [p for proposals in history for p in proposals if "agent 3" in p.rationale]
    assert borrowed
    first = borrowed[0]
    assert first.rationale.startswith("borrow agent 3's logconf aux_weight=0.7 warmup=0.2")
    assert first.method.loss == "logconf"
    assert first.method != star_post().method
    assert direction.params_for(first.method) is None  # outside its own space: proposed directly

    finding = agent.finding(3)
    assert finding.method.loss == "logconf"
    assert "agent 3's idea" in finding.rationale
    # Once its own best beats the post, it goes back to its own direction.
    later = agent.propose(4, 3, [star_post(dev_pgr=finding.dev_pgr - 0.01)])
    assert all(not p.rationale.startswith("borrow") for p in later)


def test_a_borrowed_method_inside_the_agents_space_teaches_its_sampler():
    direction = direction_by_key("loss-design")
    post = star_post(agent_id=2, dev_pgr=0.99)
    agent = EmbeddedAgent(0, direction, seed=0, borrow_probability=1.0, n_startup_trials=1)
    (borrowed, sampled) = agent.propose(0, 2, [post])
    assert borrowed.rationale.startswith("borrow agent 2's")
    assert direction.params_for(borrowed.method) is not None
    agent.observe(borrowed, 0.99, 5)
    agent.observe(sampled, 0.1, 5)
    next_round = agent.propose(1, 2, [post])
    assert all("TPE around best (dev PGR 0.99)" in p.rationale for p in next_round)


def test_never_proposes_a_method_twice_and_proposes_fewer_when_exhausted():
    tiny = ResearchDirection(
        key="tiny",
        title="Tiny",
        description="Two losses, hard or soft labels: four methods in all.",
        fixed={"aux_weight": 0.5},
        space={
            "loss": Choice(options=("logconf", "product")),
            "hard_labels": Choice(options=(False, True)),
        },
    )
    agent = EmbeddedAgent(0, tiny, seed=0)
    sizes = [len(proposals) for proposals in run_rounds([agent], rounds=3, n=3)]
    assert sizes == [3, 1, 0]

    agents = [EmbeddedAgent(i, d, seed=i) for i, d in enumerate(DIRECTIONS)]
    history = run_rounds(agents, rounds=5, n=3)
    for agent in agents:
        hashes = [
            p.method.method_hash for ps in history for p in ps if p.agent_id == agent.agent_id
        ]
        assert len(hashes) == len(set(hashes)) == 15


def test_failed_and_undefined_scores_do_not_crash():
    agent = EmbeddedAgent(0, direction_by_key("combinations"), seed=3, n_startup_trials=2)
    for round_index in range(3):
        for proposal in agent.propose(round_index, 2, []):
            agent.observe(proposal, None, 0)
        assert agent.finding(round_index) is None
    (proposal,) = agent.propose(3, 1, [])
    agent.observe(proposal, math.nan, 5)
    assert agent.finding(3) is None
    scored = agent.propose(4, 2, [])
    agent.observe(scored[0], 0.3, 5)
    agent.observe(scored[1], None, 0)
    assert agent.finding(4).dev_pgr == 0.3


def test_finding_is_the_best_observed_method():
    agent = EmbeddedAgent(6, direction_by_key("label-filtering"), seed=9)
    proposals = agent.propose(0, 4, [])
    scores = [0.2, 0.55, None, 0.4]
    for proposal, dev_pgr, n_seeds in zip(proposals, scores, [5, 7, 0, 5], strict=True):
        agent.observe(proposal, dev_pgr, n_seeds)
    finding = agent.finding(2)
    assert (finding.round, finding.agent_id, finding.dev_pgr, finding.n_seeds) == (2, 6, 0.55, 7)
    assert finding.method == proposals[1].method
    assert "best of 3 scored in 'Label filtering'" in finding.rationale


def test_observe_rejects_foreign_and_repeated_proposals():
    agent = EmbeddedAgent(0, DIRECTIONS[0], seed=1)
    (proposal,) = agent.propose(0, 1, [])
    foreign = Proposal(agent_id=0, round=0, method=PRESETS["vanilla"], rationale="not mine")
    with pytest.raises(ValueError, match="did not propose"):
        agent.observe(foreign, 0.1, 5)
    agent.observe(proposal, 0.1, 5)
    with pytest.raises(ValueError, match="already observed"):
        agent.observe(proposal, 0.1, 5)


def test_rationales_are_short_and_specific():
    agents = [EmbeddedAgent(i, d, seed=i) for i, d in enumerate(DIRECTIONS)]
    history = run_rounds(agents, rounds=4, n=2)
    for proposals in history:
        for proposal in proposals:
            assert proposal.rationale.split(":")[0].split(" ")[0] in (
                "start",
                "explore",
                "exploit",
                "borrow",
            )
            assert len(proposal.rationale) < 400
            assert "\n" not in proposal.rationale


BOUNDARY_METHODS = [
    *PRESETS.values(),
    MethodSpec(epochs=1, lr=1e-4, batch_size=32, knn_k=5, knn_mix=0.0, confident_fraction=0.3),
    MethodSpec(epochs=100, lr=1e-2, batch_size=512, knn_k=50, knn_mix=1.0, weight_decay=0.1),
    MethodSpec(loss="logconf", aux_weight=1.0, warmup=0.5, label_smoothing=0.3, dropout=0.5),
]


@pytest.mark.parametrize("method", BOUNDARY_METHODS, ids=lambda method: method.family)
def test_varying_a_method_keeps_it_valid_and_its_idea(method):
    rng = random.Random(0)
    structural = ("loss", "hard_labels", "hidden", "self_training_rounds")
    for _ in range(200):
        varied, changes = vary_method(method, rng)
        assert MethodSpec.model_validate(varied.model_dump()) == varied
        assert varied != method
        assert 1 <= len(changes) <= 2
        assert all(getattr(varied, name) == getattr(method, name) for name in structural)
        assert (varied.knn_k == 0) == (method.knn_k == 0)


def test_the_order_of_observations_within_a_round_does_not_matter():
    def next_round(reverse):
        agent = EmbeddedAgent(0, direction_by_key("teacher-student-mixing"), seed=8)
        for round_index in range(3):
            proposals = agent.propose(round_index, 3, [])
            for proposal in reversed(proposals) if reverse else proposals:
                agent.observe(proposal, synthetic_pgr(proposal.method), 5)
        return agent.propose(3, 3, [])

    assert next_round(reverse=False) == next_round(reverse=True)


def test_proposals_are_identical_in_a_fresh_process():
    """A resumed study runs in a new process, with a different hash seed."""
    script = (
        "import sys; sys.path.insert(0, 'tests')\n"
        "from test_search_embedded import run_rounds, star_post\n"
        "from labgap.search.embedded import EmbeddedAgent\n"
        "from labgap.search.directions import DIRECTIONS\n"
        "agents = [EmbeddedAgent(i, d, seed=42 + i) for i, d in enumerate(DIRECTIONS[:4])]\n"
        "for proposals in run_rounds(agents, rounds=3, n=2, forum=[star_post(agent_id=11)]):\n"
        "    print([p.model_dump_json() for p in proposals])\n"
    )
    root = Path(__file__).resolve().parent.parent
    outputs = [
        subprocess.run(
            [sys.executable, "-c", script],
            cwd=root,
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for hash_seed in ("1", "2")
    ]
    agents = [EmbeddedAgent(i, d, seed=42 + i) for i, d in enumerate(DIRECTIONS[:4])]
    here = run_rounds(agents, rounds=3, n=2, forum=[star_post(agent_id=11)])
    expected = "".join(f"{[p.model_dump_json() for p in proposals]}\n" for proposals in here)
    assert outputs == [expected, expected]


@pytest.mark.parametrize(
    "options", [{"n_startup_trials": 0}, {"borrow_probability": 1.5}, {"borrow_probability": -0.1}]
)
def test_invalid_agent_settings_are_rejected(options):
    with pytest.raises(ValueError):
        EmbeddedAgent(0, DIRECTIONS[0], seed=1, **options)


class SyntheticLab:
    """A `Lab` scoring by `synthetic_pgr`, charging one call per new method, as the pipeline's."""

    def __init__(self, budget: int = 3, charge: int = 1):
        self.asked: list[tuple[int, int, str]] = []
        self.budget = budget
        self._charge = charge

    def charge(self, method):
        return self._charge

    def score(self, agent_id, round, methods, n_seeds=None):
        from labgap.search.scoring import ScoringCall

        self.asked += [(agent_id, round, m.method_hash) for m in methods]
        used = sum(asker == agent_id for asker, _, _ in self.asked)
        return [
            ScoringCall(
                agent_id=agent_id,
                round=round,
                method_hash=m.method_hash,
                method_json=m.canonical_json(),
                family=m.family,
                seeds="[0, 1]",
                dev_pgr=synthetic_pgr(m),
                budget_left=self.budget - used,
            )
            for m in methods
        ]


def test_a_round_proposes_scores_and_posts_and_a_used_budget_stops_the_agent():
    agent = EmbeddedAgent(0, DIRECTIONS[0], seed=5, proposals_per_round=2, scoring_budget=3)
    lab = SyntheticLab()
    first = agent.run_round(0, [], lab)
    assert len(first.scored) == 2 and first.stop_reason is None and not first.out_of_budget
    assert [s.n_seeds for s in first.scored] == [2, 2]
    (post,) = first.posts
    assert post.dev_pgr == max(s.dev_pgr for s in first.scored)
    second = agent.run_round(1, [], lab)
    assert len(second.scored) == 1
    third = agent.run_round(2, [], lab)
    assert third.scored == [] and third.out_of_budget
    assert third.stop_reason == "scoring budget used up" and len(third.posts) == 1
    assert len(lab.asked) == 3


def test_a_proposal_the_budget_left_cannot_pay_for_is_dropped_unscored():
    agent = EmbeddedAgent(0, DIRECTIONS[0], seed=5, proposals_per_round=2, scoring_budget=3)
    outcome = agent.run_round(0, [], SyntheticLab(charge=2))
    assert len(outcome.scored) == 1 and not outcome.out_of_budget  # two proposed, one paid for
    outcome = agent.run_round(1, [], SyntheticLab(charge=4))
    assert outcome.scored == [] and outcome.stop_reason is None  # nothing affordable this round


def test_a_replayed_agent_asks_for_exactly_what_it_asked_before():
    asked = []
    for _ in range(2):
        agent, lab = EmbeddedAgent(1, DIRECTIONS[1], seed=9, proposals_per_round=2), SyntheticLab()
        for round_index in range(3):
            agent.run_round(round_index, [star_post()], lab)
        asked.append(lab.asked)
    assert asked[0] == asked[1] and len(asked[0]) == 6
