"""A reference implementation run side by side (bench/ncfm_reference.py, bench/datm_reference.py):
extracted at a commit from its mirror and patched by a table whose every pattern must match an
expected number of times, so that a changed reference stops the run instead of running unpatched."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Callable, Union

Replacement = Union[str, Callable[["re.Match[str]"], str]]
# (files: glob(s) under the extraction, '|' between several; pattern; replacement: text, or a function of
# the match; how many times it must match in all; why)
Patch = tuple[str, str, Replacement, int, str]


def extract_patched(dest: Path, mirror: str, commit: str, trees: list[str], patches: list[Patch], owner: str,
                    files: dict[str, str] | None = None, key: dict | None = None) -> list[str]:
    """Extract ``trees`` of ``mirror`` at ``commit`` into ``dest``, apply ``patches`` and write ``files``
    (name -> text, e.g. a stand-in module); returns one log line per patch and file. Does nothing when
    ``dest`` holds the marker of the same commit, patches, files and ``key``. ``owner`` names the
    script whose table to update when a pattern no longer matches its count."""
    marker = dest / ".ddtool-patched.json"
    want = json.loads(json.dumps({"commit": commit, "patches": [[f, p, _label(r)] for f, p, r, _, _ in patches],
                                  **({"files": files} if files else {}), **(key or {})}))  # lists, as read back
    if marker.is_file() and json.loads(marker.read_text()).get("key") == want:
        return json.loads(marker.read_text())["log"]
    if dest.exists() and any(dest.iterdir()):
        raise SystemExit(f"{dest} exists and is not this patch list's extraction; remove it and rerun")
    dest.mkdir(parents=True, exist_ok=True)
    # git archive complains of the mirror's absent large files outside ``trees``: the count of extracted
    # files is checked against the tree's instead
    tar = subprocess.run(["git", "-C", mirror, "archive", commit, "--", *trees], check=True,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout
    subprocess.run(["tar", "x", "-C", str(dest)], input=tar, check=True)
    listed = subprocess.run(["git", "-C", mirror, "ls-tree", "-r", "--name-only", commit, "--", *trees],
                            check=True, stdout=subprocess.PIPE, text=True).stdout.splitlines()
    missing = [f for f in listed if not (dest / f).is_file()]
    if missing:
        raise SystemExit(f"the mirror lacks {len(missing)} of the reference's files, e.g. {missing[0]}")
    log = []
    for globs, pattern, repl, count, why in patches:
        total = 0
        for path in sorted({q for g in globs.split("|") for q in dest.glob(g)}):
            new, n = re.subn(pattern, repl if callable(repl) else (lambda _m, r=repl: r), path.read_text())
            if n:
                path.write_text(new)
                total += n
                log.append(f"{path.relative_to(dest)}: {n} x {pattern!r} -> {_label(repl)!r}  ({why})")
        if total != count:
            raise SystemExit(f"patch {pattern!r} matched {total} times in {globs}, expected {count}: "
                             f"the reference changed; update {owner}")
    for name, text in (files or {}).items():
        (dest / name).write_text(text)
    marker.write_text(json.dumps({"key": want, "log": log}, indent=1))
    return log


def _label(repl: Replacement) -> str:
    """What the log and the marker say a replacement is: its first line, or a function's docstring."""
    return repl.splitlines()[0] if isinstance(repl, str) else (repl.__doc__ or repl.__name__).strip()
