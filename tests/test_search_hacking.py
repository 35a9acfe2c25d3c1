"""Reward-hacking flags on the confirmed winner."""

from labgap.search.hacking import reward_hacking_flags


def test_an_honest_winner_raises_no_flag():
    assert reward_hacking_flags(0.5, 0.3, 0.25, 0.55, 0.5).flags == []


def test_dev_far_above_fresh_test_a_collapsed_student_and_impossible_scores_are_flagged():
    flags = reward_hacking_flags(1.5, 0.6, 0.1, 0.99, 0.6)
    assert flags.flags == ["dev_much_above_test", "predicts_one_class", "implausible_dev_pgr"]
    assert len(flags.reasons) == 3 and "+0.600" in flags.reasons[0]


def test_no_baseline_dev_pgr_skips_the_dev_versus_test_check():
    assert reward_hacking_flags(0.5, None, -1.0, 0.5, 0.5).flags == []
