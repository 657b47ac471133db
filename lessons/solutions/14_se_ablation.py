"""Reference solutions of lesson 14's exercises."""
import math
import statistics


def exceeds_spread(variant_top1, base_top1):
    if len(variant_top1) < 2 or len(base_top1) < 2:
        return None
    delta = statistics.mean(variant_top1) - statistics.mean(base_top1)
    combined = math.sqrt(statistics.stdev(variant_top1) ** 2 + statistics.stdev(base_top1) ** 2)
    return abs(delta) > 2 * combined
