"""Quality gates: valid frames pass, corrupted ones fail with a message naming the expectation,
the column and the unexpected count, warnings are recorded but never raise, and concurrent
validations keep their own counts."""

import json
import pickle
from concurrent.futures import ThreadPoolExecutor

import polars as pl
import pytest

from labgap.errors import LabgapInputError
from labgap.quality import (
    STAGES,
    QualityGateError,
    SuiteError,
    load_suite,
    validate_stage,
)
from labgap.store.connection import Store
from labgap.store.rows import to_frame

STUDY = "study-1"
SHA = "3f" * 32


def tasks_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "study_id": [STUDY] * 3,
            "task": ["rt", "rt-mpnet", "bbc"],
            "role": ["lab", "production", "heldout"],
            "task_hash": ["t1", "t2", "t3"],
            "spec_json": ['{"name": "rt"}', '{"name": "rt-mpnet"}', '{"name": "bbc"}'],
            "dataset": ["rotten-tomatoes", "rotten-tomatoes", "bbc-news"],
            "dataset_sha256": [SHA] * 3,
            "n_rows": [12000, 12000, 2225],
            "n_classes": [2, 2, 5],
        },
        schema_overrides={"n_rows": pl.Int32, "n_classes": pl.Int32},
    )


def trials_frame(n: int = 40) -> pl.DataFrame:
    """n trials of two methods over seeds; the last seed has no ceiling-weak gap (PGR null)."""
    weak = [0.669] * n
    ceiling = [0.759] * (n - 1) + [0.669]
    student = [0.70 + 0.001 * (i % 7) for i in range(n)]
    pgr = [
        (s - w) / (c - w) if c > w else None for s, w, c in zip(student, weak, ceiling, strict=True)
    ]
    return pl.DataFrame(
        {
            "study_id": [STUDY] * n,
            "phase": ["search"] * (n - 2) + ["confirm"] * 2,
            "task": ["rt"] * n,
            "task_hash": ["t1"] * n,
            "method_hash": [f"m{i % 2}" for i in range(n)],
            "method_json": ['{"loss": "logconf"}'] * n,
            "seed": [i // 2 for i in range(n)],
            "weak_acc_dev": weak,
            "weak_acc_test": weak,
            "ceiling_acc_dev": ceiling,
            "ceiling_acc_test": ceiling,
            "student_acc_dev": student,
            "student_acc_test": student,
            "student_top_class_share": [0.55] * n,
            "pgr_dev": pgr,
            "pgr_test": pgr,
            "wall_seconds": [1.2] * n,
            "teacher_cached": [i > 1 for i in range(n)],
            "dataset_sha256": [SHA] * n,
            "code_version": ["abc123"] * n,
        },
        schema_overrides={"seed": pl.Int32},
    )


def leaderboard_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "study_id": [STUDY] * 3,
            "rank": [1, 2, 3],
            "method_hash": ["m1", "m0", "m2"],
            "method_json": ['{"loss": "logconf"}', '{"loss": "xent"}', '{"loss": "bootstrap"}'],
            "family": ["logconf", "xent", "bootstrap"],
            "n_seeds": [5, 5, 1],
            "mean_dev_pgr": [0.52, 0.12, 0.05],
            "se_dev_pgr": [0.04, 0.08, None],
            "proposed_by": ["0,3", "baseline", "7"],
            "min_seeds_met": [True, True, False],
        }
    )


def transfer_frame(n_seeds: int = 5) -> pl.DataFrame:
    targets = [("rt", "lab_confirmation"), ("rt-mpnet", "production"), ("bbc", "heldout")]
    rows = [
        {
            "study_id": STUDY,
            "target": target,
            "role": role,
            "task_hash": f"h-{target}",
            "seed": 100 + seed,
            "baseline_method_hash": "m0",
            "winner_method_hash": "m1",
            "weak_acc": 0.669,
            "ceiling_acc": 0.759,
            "baseline_acc": 0.68,
            "winner_acc": 0.71,
            "baseline_pgr": (0.68 - 0.669) / 0.09,
            "winner_pgr": (0.71 - 0.669) / 0.09,
        }
        for target, role in targets
        for seed in range(n_seeds)
    ]
    return pl.DataFrame(rows)


