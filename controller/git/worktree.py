"""Reading a workflow repository's manifests from the file system (the working tree).

Symbolic links are never followed: git stores a link as a link, so the operator would never
see the content it points to, and following one (`workflows -> /`) would walk the whole file
system. Each link under workflows/ or environments/ is a finding instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from controller.git.history import MANIFEST_DIRS, SUFFIXES
from controller.model.findings import Finding
from controller.model.source_map import DEFAULT_MAX_BYTES


def find_root(path: Path) -> Path:
    """The directory holding workflows/ or environments/: `path` itself or an ancestor.
    Falls back to `path` (or its directory) when none is found."""
    start = path if path.is_dir() else path.parent
    for candidate in (start, *start.parents):
        if any((candidate / name).is_dir() for name in MANIFEST_DIRS):
            return candidate
    return start


@dataclass
class Tree:
    """The manifests of a working tree, and the links that were not followed."""

    files: dict[str, bytes] = field(default_factory=dict)
    """Relative path (posix) → content (at most one byte over the size limit)."""
    findings: list[Finding] = field(default_factory=list)


def scan(root: Path) -> Tree:
    tree = Tree()
    for directory in MANIFEST_DIRS:
        base = root / directory
        if base.is_symlink():
            tree.findings.append(_link_finding(root, base))
        elif base.is_dir():
            _scan_directory(root, base, tree)
    tree.files = dict(sorted(tree.files.items()))
    return tree


def _scan_directory(root: Path, base: Path, tree: Tree) -> None:
    for folder, directories, names in os.walk(base, followlinks=False):
        here = Path(folder)
        for name in sorted(directories):
            if (here / name).is_symlink():  # os.walk lists it but does not enter it
                tree.findings.append(_link_finding(root, here / name))
        for name in sorted(names):
            path = here / name
            if path.suffix not in SUFFIXES:
                continue
            if not _utf8(path.relative_to(root).as_posix()):
                tree.findings.append(_name_finding(root, path))
            elif path.is_symlink():
                tree.findings.append(_link_finding(root, path))
            elif path.is_file():
                tree.files[path.relative_to(root).as_posix()] = read_manifest(path)


def _utf8(text: str) -> bool:
    """Whether a name the file system gave is UTF-8 (Python keeps other bytes as lone
    surrogates, which no output format can carry)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _shown(root: Path, path: Path) -> str:
    """The relative name, printable whatever bytes it holds."""
    return os.fsencode(path.relative_to(root).as_posix()).decode("utf-8", "backslashreplace")


def _name_finding(root: Path, path: Path) -> Finding:
    return Finding(
        _shown(root, path),
        1,
        1,
        "file-name-encoding",
        "the file name is not UTF-8; flowpin cannot name it in a report or a Kubernetes "
        "object. Rename it (UTF-8 names only)",
    )


def _link_finding(root: Path, link: Path) -> Finding:
    try:
        target = os.fsencode(os.readlink(link)).decode("utf-8", "backslashreplace")
    except OSError:
        target = "?"
    return Finding(
        _shown(root, link),
        1,
        1,
        "symlink",
        f"is a symbolic link (to {target}); flowpin does not follow links: git stores the "
        "link, not what it points to, so the operator would not see it. Commit the file itself",
    )


def read_manifest(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """At most one byte over the limit, so that a huge file is reported, not loaded."""
    with path.open("rb") as handle:
        return handle.read(max_bytes + 1)


def read_manifests(root: Path) -> dict[str, bytes]:
    """Relative path (posix) → content of every manifest under root (links not followed)."""
    return scan(root).files
