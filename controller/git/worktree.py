"""Reading a workflow repository's manifests from the file system (the working tree)."""

from __future__ import annotations

from pathlib import Path

from controller.git.history import MANIFEST_DIRS, SUFFIXES
from controller.model.source_map import DEFAULT_MAX_BYTES


def find_root(path: Path) -> Path:
    """The directory holding workflows/ or environments/: `path` itself or an ancestor.
    Falls back to `path` (or its directory) when none is found."""
    start = path if path.is_dir() else path.parent
    for candidate in (start, *start.parents):
        if any((candidate / name).is_dir() for name in MANIFEST_DIRS):
            return candidate
    return start


def manifest_paths(root: Path) -> list[Path]:
    found: list[Path] = []
    for directory in MANIFEST_DIRS:
        base = root / directory
        if base.is_dir():
            found += [p for p in base.rglob("*") if p.suffix in SUFFIXES and p.is_file()]
    return sorted(found)


def read_manifest(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """At most one byte over the limit, so that a huge file is reported, not loaded."""
    with path.open("rb") as handle:
        return handle.read(max_bytes + 1)


def read_manifests(root: Path) -> dict[str, bytes]:
    """Relative path (posix) → content of every manifest under root."""
    return {p.relative_to(root).as_posix(): read_manifest(p) for p in manifest_paths(root)}
