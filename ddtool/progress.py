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


class _SilentTask:
    def advance(self, n: int = 1, **fields: Any) -> None:
        return None


class Silent:
    @contextmanager
    def task(self, description: str, total: int) -> Iterator[Task]:
        yield _SilentTask()
