"""Synthetic sets in and out of the store in other tools' formats."""
