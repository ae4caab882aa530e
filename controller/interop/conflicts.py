"""What to do when an imported workflow or environment has a name the repository already
uses. Pure: the importer passes the names and paths at HEAD and gets a decision per item.

Modes (`flowpin import --mode`):

- `new` (default): a name in use is an error for that file; nothing of it is written.
- `rename`: the import takes the first free name `<name>-2`, `<name>-3`, … (and pins in
  environments imported alongside follow the rename).
- `overwrite`: the import replaces the file that holds the name.
- `skip`: the item is left out; the repository's version stays.

Items earlier in the same import count as taken, so two files with one name never both
land under it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Mode = Literal["new", "rename", "overwrite", "skip"]
MODES: tuple[Mode, ...] = ("new", "rename", "overwrite", "skip")
Action = Literal["create", "rename", "overwrite", "skip", "fail"]
NAME_LIMIT = 63


@dataclass(frozen=True)
class Decision:
    action: Action
    name: str  # the name the item is written under
    path: str  # where it is written (relative to the repository root)
    reason: str = ""


@dataclass
class Taken:
    """Names → paths in use for one kind, and every path in use."""

    names: dict[str, str] = field(default_factory=dict)
    paths: set[str] = field(default_factory=set)


def free_name(name: str, taken: Mapping[str, str] | set[str]) -> str:
    """`name-2`, `name-3`, … : the first that is free, within the 63-character limit."""
    number = 2
    while True:
        suffix = f"-{number}"
        candidate = name[: NAME_LIMIT - len(suffix)].rstrip("-") + suffix
        if candidate not in taken:
            return candidate
        number += 1


def _free_path(directory: str, name: str, paths: set[str]) -> str:
    path = f"{directory}/{name}.yaml"
    number = 2
    while path in paths:
        path = f"{directory}/{name}-{number}.yaml"
        number += 1
    return path


def decide(kind: str, name: str, mode: Mode, taken: Taken) -> Decision:
    """The decision for one item, and `taken` updated with what it claims."""
    directory = "workflows" if kind == "Workflow" else "environments"
    what = kind.lower()
    if name not in taken.names:
        path = _free_path(directory, name, taken.paths)
        decision = Decision("create", name, path)
    elif mode == "new":
        return Decision(
            "fail",
            name,
            taken.names[name],
            f"{what} {name!r} already exists ({taken.names[name]}); "
            "use --mode rename, overwrite or skip",
        )
    elif mode == "skip":
        return Decision("skip", name, taken.names[name], f"{what} {name!r} already exists")
    elif mode == "overwrite":
        return Decision(
            "overwrite", name, taken.names[name], f"replaces {what} {name!r} in {taken.names[name]}"
        )
    else:
        new_name = free_name(name, taken.names)
        path = _free_path(directory, new_name, taken.paths)
        decision = Decision(
            "rename", new_name, path, f"{what} {name!r} already exists; imported as {new_name!r}"
        )
    taken.names[decision.name] = decision.path
    taken.paths.add(decision.path)
    return decision