def gap_frame() -> pl.DataFrame:
    flags = [json.dumps(["naive_upward_biased"]), "[]", json.dumps(["insufficient_seeds"]), "[]"]
    return pl.DataFrame(
        {
            "study_id": [STUDY] * 4,
            "target": ["rt", "rt-mpnet", "bbc", "overall"],
            "kind": ["lab", "target", "target", "overall"],
            "n": [5, 5, 5, None],
            "delta": [0.40, 0.35, -0.2, None],
            "ci95_low": [0.30, 0.20, -0.5, None],
            "ci95_high": [0.50, 0.50, 0.1, None],
            "ci_adj_low": [None, 0.15, -0.6, None],
            "ci_adj_high": [None, 0.55, 0.2, None],
            "p_value": [0.001, 0.004, 0.2, None],
            "p_holm": [None, 0.008, 0.2, None],
            "rho": [None, 0.875, -0.5, None],
            # A Fieller complement set has low > high; only bounded sets must be ordered.
            "rho_ci_low": [None, 0.4, 0.9, None],
            "rho_ci_high": [None, 1.3, -2.0, None],
            "rho_ci_kind": [None, "bounded", "complement", None],
            "margin_upper": [None, 0.3, -0.1, None],
            "naive_estimate": [0.55, None, None, None],
            "verdict": [None, "replicated", "failed_to_replicate", "replicated"],
            "seeds_needed": [None, None, 12, None],
            "flags": flags,
            "reasons": ['["selected in search"]', "[]", '["few seeds"]', "[]"],
            "detail_json": ["{}"] * 4,
            "look": [2, 1, 3, None],
            "stop_reason": ["decided", "decided", "cap", None],
            "rho_ci_set": [None, None, None, None],
        },
        schema_overrides={"n": pl.Int32, "seeds_needed": pl.Int32, "look": pl.Int32},
    )


def rows_frame(columns: str, rows: list[tuple]) -> pl.DataFrame:
    """A frame of the study from row tuples: the compact way to write the streamed tables."""
    frame = pl.DataFrame(rows, schema=columns.split(), orient="row")
    return frame.with_columns(study_id=pl.lit(STUDY))


def agents_frame() -> pl.DataFrame:
    directions = ["loss-shaping", "data-filtering", "training-dynamics"]
    rows = [(i, key, "{}", "embedded", 7000 + i, 3) for i, key in enumerate(directions)]
    return rows_frame("agent_id direction direction_json backend sampler_seed scoring_budget", rows)


def scoring_calls_frame() -> pl.DataFrame:
    """Two agents over two rounds; one call's seeds had no ceiling-weak gap (dev PGR null)."""
    columns = "agent_id round method_hash method_json family seeds dev_pgr budget_left"
    seeds = "[7000, 7001]"
    rows = [
        (0, 0, "m1", "{}", "logconf", seeds, 0.41, 2),
        (0, 1, "m2", "{}", "xent", seeds, -0.2, 1),
        (1, 0, "m1", "{}", "logconf", seeds, None, 2),
        (1, 0, "m3", "{}", "knn", "[7000]", 0.0, 0),
    ]
    return rows_frame(columns, rows)


def forum_posts_frame() -> pl.DataFrame:
    """A post whose method had no defined dev PGR yet comes with no score and no seeds."""
    columns = "round agent_id method_hash method_json dev_pgr n_seeds rationale"
    rows = [(0, 0, "m1", "{}", 0.41, 2, "best of 1"), (0, 1, "m3", "{}", None, 0, "none yet")]
    return rows_frame(columns, [*rows, (1, 0, "m1", "{}", 0.41, 2, "best of 2")])


