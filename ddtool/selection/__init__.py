"""Model-selection strategies: where each outer loop's network comes from."""
