"""Synthetic sets and expert trajectories in and out of the store in other tools' formats."""
