"""Typed registries filled by the plugin hooks (name, aliases, source plugin), and the check that
what a plugin registers keeps its kind's contract."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any, Generic, Iterator, Sequence, TypeVar

from ddtool.errors import UsageError, closest

T = TypeVar("T")


@dataclass(frozen=True)
class Contract:
    """What a registered object must be: it has every member in ``required`` (a subclass of
    ``base`` inherits all but those ``base`` leaves unset), and it is seen through ``base``, so
    the runtime finds every other member (:func:`adapt` for objects that do not subclass it)."""

    base: type
    required: tuple[str, ...]

    def check(self, obj: Any, what: str, source: str) -> Any:
        """``obj`` ready for the runtime, or a one-line UsageError naming what it lacks."""
        missing = [m for m in self.required if not hasattr(obj, m)]
        if missing:
            names = ", ".join(f"'{m}'" for m in missing)
            fix = "define " + ("them" if len(missing) > 1 else "it")
            if not isinstance(obj, self.base):
                fix += f" (or subclass ddtool.api.{self.base.__name__})"
            raise UsageError(f"{what} from plugin '{source}' does not provide {names}; {fix}")
        return adapt(obj, self.base)


class _Adapted:
    """A plugin object seen through a contract it does not subclass: the object's own members
    first, the base class's defaults for the rest (those defaults run with ``self`` = the adapter,
    so what they read of ``self`` is the object's). Attributes are set on the object."""

    def __init__(self, wrapped: Any) -> None:
        object.__setattr__(self, "_wrapped", wrapped)

    def __getattribute__(self, name: str) -> Any:
        if not name.startswith("__") and name != "_wrapped":
            try:
                return getattr(object.__getattribute__(self, "_wrapped"), name)
            except AttributeError:
                pass
        return object.__getattribute__(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(object.__getattribute__(self, "_wrapped"), name, value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({object.__getattribute__(self, '_wrapped')!r})"


_adapters: dict[type, type] = {}


def adapt(obj: Any, base: type[T]) -> T:
    """``obj`` as an instance of ``base`` (see :class:`_Adapted`); ``obj`` itself when it is one."""
    if isinstance(obj, base):
        return obj
    cls = _adapters.get(base)
    if cls is None:
        cls = _adapters[base] = type(f"Adapted{base.__name__}", (_Adapted, base), {})
    return cls(obj)  # type: ignore[no-any-return]


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
    contract: Contract | None = None  # None: anything with a name (tests, tools)
    _entries: dict[str, Entry[T]] = field(default_factory=dict)
    _aliases: dict[str, str] = field(default_factory=dict)

    def add(self, obj: T, *, aliases: Sequence[str] = (), source: str = "?",
            distribution: str = "local") -> None:
        name = getattr(obj, "name", None)
        if not isinstance(name, str) or not name:
            raise TypeError(f"a registered {self.kind} needs a non-empty string attribute 'name'")
        if self.contract is not None:
            obj = self.contract.check(obj, f"{self.kind} '{name}'", source)
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
