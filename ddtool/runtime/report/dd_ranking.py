"""DD-Ranking's scores of a synthetic set, from test accuracies (Li et al., "DD-Ranking: Rethinking
the Evaluation of Dataset Distillation", arXiv 2505.13300; github.com/NUS-HPC-AI-Lab/DD-Ranking).

Every accuracy here is a fraction in [0, 1], so HLR and IOR lie in [-1, 1] and the exponential
scores map them onto [0, 100]. DD-Ranking computes the scores per evaluation round and averages
them; ``ddtool report`` computes them from the mean accuracies (the same to first order).
"""

from __future__ import annotations

import math

_LOW, _HIGH = math.exp(-1.0), math.exp(1.0)


def _check_weight(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")


def hlr(full: float, synthetic: float) -> float:
    """Hard-label recovery: HLR = Acc(full real data) - Acc(synthetic set), both with hard labels.

    How much of the full data's accuracy the set does *not* recover (lower is better).
    """
    return full - synthetic


def ior(synthetic: float, random: float) -> float:
    """Improvement over random: IOR = Acc(synthetic set) - Acc(random real subset of the same ipc),
    both under the identical evaluation protocol (higher is better)."""
    return synthetic - random


def exp_score(x: float) -> float:
    """(e^x - e^-1) / (e - e^-1) * 100: x = -1 maps to 0, x = 1 to 100 (DD-Ranking's normalisation)."""
    return (math.exp(x) - _LOW) / (_HIGH - _LOW) * 100.0


def lrs(hlr_value: float, ior_value: float, w: float = 0.5) -> float:
    """Label-robust score: LRS = (e^α - e^-1) / (e - e^-1) · 100 with α = w·IOR - (1 - w)·HLR.

    ``w`` in [0, 1] weighs improvement over random against hard-label recovery (DD-Ranking's
    leaderboard: 0.5). α = 1 (a set 100 points over random that recovers the full data) gives
    100, α = -1 gives 0.
    """
    _check_weight("w", w)
    return exp_score(w * ior_value - (1.0 - w) * hlr_value)


def ars(synthetic_aug: float, synthetic_plain: float, random_aug: float, random_plain: float,
        gamma: float = 0.5) -> float:
    """Augmentation-robust score, as DD-Ranking's ``AugmentationRobustScore.compute_metrics``
    (``ddranking/metrics/aug_robust.py``) defines it:

    β = γ·(Acc_syn,aug - Acc_rdm,aug) + (1 - γ)·(Acc_syn,plain - Acc_rdm,plain),
    ARS = (e^β - e^-1) / (e - e^-1) · 100,

    where *aug* is evaluation with the protocol's augmentation and *plain* without it, on the
    synthetic set and on random real subsets of the same ipc; ``gamma`` (DD-Ranking's
    ``ars_lambda``, default 0.5) weighs the two. A set whose lead over random survives without
    augmentation scores high; one whose lead exists only with augmentation scores lower.
    """
    _check_weight("gamma", gamma)
    beta = gamma * ior(synthetic_aug, random_aug) + (1.0 - gamma) * ior(synthetic_plain, random_plain)
    return exp_score(beta)
