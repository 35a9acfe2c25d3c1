"""What calls cost and the study budget shared by concurrent agents."""

import pytest

from labgap.llm.budgets import (
    Spend,
    StudyBudgetTracker,
    Usage,
    context_overflow,
    cost_usd,
    estimate_input_tokens,
)
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


def test_a_request_is_checked_against_the_context_with_its_output():
    settings = ClaudeSettings(max_tokens=1_000, max_context_tokens=5_000)
    request = {"messages": [{"role": "user", "content": "x" * 15_000}]}
    estimated = estimate_input_tokens(request)
    assert 3_750 <= estimated <= 3_800  # about four characters a token
    assert context_overflow(request, 0, settings) is None
    # The API's own count of an earlier request is a floor the estimate cannot go under.
    assert context_overflow(request, 4_001, settings) == (
        "the next request (~5,001 tokens with max_tokens) would exceed max_context_tokens (5,000)"
    )
    bigger = {"messages": [{"role": "user", "content": "x" * 17_000}]}
    assert context_overflow(bigger, 0, settings).startswith("the next request (~5,2")
