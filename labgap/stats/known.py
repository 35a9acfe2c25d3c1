"""The winner's figures that need no study: its effect estimate alone, and the winner against
the known-methods baseline on the same fresh seeds."""

from labgap.stats.analysis import estimate_fields
from labgap.stats.intervals import t_interval, t_p_value
from labgap.stats.samples import task_data
from labgap.stats.schemas import GapConfig, KnownComparison, TaskSample, num


def effect_estimate(task: TaskSample) -> float | None:
    """The PGR-unit effect point estimate of one task: exactly the `delta` that `analyse_gap`
    reports for that task as its lab effect, None when it cannot be estimated. The reward-hacking
    check uses it on the fresh-seed confirmation, which needs the estimate without a study."""
    return num(task_data(task).effect.delta)


def compare_with_known(
    sample: TaskSample, known: str, known_hash: str, config: GapConfig
) -> KnownComparison:
    """The winner minus the known-methods baseline (the sample's baseline arm) in PGR units, with
    the 95% interval the lab effect reports too (a repeated interval at the lab's look in a
    sequential design). One comparison, chosen before any fresh seed ran (the known baseline is
    picked on the search seeds), so no multiplicity."""
    data = task_data(sample)
    fields = estimate_fields(data, sample, config)
    low, high = t_interval(data.effect, fields["ci_level"])
    low, high, delta = num(low), num(high), num(data.effect.delta)
    if low is not None and low > 0:
        verdict, reason = "better", f"the winner beats {known}: 95% interval above 0"
    elif high is not None and high < 0:
        verdict, reason = "worse", f"{known} beats the winner: 95% interval below 0"
    elif delta is None:
        verdict, reason = "no_clear_difference", "the difference could not be estimated"
    else:
        verdict, reason = "no_clear_difference", f"the 95% interval includes 0 ({known})"
    return KnownComparison(
        **fields,
        known=known,
        known_hash=known_hash,
        ci_low=low,
        ci_high=high,
        p_value=num(t_p_value(data.effect)),
        verdict=verdict,
        reason=reason,
    )
