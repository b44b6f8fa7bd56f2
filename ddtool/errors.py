"""Errors a user can cause and fix. The CLI prints them as one line, never a traceback."""

from __future__ import annotations


class DDToolError(Exception):
    """A runtime problem (exit code 1): bad data, a corrupt artifact, a failed run."""

    exit_code = 1


class UsageError(DDToolError):
    """The user asked for something that cannot mean anything (exit code 2)."""

    exit_code = 2


def closest(name: str, choices: list[str] | tuple[str, ...]) -> str:
    """' (did you mean X?)' when a near miss exists, else ''."""
    import difflib

    match = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""
