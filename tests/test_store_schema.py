"""The analyst views: the numbers they show, from rows as a study writes them."""

import polars as pl
import pytest

from labgap.store.connection import Store


def test_agent_hours_are_the_agents_own_call_and_experiment_time(tmp_path):
    with Store(tmp_path / "v.duckdb") as store:
        store.insert(
            "agents",
            pl.DataFrame(
                {
                    "study_id": ["s"] * 2,
                    "agent_id": [0, 1],
                    "direction": ["a", "b"],
                    "direction_json": ["{}"] * 2,
                    "backend": ["claude"] * 2,
                    "sampler_seed": [0, 1],
                    "scoring_budget": [5] * 2,
                }
            ),
        )
        store.insert(
            "tasks",
            pl.DataFrame(
                {
                    "study_id": ["s"],
                    "task": ["lab"],
                    "role": ["lab"],
                    "task_hash": ["th"],
                    "spec_json": ["{}"],
                    "dataset": ["d"],
                    "dataset_sha256": ["0" * 64],
                    "n_rows": [100],
                    "n_classes": [2],
                }
            ),
        )
        store.insert(
            "trials",
            pl.DataFrame(
                {
                    "study_id": ["s"] * 3,
                    "task": ["lab"] * 3,
                    "task_hash": ["th"] * 3,
                    "method_hash": ["m", "m", "other"],
                    "method_json": ["{}"] * 3,
                    "seed": [0, 1, 0],
                    **{
                        column: [0.5] * 3
                        for column in (
                            "weak_acc_dev",
                            "weak_acc_test",
                            "ceiling_acc_dev",
                            "ceiling_acc_test",
                            "student_acc_dev",
                            "student_acc_test",
                            "student_top_class_share",
                        )
                    },
                    "wall_seconds": [600.0, 1200.0, 3600.0],
                    "teacher_cached": [True] * 3,
                    "dataset_sha256": ["0" * 64] * 3,
                    "code_version": ["t"] * 3,
                }
            ),
        )
        store.insert(
            "scoring_calls",
            pl.DataFrame(
                {
                    "study_id": ["s"],
                    "agent_id": [0],
                    "round": [0],
                    "method_hash": ["m"],
                    "method_json": ["{}"],
                    "family": ["xent"],
                    "seeds": ["[0, 1]"],
                    "dev_pgr": [0.3],
                    "budget_left": [4],
                }
            ),
        )
        store.insert(
            "llm_calls",
            pl.DataFrame(
                {
                    "study_id": ["s"] * 3,
                    "agent_id": [0, 0, 1],
                    "round": [0] * 3,
                    "turn": [0, 1, 0],
                    "model": ["claude-test"] * 3,
                    "input_tokens": [10] * 3,
                    "output_tokens": [5] * 3,
                    "cache_creation_input_tokens": [0] * 3,
                    "cache_read_input_tokens": [0] * 3,
                    "latency_seconds": [900.0, 900.0, 360.0],
                    "stop_reason": ["end_turn"] * 3,
                    "usd": [1.0, 2.0, 0.5],
                    "attempts": [1] * 3,
                    "request_id": ["r"] * 3,
                }
            ),
        )
        costs = store.query(
            "SELECT agent_id, agent_hours, usd_per_agent_hour FROM cost_per_agent ORDER BY 1"
        )
    assert costs["agent_hours"].to_list() == pytest.approx([1.0, 0.1])
    assert costs["usd_per_agent_hour"].to_list() == pytest.approx([3.0, 5.0])
