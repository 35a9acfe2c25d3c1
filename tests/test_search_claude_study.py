"""A long Claude study stays inside the model's context: 9 agents, 20 rounds, every response
reading the forum, every post carrying a 2000-character rationale.

The agents are driven directly, in parallel threads per round as the flow runs them, against a
real `GuardedLab` and `TrialBook` on scripted trials (no training) and the fake Messages API with
a 200,000-token window (its count denser than the agents' estimate) and usage counted from each
request. 9 × 20 agent rounds through the Prefect flow would spend most of its time in task-run
bookkeeping; `test_flows_study_claude.py` covers the flow itself.
"""

import json
import secrets

from claude_agents import TASK, RecordingLab, run_rounds
from claude_logs import MemoryConversationLog
from fake_anthropic import FakeAnthropic, count_tokens, counted, forum_reader

from labgap.llm.budgets import StudyBudgetTracker, estimate_input_tokens
from labgap.llm.client import make_client
from labgap.llm.settings import AgentBudget, ClaudeSettings, StudyBudget
from labgap.search.claude.agent import ClaudeAgent
from labgap.search.claude.tools import FORUM_NOTE_CHARS, MAX_RATIONALE_CHARS
from labgap.search.directions import DIRECTIONS
from labgap.search.leaderboard import pick_winner, rank_methods

AGENTS, ROUNDS, QUICK_SEEDS = 9, 20, 2
WINDOW = 200_000
"""The fake model's context window; the agents' `max_context_tokens` stays at its default."""


def test_nine_agents_twenty_rounds_reading_the_forum_every_turn_stay_in_context(
    tiny_binary_task, record_property
):
    api_key = "sk-ant-test-" + secrets.token_hex(16)
    lab = RecordingLab(tiny_binary_task, budget=2 * ROUNDS, min_seeds=QUICK_SEEDS)
    log = MemoryConversationLog()
    script = counted(forum_reader(MAX_RATIONALE_CHARS, QUICK_SEEDS))
    with FakeAnthropic(script, api_key=api_key, max_requests=2_000, context_window=WINDOW) as api:
        settings = ClaudeSettings(
            base_url=api.base_url,
            request_timeout_seconds=30,
            agent_budget=AgentBudget(max_tokens_per_agent=10**9, max_usd_per_agent=10**4),
            study_budget=StudyBudget(
                max_tokens_per_study=10**10, max_usd_per_study=10**5, max_tool_calls_per_study=10**4
            ),
        )
        tracker = StudyBudgetTracker(settings.study_budget)
        client = make_client(settings, api_key=api_key)
        agents = [
            ClaudeAgent(
                agent_id,
                DIRECTIONS[agent_id],
                settings,
                log,
                task_description=TASK,
                study_budget=tracker,
                min_seeds=QUICK_SEEDS,
                client=client,
            )
            for agent_id in range(AGENTS)
        ]
        outcomes = run_rounds(agents, lab, ROUNDS)

    # Every agent finished every round with a submission; no request was refused.
    assert [len(done) for done in outcomes] == [AGENTS] * ROUNDS
    for done in outcomes:
        for outcome in done:
            assert outcome.submitted is not None and outcome.stop_reason is None
            assert outcome.api_calls == 3 and not outcome.out_of_budget
    assert all(request.reply.status == 200 for request in api.requests)
    assert len(api.requests) == AGENTS * ROUNDS * 3

    # Every request fit: by the fake API's count and by the agents' own estimate.
    largest = max(api.scripted_bodies, key=count_tokens)
    counted_tokens, estimated = count_tokens(largest), estimate_input_tokens(largest)
    record_property("largest request (fake API count, tokens)", counted_tokens)
    record_property("largest request (agent estimate, tokens)", estimated)
    assert counted_tokens + settings.max_tokens <= WINDOW
    assert estimated + settings.max_tokens <= settings.max_context_tokens

    # Each round's first read shows a bounded page; the two re-reads point back to it.
    for agent in agents:
        reads = [
            json.loads(block["content"])
            for stored in log.messages(agent.agent_id)
            if stored.kind == "tool_results"
            for block in stored.content
            if '"posts_in_forum"' in block["content"] or '"unchanged"' in block["content"]
        ]
        assert len(reads) == 3 * ROUNDS
        pages = reads[::3]
        assert all(read["unchanged"] for i, read in enumerate(reads) if i % 3)
        assert [page["posts_in_forum"] for page in pages] == [AGENTS * r for r in range(ROUNDS)]
        assert max(len(page["posts"]) for page in pages) <= settings.forum_posts_shown + 1
        assert max(len(json.dumps(page)) for page in pages) < 7_000  # about 1,750 tokens
        notes = [post["untrusted_note"] for page in pages for post in page["posts"]]
        assert max(len(note) for note in notes) == FORUM_NOTE_CHARS

    # Re-asking last round's method was free: one charged call per agent and round.
    assert len(lab.rows) == AGENTS * ROUNDS
    assert len(lab.trials_run) == AGENTS * ROUNDS * QUICK_SEEDS
    # The methods the agents could score are eligible to win.
    board = rank_methods(lab.book.of_phase(tiny_binary_task, "search"), lab.calls, QUICK_SEEDS)
    assert pick_winner(board)["n_seeds"] == QUICK_SEEDS
