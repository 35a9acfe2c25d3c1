"""What calls cost and the study budget shared by concurrent agents."""

import pytest

from labgap.llm.budgets import Spend, StudyBudgetTracker, Usage, cost_usd
from labgap.llm.settings import ClaudeSettings, ModelPrice, StudyBudget


def test_cost_follows_the_price_table():
    price = ClaudeSettings().price
    assert price == ModelPrice(
        input_per_mtok=5, output_per_mtok=25, cache_write_per_mtok=6.25, cache_read_per_mtok=0.5
    )
    tokens = Usage(
        input_tokens=1_000_000,
        output_tokens=100_000,
        cache_creation_input_tokens=200_000,
        cache_read_input_tokens=2_000_000,
    )
    assert cost_usd(tokens, price) == pytest.approx(5 + 2.5 + 1.25 + 1.0)


def test_study_tracker_reserves_so_concurrent_agents_cannot_overshoot():
    tracker = StudyBudgetTracker(StudyBudget(max_usd_per_study=1.0), spent=Spend(usd=0.2))
    assert tracker.reserve(Spend(usd=0.5)) is None
    assert tracker.reserve(Spend(usd=0.5)) == "study $ budget ($1.00) reached"
    tracker.settle(Spend(usd=0.5), Spend(usd=0.1))
    assert tracker.spent.usd == pytest.approx(0.3)
    assert tracker.reserve(Spend(usd=0.5)) is None
