"""Typed registries filled by the plugin hooks (name, aliases, source plugin)."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Generic, Iterator, TypeVar

from ddtool.errors import UsageError, closest

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    aliases: tuple[str, ...]
    source: str  # plugin name
    distribution: str  # "ddtool 0.1.0", "ddtool-pixelmmd 0.1.0", or "local"


@dataclass
class Registry(Generic[T]):
    """Name -> object, with aliases; errors list the known names."""

    kind: str
    _entries: dict[str, Entry[T]] = field(default_factory=dict)
    _aliases: dict[str, str] = field(default_factory=dict)

    def add(self, obj: T, *, aliases: tuple[str, ...] | list[str] = (), source: str = "?",
            distribution: str = "local") -> None:
        name = getattr(obj, "name", None)
        if not isinstance(name, str) or not name:
            raise TypeError(f"a registered {self.kind} needs a non-empty string attribute 'name'")
        aliases = tuple(dict.fromkeys(a for a in aliases if a != name))
        # a name or alias must not be taken, as a name or as an alias, by an earlier registration;
        # everything is checked before anything is added
        for word, what in [(name, f"{self.kind} '{name}'"),
                           *((a, f"alias '{a}' of {self.kind} '{name}'") for a in aliases)]:
            if word in self._entries or word in self._aliases:
                owner = self._entries.get(word) or self._entries[self._aliases[word]]
                taken = (f"the {self.kind} '{owner.name}'" if owner.name == word
                         else f"the alias '{word}' of {self.kind} '{owner.name}'")
                raise UsageError(
                    f"{what} from plugin '{source}' clashes with {taken} from plugin "
                    f"'{owner.source}'; disable one with DDTOOL_DISABLE_PLUGINS"
                )
        self._entries[name] = Entry(name, obj, aliases, source, distribution)
        for alias in aliases:
            self._aliases[alias] = name

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def entry(self, name: str) -> Entry[T]:
        key = self._aliases.get(name, name)
        if key not in self._entries:
            known = ", ".join(sorted(self._entries)) or "none"
            raise UsageError(
                f"unknown {self.kind} '{name}'{closest(name, self.names())}; known: {known}"
            )
        return self._entries[key]

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._aliases

    def names(self) -> list[str]:
        return sorted([*self._entries, *self._aliases])

    def list(self, pattern: str = "*") -> list[Entry[T]]:
        return [e for n, e in sorted(self._entries.items()) if fnmatch.fnmatch(n, pattern)]

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(self.list())
