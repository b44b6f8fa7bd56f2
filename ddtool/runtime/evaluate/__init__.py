"""Evaluate synthetic sets: train networks on a set and test them (hard or soft labels, curves)."""
