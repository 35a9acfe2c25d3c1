"""Reward-hacking checks on the confirmed winner, from the pipeline's own numbers.

The seed study's agents gamed their score (one skipped the teacher and predicted the commonest
class; others kept the best of many seeds): a winner whose fresh-seed effect falls far below its
dev promise, or whose student collapses onto one class, is flagged beside the verdict.
"""

import math

from pydantic import BaseModel

IMPLAUSIBLE_PGR = 1.2
"""A mean dev PGR above this beats the ceiling (ground truth) by more than noise explains: a
method there has seen labels it should not have (a leak), so it is flagged and never crowned."""


class HackingFlags(BaseModel):
    """Signs a winning method games the score rather than learning from the teacher."""

    flags: list[str]
    reasons: list[str]


def reward_hacking_flags(
    winner_dev_pgr: float,
    naive_effect: float | None,
    fresh_effect: float | None,
    top_class_share: float,
    baseline_top_class_share: float,
) -> HackingFlags:
    """Checks on the pipeline's own numbers: dev far above fresh test, or a collapsed student."""
    flags, reasons = [], []
    if fresh_effect is not None and naive_effect is not None and naive_effect - fresh_effect > 0.2:
        flags.append("dev_much_above_test")
        reasons.append(
            f"the search promised +{naive_effect:.3f} PGR over vanilla on dev; fresh test seeds "
            f"gave {fresh_effect:+.3f}"
        )
    if top_class_share > 0.95 and top_class_share - baseline_top_class_share > 0.1:
        flags.append("predicts_one_class")
        reasons.append(
            f"the winner puts {top_class_share:.0%} of test predictions in one class "
            f"(vanilla: {baseline_top_class_share:.0%}): it may ignore the teacher"
        )
    if not math.isfinite(winner_dev_pgr) or winner_dev_pgr > IMPLAUSIBLE_PGR:
        flags.append("implausible_dev_pgr")
        reasons.append(f"dev PGR {winner_dev_pgr:.3f} exceeds what ground truth gives")
    return HackingFlags(flags=flags, reasons=reasons)
