"""Aggregating per-document scores as lm-eval 0.4.x does: means with their standard errors, and
perplexity (exp of the negative mean log-likelihood) with a bootstrap standard error."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

BOOTSTRAP_ITERS = 100_000  # lm-eval's default
BOOTSTRAP_CHUNK = 1000


def mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


def sample_stddev(values: Sequence[float]) -> float:
    mu = mean(values)
    return math.sqrt(math.fsum((x - mu) ** 2 for x in values) / (len(values) - 1))


def mean_stderr(values: Sequence[float]) -> float:
    return sample_stddev(values) / math.sqrt(len(values))


def perplexity(loglikelihoods: Sequence[float]) -> float:
    return math.exp(-mean(loglikelihoods))


def perplexity_stderr(loglikelihoods: Sequence[float], iters: int = BOOTSTRAP_ITERS) -> float:
    """lm-eval's bootstrap: perplexity of `iters` resamples with replacement, in chunks of 1000
    each seeded by its index; the sample stddev of those perplexities. (numpy's generator, not
    Python's `random`, draws the resamples: the same estimator, not the same draws.)"""
    xs = np.asarray(loglikelihoods, dtype=np.float64)
    replicates = []
    for chunk in range(max(iters // BOOTSTRAP_CHUNK, 1)):
        picks = np.random.default_rng(chunk).integers(0, len(xs), size=(min(BOOTSTRAP_CHUNK, iters), len(xs)))
        replicates.append(np.exp(-xs[picks].mean(axis=1)))
    return float(np.std(np.concatenate(replicates), ddof=1))


def aggregate(aggregation: str, values: Sequence[float]) -> tuple[float, float | None]:
    """(score, standard error); the error is None for a single document, as lm-eval's 'N/A'."""
    if aggregation == "perplexity":
        return perplexity(values), perplexity_stderr(values) if len(values) > 1 else None
    return mean(values), mean_stderr(values) if len(values) > 1 else None


def normalized(score: float, baseline: float, full: float) -> float | None:
    """0 = the random/majority baseline, 1 = the unmodified model (None when they coincide)."""
    if math.isclose(full, baseline):
        return None
    return (score - baseline) / (full - baseline)
