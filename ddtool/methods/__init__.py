"""Matching methods. Each registers through ``ddtool_register_matching_methods``."""
