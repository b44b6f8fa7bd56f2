"""Ref syntax: ``KIND/NAME`` (latest), ``KIND/NAME:vN`` (one version), or a digest prefix."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ddtool.errors import UsageError

KINDS = ("pool", "synthetic", "trajectories")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_HEX = re.compile(r"^[0-9a-f]{6,64}$")


def check_name(name: str) -> str:
    """Names become parts of paths and refs: keep them to a safe alphabet."""
    if not _NAME.fullmatch(name) or ".." in name:
        raise UsageError(
            f"invalid artifact name '{name}': use letters, digits, '.', '_' or '-' "
            "(at most 100, starting with a letter or digit)"
        )
    return name


@dataclass(frozen=True)
class Ref:
    kind: str | None = None
    name: str | None = None
    version: int | None = None
    digest_prefix: str | None = None

    def __str__(self) -> str:
        if self.digest_prefix:
            return self.digest_prefix
        return f"{self.kind}/{self.name}" + (f":v{self.version}" if self.version else "")


def parse_ref(text: str) -> Ref:
    text = text.strip()
    if "/" in text:
        kind, _, rest = text.partition("/")
        name, _, version = rest.partition(":")
        if kind not in KINDS:
            raise UsageError(f"unknown artifact kind '{kind}' in ref '{text}'; kinds: {', '.join(KINDS)}")
        check_name(name)
        if version:
            if not re.fullmatch(r"v[1-9][0-9]*", version):
                raise UsageError(f"bad version '{version}' in ref '{text}': write it as v1, v2, ...")
            return Ref(kind, name, int(version[1:]))
        return Ref(kind, name)
    if _HEX.fullmatch(text.lower()):
        return Ref(digest_prefix=text.lower())
    raise UsageError(
        f"cannot read ref '{text}': write KIND/NAME, KIND/NAME:vN or a digest prefix "
        "of at least 6 hex digits (see 'ddtool store ls')"
    )
