"""Reference solutions of lesson 15's exercises."""
import math
import statistics

from tinyeffnet.experiments.paired import t_quantile


def paired_interval(a, b):
    seeds = sorted(set(a) & set(b))
    differences = [a[s] - b[s] for s in seeds]
    mean = statistics.fmean(differences)
    half = t_quantile(0.975, len(differences) - 1) * statistics.stdev(differences) / math.sqrt(len(differences))
    return mean, mean - half, mean + half
