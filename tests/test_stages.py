"""The search stage runs the agents of a round at once: Claude agents' requests overlap in time
(bounded by the API's concurrency limit), and the round's outcome is the same as one by one."""

import secrets

from claude_agents import RecordingLab, make_agent
from claude_logs import MemoryConversationLog
from fake_anthropic import FakeAnthropic, researcher

from labgap.config import StudyConfig
from labgap.plan import build_plan
from labgap.stages import search

LATENCY = 0.4


class Sink:
    def __init__(self):
        self.posts, self.stops = [], []

    def forum_posts(self, posts):
        self.posts += posts

    def agent_stopped(self, agent_id, round, reason):
        self.stops.append((agent_id, round, reason))


def overlapping_pairs(spans: list[tuple[float, float]]) -> int:
    return sum(
        1
        for i, (start, end) in enumerate(spans)
        for other_start, other_end in spans[i + 1 :]
        if start < other_end and other_start < end
    )


def claude_search(tasks, concurrency: int):
    lab_task, heldout, production = tasks
    config = StudyConfig(
        lab_task=lab_task,
        heldout_tasks=[heldout],
        production_targets=[production],
        n_agents=3,
        rounds=2,
        quick_seeds=2,
    )
    plan = build_plan(config)
    api_key = "sk-ant-test-" + secrets.token_hex(16)
    lab = RecordingLab(plan.lab.spec, budget=10, min_seeds=2)
    sink = Sink()
    with FakeAnthropic(researcher, api_key=api_key, latency_seconds=LATENCY) as api:
        log = MemoryConversationLog()
        agents = [
            make_agent(i, api, log, api_key, max_concurrent_requests=concurrency) for i in range(3)
        ]
        found = search(plan, agents, lab, lab.book, sink, lambda line: None)
        return found, sink, api.spans


def test_claude_agents_of_a_round_overlap_in_time_and_decide_the_same(tiny_study_tasks):
    found, sink, spans = claude_search(tiny_study_tasks, concurrency=4)
    assert len(spans) == 3 * 2 * 4  # 3 agents, 2 rounds, 4 requests each
    assert overlapping_pairs(spans) >= 3 * 2 * 4  # each request overlaps others of its round
    one_at_a_time, sink_serial, serial_spans = claude_search(tiny_study_tasks, concurrency=1)
    assert overlapping_pairs(serial_spans) == 0  # the API limit binds: no two requests at once
    assert found.leaderboard.equals(one_at_a_time.leaderboard)
    assert [p.model_dump() for p in sink.posts] == [p.model_dump() for p in sink_serial.posts]