def agent_messages_frame() -> pl.DataFrame:
    """Two agents' conversations: a prompt, a tool call, its results, the next round's prompt."""
    kinds, content = ["prompt", "model", "tool_results", "prompt", "model"], '[{"type": "text"}]'
    role = {"model": "assistant"}
    rows = [
        (a, s // 3, s, role.get(k, "user"), k, content) for a in (0, 1) for s, k in enumerate(kinds)
    ]
    return rows_frame("agent_id round seq role kind content_json", rows)


def llm_calls_frame() -> pl.DataFrame:
    columns = "agent_id round turn model input_tokens output_tokens cache_creation_input_tokens "
    columns += "cache_read_input_tokens latency_seconds stop_reason usd attempts request_id"
    call = ("claude-test", 1200, 300, 0, 900, 2.5, "tool_use", 0.012, 1)
    return rows_frame(
        columns, [(a, t // 2, t, *call, f"r{a}{t}") for a in (0, 1) for t in range(3)]
    )


def failed_trials_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "study_id": [STUDY] * 2,
            "phase": ["search", "confirm"],
            "task": ["rt"] * 2,
            "task_hash": ["t1"] * 2,
            "method_hash": ["p1"] * 2,
            "method_json": ['{"kind": "program"}'] * 2,
            "seed": [0, 500],
            "error": ["fit_predict raised ZeroDivisionError: division by zero"] * 2,
            "cpu_seconds": [0.4, 0.5],
            "wall_seconds": [0.6, 0.7],
            "code_version": ["abc123"] * 2,
        }
    )


def method_programs_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "program_id": ["0123456789abcdef", "fedcba9876543210"],
            "name": ["em_relabel", "mine"],
            "source": ["def fit_predict(data):\n    return None\n"] * 2,
            "params_json": ["{}"] * 2,
        }
    )


BUILDERS = {
    "tasks": tasks_frame,
    "failed_trials": failed_trials_frame,
    "method_programs": method_programs_frame,
    "agents": agents_frame,
    "trials": trials_frame,
    "scoring_calls": scoring_calls_frame,
    "forum_posts": forum_posts_frame,
    "agent_messages": agent_messages_frame,
    "llm_calls": llm_calls_frame,
    "leaderboard": leaderboard_frame,
    "transfer_trials": transfer_frame,
    "gap_results": gap_frame,
}


def gate_error(stage: str, frame: pl.DataFrame) -> QualityGateError:
    with pytest.raises(QualityGateError) as caught:
        validate_stage(stage, frame, STUDY).raise_for_failures()
    return caught.value


@pytest.mark.parametrize("stage", STAGES)
def test_every_suite_loads_and_guards_against_empty_output(stage):
    suite = load_suite(stage)
    assert suite["name"] == stage
    first = suite["expectations"][0]
    assert first["type"] == "expect_table_row_count_to_be_between"
    assert first["kwargs"]["min_value"] == 1 and first["meta"]["critical"] is True


@pytest.mark.parametrize("stage", STAGES)
def test_a_valid_frame_passes_every_check(stage):
    frame = BUILDERS[stage]()
    result = validate_stage(stage, frame, STUDY).raise_for_failures()
    assert result.passed and not result.warnings
    assert len(result.checks) == len(load_suite(stage)["expectations"])
    assert {c.stage for c in result.checks} == {stage}
    assert {c.study_id for c in result.checks} == {STUDY}
    assert all(c.element_count is not None for c in result.checks)


@pytest.mark.parametrize("stage", STAGES)
def test_an_empty_frame_fails_the_row_count_gate(stage):
    error = gate_error(stage, BUILDERS[stage]().clear())
    assert "expect_table_row_count_to_be_between on the table: observed 0 rows" in str(error)


def test_an_out_of_range_accuracy_names_expectation_column_and_count():
    frame = trials_frame(40).with_columns(
        pl.when(pl.int_range(pl.len()) < 3)
        .then(1.7)
        .otherwise(pl.col("student_acc_dev"))
        .alias("student_acc_dev")
    )
    error = gate_error("trials", frame)
    assert error.stage == "trials"
    assert isinstance(error, LabgapInputError) and isinstance(error, ValueError)
    assert str(error).startswith(
        "quality gate 'trials' failed: expect_column_values_to_be_between on column "
        "'student_acc_dev': 3 unexpected of 40 rows"
    )
    [failure] = error.failures
    assert failure.expectation == "expect_column_values_to_be_between:student_acc_dev"
    assert (failure.element_count, failure.unexpected_count, failure.critical) == (40, 3, True)


def test_a_duplicate_key_fails_the_compound_uniqueness_check():
    frame = trials_frame(40)
    frame = pl.concat([frame, frame.head(1)])
    error = gate_error("trials", frame)
    assert (
        "expect_compound_columns_to_be_unique on columns "
        "'study_id,task_hash,method_hash,seed': 2 unexpected of 41 rows"
    ) in str(error)


def test_a_bad_verdict_string_fails():
    frame = gap_frame().with_columns(
        pl.when(pl.col("kind") == "overall")
        .then(pl.lit("replicated!"))
        .otherwise(pl.col("verdict"))
        .alias("verdict")
    )
    error = gate_error("gap_results", frame)
    assert "expect_column_values_to_be_in_set on column 'verdict': 1 unexpected of 4 rows" in str(
        error
    )
    assert "replicated!" in str(error)


