"""A minimal progress interface so runtime functions stay free of any UI.

The CLI passes a rich-backed reporter; tests and notebooks pass nothing (silent).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Protocol


class Task(Protocol):
    def advance(self, n: int = 1, **fields: Any) -> None: ...


class Reporter(Protocol):
    def task(self, description: str, total: int) -> Any: ...

    def note(self, text: str) -> None:
        """A one-line message about a choice made for the user (e.g. which pool a run uses)."""


class _SilentTask:
    def advance(self, n: int = 1, **fields: Any) -> None:
        return None


class Silent:
    def note(self, text: str) -> None:
        return None

    @contextmanager
    def task(self, description: str, total: int) -> Iterator[Task]:
        yield _SilentTask()
