"""From paired winner-vs-baseline trials to the gap analysis and its `gap_results` rows."""

import json

import polars as pl

from labgap.stats import Candidate, GapAnalysis, GapConfig, SeedResult, TaskSample, analyse_gap
from labgap.w2s import TrialResult


def paired_rows(
    study_id: str,
    target: str,
    role: str,
    baseline: list[TrialResult],
    winner: list[TrialResult],
) -> pl.DataFrame:
    """One `transfer_trials` row per seed that both arms ran (test-split accuracies)."""
    by_seed = {trial.seed: trial for trial in baseline}
    rows = []
    for trial in winner:
        base = by_seed.get(trial.seed)
        if base is None:
            continue
        rows.append(
            {
                "study_id": study_id,
                "target": target,
                "role": role,
                "task_hash": trial.task_hash,
                "seed": trial.seed,
                "baseline_method_hash": base.method_hash,
                "winner_method_hash": trial.method_hash,
                "weak_acc": trial.weak_acc_test,
                "ceiling_acc": trial.ceiling_acc_test,
                "baseline_acc": base.student_acc_test,
                "winner_acc": trial.student_acc_test,
                "baseline_pgr": base.pgr_test,
                "winner_pgr": trial.pgr_test,
            }
        )
    return pl.DataFrame(
        rows, schema_overrides={"baseline_pgr": pl.Float64, "winner_pgr": pl.Float64}
    )


def task_sample(name: str, rows: pl.DataFrame) -> TaskSample:
    return TaskSample(
        name=name,
        seeds=[
            SeedResult(
                seed=row["seed"],
                weak_acc=row["weak_acc"],
                ceiling_acc=row["ceiling_acc"],
                baseline_acc=row["baseline_acc"],
                method_acc=row["winner_acc"],
            )
            for row in rows.sort("seed").iter_rows(named=True)
        ],
    )


def analyse_transfer(
    transfer: pl.DataFrame,
    lab_task: str,
    alpha: float,
    rho_min: float,
    board: pl.DataFrame,
    winner_hash: str,
    baseline_dev_pgr: float,
) -> GapAnalysis:
    """The lab effect on fresh seeds, each target's effect, verdicts; the leaderboard beside.

    The naive (selected) lab effect is a candidate's mean dev PGR minus vanilla's on the same
    search seeds: the number a leaderboard would have announced.
    """
    lab = task_sample(lab_task, transfer.filter(pl.col("role") == "lab_confirmation"))
    targets = [
        task_sample(name, transfer.filter(pl.col("target") == name))
        for name in transfer.filter(pl.col("role") != "lab_confirmation")["target"].unique(
            maintain_order=True
        )
    ]
    candidates = [
        Candidate(
            name=row["method_hash"],
            mean=row["mean_dev_pgr"] - baseline_dev_pgr,
            se=row["se_dev_pgr"] or 0.0,
            n=row["n_seeds"],
        )
        for row in board.filter(pl.col("min_seeds_met")).iter_rows(named=True)
    ]
    return analyse_gap(
        lab,
        targets,
        GapConfig(alpha=alpha, rho_min=rho_min),
        candidates=candidates or None,
        selected=winner_hash if candidates else None,
    )


def gap_rows(study_id: str, analysis: GapAnalysis, roles: dict[str, str]) -> pl.DataFrame:
    """`gap_results`: one row for the lab, one per target, one overall."""
    lab = analysis.lab
    rows = [
        {
            "study_id": study_id,
            "target": lab.name,
            "kind": "lab",
            "n": lab.n,
            "delta": lab.delta,
            "ci95_low": lab.ci_low,
            "ci95_high": lab.ci_high,
            "ci_adj_low": lab.ci_adj_low,
            "ci_adj_high": lab.ci_adj_high,
            "p_value": lab.p_value,
            "naive_estimate": lab.naive_estimate,
            "verdict": None,
            "seeds_needed": lab.seeds_needed,
            "flags": json.dumps(lab.flags),
            "reasons": json.dumps(lab.reasons),
            "detail_json": lab.model_dump_json(),
        }
    ]
    for target in analysis.targets:
        rows.append(
            {
                "study_id": study_id,
                "target": target.name,
                "kind": "target",
                "n": target.n,
                "delta": target.delta,
                "ci95_low": target.ci95_low,
                "ci95_high": target.ci95_high,
                "ci_adj_low": target.ci_adj_low,
                "ci_adj_high": target.ci_adj_high,
                "p_value": target.p_value,
                "p_holm": target.p_holm,
                "rho": target.rho,
                "rho_ci_low": target.rho_ci_low,
                "rho_ci_high": target.rho_ci_high,
                "rho_ci_kind": target.rho_ci_kind,
                "margin_upper": target.margin_upper,
                "verdict": target.verdict,
                "seeds_needed": target.seeds_needed,
                "flags": json.dumps(target.flags),
                "reasons": json.dumps(target.reasons),
                "detail_json": json.dumps({"role": roles.get(target.name), **target.model_dump()}),
            }
        )
    rows.append(
        {
            "study_id": study_id,
            "target": "overall",
            "kind": "overall",
            "verdict": analysis.overall_verdict,
            "flags": json.dumps(analysis.overall_flags),
            "reasons": json.dumps(analysis.overall_reasons),
            "detail_json": json.dumps(
                {"alpha": analysis.alpha, "rho_min": analysis.rho_min, "level": analysis.level}
            ),
        }
    )
    return pl.DataFrame(rows, schema=GAP_SCHEMA)


GAP_SCHEMA = {
    "study_id": pl.String,
    "target": pl.String,
    "kind": pl.String,
    "n": pl.Int64,
    "delta": pl.Float64,
    "ci95_low": pl.Float64,
    "ci95_high": pl.Float64,
    "ci_adj_low": pl.Float64,
    "ci_adj_high": pl.Float64,
    "p_value": pl.Float64,
    "p_holm": pl.Float64,
    "rho": pl.Float64,
    "rho_ci_low": pl.Float64,
    "rho_ci_high": pl.Float64,
    "rho_ci_kind": pl.String,
    "margin_upper": pl.Float64,
    "naive_estimate": pl.Float64,
    "verdict": pl.String,
    "seeds_needed": pl.Int64,
    "flags": pl.String,
    "reasons": pl.String,
    "detail_json": pl.String,
}