def test_every_target_says_why_it_stopped():
    frame = gap_frame().with_columns(
        stop_reason=pl.when(pl.col("target") == "bbc").then(None).otherwise(pl.col("stop_reason"))
    )
    assert "expect_column_values_to_not_be_null on column 'stop_reason'" in str(
        gate_error("gap_results", frame)
    )
    unknown = gap_frame().with_columns(stop_reason=pl.lit("tired"))
    assert "expect_column_values_to_be_in_set on column 'stop_reason'" in str(
        gate_error("gap_results", unknown)
    )


def test_gap_results_need_one_overall_row_and_no_verdict_on_the_lab_row():
    frame = gap_frame()
    no_overall = frame.filter(pl.col("kind") != "overall")
    assert (
        "expect_table_row_count_to_equal on column 'kind': observed 0 rows where kind == overall"
        in (str(gate_error("gap_results", no_overall)))
    )
    judged_lab = frame.with_columns(verdict=pl.col("verdict").fill_null("replicated"))
    assert "expect_column_values_to_be_null on column 'verdict': 1 unexpected of 1 rows" in str(
        gate_error("gap_results", judged_lab)
    )
    inverted = frame.with_columns(ci95_low=pl.col("ci95_high") + 1)
    assert (
        "expect_column_pair_values_a_to_be_greater_than_b on columns 'ci95_high,ci95_low'"
        in str(gate_error("gap_results", inverted))
    )


def test_tasks_need_exactly_one_lab_task():
    frame = tasks_frame().with_columns(role=pl.lit("lab"))
    error = gate_error("tasks", frame)
    assert (
        "expect_table_row_count_to_equal on column 'role': observed 3 rows where role == lab"
        in (str(error))
    )
    bad_hash = tasks_frame().with_columns(dataset_sha256=pl.lit("not-a-sha"))
    assert "expect_column_values_to_match_regex on column 'dataset_sha256': 3 unexpected" in str(
        gate_error("tasks", bad_hash)
    )


def test_leaderboard_needs_a_standard_error_from_two_seeds_on():
    frame = leaderboard_frame().with_columns(se_dev_pgr=pl.lit(None, dtype=pl.Float64))
    error = gate_error("leaderboard", frame)
    assert "expect_column_values_to_not_be_null on column 'se_dev_pgr': 2 unexpected of 2 rows" in (
        str(error)
    )


def at(column: str, value):
    """Corrupts the first row: `column` set to `value`."""
    first = pl.int_range(pl.len()) == 0
    return lambda frame: frame.with_columns(
        pl.when(first).then(pl.lit(value)).otherwise(pl.col(column)).alias(column)
    )


def duplicated(frame: pl.DataFrame) -> pl.DataFrame:
    return pl.concat([frame, frame.head(1)])


@pytest.mark.parametrize(
    ("stage", "corrupt", "message"),
    [
        ("scoring_calls", duplicated, "'study_id,agent_id,round,method_hash': 2 unexpected of 5"),
        ("scoring_calls", at("budget_left", -1), "between on column 'budget_left': 1 unexpected"),
        ("scoring_calls", at("seeds", "[7000, 7001"), "be_json_parseable on column 'seeds'"),
        ("scoring_calls", at("seeds", "[]"), "match_regex on column 'seeds': 1 unexpected of 4"),
        ("agent_messages", at("role", "system"), "'role': 1 unexpected of 10 rows"),
        ("agent_messages", at("role", "assistant"), "'kind': 1 unexpected of 5 rows where role =="),
        ("agent_messages", duplicated, "'study_id,agent_id,seq': 2 unexpected of 11 rows"),
        ("agent_messages", at("content_json", "[{"), "json_parseable on column 'content_json'"),
        ("forum_posts", at("n_seeds", 0), "'dev_pgr': 1 unexpected of 2 rows where n_seeds == 0"),
        ("llm_calls", at("attempts", 0), "'attempts': 1 unexpected of 6 rows"),
        ("llm_calls", at("output_tokens", -5), "'output_tokens': 1 unexpected of 6 rows"),
        ("agents", at("agent_id", 1), "'study_id,agent_id': 2 unexpected of 3 rows"),
        ("agents", at("backend", "claude"), "unique_value_count_to_be_between on column 'backend'"),
    ],
)
def test_a_corrupt_streamed_row_fails_naming_its_check(stage, corrupt, message):
    assert message in str(gate_error(stage, corrupt(BUILDERS[stage]())))


