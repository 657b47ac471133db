"""Paired statistics of the SE ablation: Student's t quantiles, intervals and verdicts on
synthetic runs whose answers are known."""
import math
import random
import statistics

import pytest

from tinyeffnet.experiments.paired import paired_difference, t_cdf, t_quantile, verdict


# Two-sided 95% and one-sided 95% critical values of Student's t (standard tables, 9 digits).
@pytest.mark.parametrize("p, df, want", [(0.975, 1, 12.7062047), (0.975, 2, 4.30265273), (0.975, 3, 3.18244631),
                                         (0.975, 4, 2.77644511), (0.975, 9, 2.26215716), (0.975, 30, 2.04227246),
                                         (0.95, 4, 2.13184679), (0.995, 5, 4.03214298)])
def test_t_quantile_matches_the_tables(p, df, want):
    assert t_quantile(p, df) == pytest.approx(want, abs=5e-8)
    assert t_quantile(1 - p, df) == pytest.approx(-want, abs=5e-8)
    assert t_cdf(want, df) == pytest.approx(p, abs=1e-9)


def test_t_quantile_tends_to_the_normal():
    assert t_quantile(0.975, 10 ** 6) == pytest.approx(1.959966, abs=1e-5)
    assert t_cdf(0.0, 3) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        t_quantile(1.0, 3)


def test_interval_by_hand():
    d = paired_difference({0: 0.90, 1: 0.91, 2: 0.92}, {0: 0.89, 1: 0.905, 2: 0.91})
    diffs = [0.01, 0.005, 0.01]
    half = 4.30265273 * statistics.stdev(diffs) / math.sqrt(3)
    assert d["seeds"] == [0, 1, 2] and d["n"] == 3
    assert d["mean"] == pytest.approx(statistics.fmean(diffs)) and d["half_width"] == pytest.approx(half)
    assert (d["low"], d["high"]) == (pytest.approx(d["mean"] - half), pytest.approx(d["mean"] + half))
    assert verdict(d) == "reproduced" and verdict(paired_difference({0: 0.8, 1: 0.81}, {0: 0.9, 1: 0.92})) == \
        "contradicted"


def test_only_common_seeds_count_and_one_seed_resolves_nothing():
    d = paired_difference({0: 0.9, 1: 0.8, 7: 0.5}, {1: 0.7, 2: 0.6})
    assert d["seeds"] == [1] and d["mean"] == pytest.approx(0.1) and d["low"] is None
    assert verdict(d) == "not resolved"


def test_a_shared_seed_effect_cancels_in_the_pairs():
    # Seeds move both variants alike by up to 4 points; the variant is 0.3 points below on every seed,
    # with 0.05 points of its own noise. Unpaired, 0.3 is lost in the spread; paired, it is resolved.
    rng = random.Random(0)
    seed_effect = {s: rng.uniform(-0.04, 0.04) for s in range(5)}
    base = {s: 0.90 + e for s, e in seed_effect.items()}
    variant = {s: 0.90 + e - 0.003 + rng.uniform(-0.0005, 0.0005) for s, e in seed_effect.items()}
    d = paired_difference(variant, base)
    assert verdict(d) == "contradicted" and d["high"] < 0 and d["low"] < -0.003 < d["high"]
    combined = math.hypot(statistics.stdev(variant.values()), statistics.stdev(base.values()))
    assert abs(d["mean"]) < 2 * combined  # the unpaired rule cannot see it


def test_noise_larger_than_the_difference_is_not_resolved():
    d = paired_difference({0: 0.91, 1: 0.89, 2: 0.905}, {0: 0.90, 1: 0.90, 2: 0.90})
    assert d["low"] < 0 < d["high"] and verdict(d) == "not resolved"
