"""Coreset baselines stored as synthetic sets: a random real subset (and herding, see issue)."""

from __future__ import annotations

from ddtool.methods.base import MatchingMethod


class RandomReal(MatchingMethod):
    name = "random"
    description = "a random subset of real images per class (lower bound baseline)"
    iterative = False

    def default_iterations(self, ipc: int) -> int:
        return 0