def test_a_call_that_got_no_usable_response_is_only_a_warning():
    frame = at("stop_reason", None)(llm_calls_frame()).with_columns(latency_seconds=pl.lit(0.0))
    [warning] = validate_stage("llm_calls", frame, STUDY).raise_for_failures().warnings
    assert warning.expectation == "expect_column_values_to_not_be_null:stop_reason"


def test_rows_of_another_study_or_of_none_are_rejected():
    frame = transfer_frame().with_columns(study_id=pl.lit("other-study"))
    error = gate_error("transfer_trials", frame)
    assert "expect_column_values_to_be_in_set on column 'study_id': 15 unexpected of 15 rows" in (
        str(error)
    )
    # Value checks skip nulls, so every suite also has a not-null check on the study id.
    frame = transfer_frame().with_columns(study_id=pl.lit(None, dtype=pl.String))
    error = gate_error("transfer_trials", frame)
    assert "expect_column_values_to_not_be_null on column 'study_id': 15 unexpected" in str(error)


def test_a_missing_column_fails_with_the_error_gx_caught():
    error = gate_error("transfer_trials", transfer_frame().drop("winner_acc"))
    assert "expect_table_columns_to_match_set on the table: missing ['winner_acc']" in str(error)
    assert "on column 'winner_acc': error: The column \"winner_acc\"" in str(error)


def test_warnings_are_recorded_but_never_raise():
    collapsed = pl.int_range(pl.len()) < 10
    frame = trials_frame(40).with_columns(
        pl.when(collapsed)
        .then(0.995)
        .otherwise(pl.col("student_top_class_share"))
        .alias("student_top_class_share")
    )
    result = validate_stage("trials", frame, STUDY).raise_for_failures()
    assert result.passed
    [warning] = result.warnings
    assert warning.expectation == "expect_column_values_to_be_between:student_top_class_share#2"
    assert (warning.critical, warning.success) == (False, False)
    assert (warning.element_count, warning.unexpected_count) == (40, 10)
    assert "10 unexpected of 40 rows (mostly 0.9)" in warning.detail


def test_checks_are_rows_of_the_quality_checks_table():
    result = validate_stage("leaderboard", leaderboard_frame(), STUDY)
    with Store(":memory:") as store:
        for batch, new_rows in [
            ("round-0", len(result.checks)),
            ("round-0", 0),
            ("round-1", len(result.checks)),
        ]:
            rows = to_frame(result.checks, batch=batch)
            assert store.insert("quality_checks", rows) == new_rows


def test_the_gate_error_survives_pickling():
    error = gate_error("leaderboard", leaderboard_frame().with_columns(rank=pl.lit(0)))
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.stage, copy.failures) == (str(error), error.stage, error.failures)


def test_unknown_stages_and_missing_or_invalid_suites_are_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(SuiteError, match="unknown quality stage 'report'"):
        validate_stage("report", tasks_frame(), STUDY)
    monkeypatch.setenv("LABGAP_EXPECTATIONS_DIR", str(tmp_path))
    with pytest.raises(SuiteError, match="tasks.json is missing"):
        validate_stage("tasks", tasks_frame(), STUDY)
    (tmp_path / "tasks.json").write_text("{not json")
    with pytest.raises(SuiteError, match="cannot read expectation suite"):
        validate_stage("tasks", tasks_frame(), STUDY)
    bogus = {"type": "expect_column_values_to_be_purple", "kwargs": {"column": "task"}}
    (tmp_path / "tasks.json").write_text(json.dumps({"name": "tasks", "expectations": [bogus]}))
    with pytest.raises(SuiteError, match="expect_column_values_to_be_purple"):
        validate_stage("tasks", tasks_frame(), STUDY)


def test_concurrent_validations_keep_their_own_counts():
    sizes = [3, 17, 40, 101] * 2
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda n: validate_stage("trials", trials_frame(n), STUDY), sizes))
    for n, result in zip(sizes, results, strict=True):
        assert result.passed
        assert {c.element_count for c in result.checks} == {n}
