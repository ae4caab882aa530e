"""flowpin bundles: a `.tar.gz` of manifests with a `manifest.json` of checksums.

Layout:

    manifest.json                         formatVersion, exportedAt, sourceCommit, files …
    workflows/<name>/<version>.yaml       each exported version, as committed
    environments/<name>.yaml              with --include-environments, as at HEAD

Packing is deterministic (sorted names, one fixed mtime, no owner names, gzip without a
timestamp), so the same export of the same commit gives the same bytes except for
`exportedAt`. Reading verifies everything before anything is used: every listed file present
with its sha256, nothing unlisted, no links or paths outside the bundle, bounded sizes. Works
on bytes in memory; the caller does the file I/O.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import posixpath
import tarfile
import zlib
from collections.abc import Mapping
from typing import Any

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MAX_MEMBERS = 20_000
MAX_MEMBER_BYTES = 16 * 1024 * 1024
MAX_TOTAL_BYTES = 256 * 1024 * 1024


class BundleError(ValueError):
    """A bundle that cannot be used; the message names the file at fault."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def version_path(workflow: str, version: str) -> str:
    return f"workflows/{workflow}/{version}.yaml"


def build_manifest(
    files: Mapping[str, bytes],
    *,
    exported_at: str,
    source_commit: str,
    generator: str,
    workflows: Mapping[str, Mapping[str, Any]],
    environments: list[str],
) -> dict[str, Any]:
    """The `manifest.json` of a bundle holding `files`."""
    return {
        "formatVersion": FORMAT_VERSION,
        "generator": generator,
        "exportedAt": exported_at,
        "sourceCommit": source_commit,
        "workflows": {name: dict(info) for name, info in sorted(workflows.items())},
        "environments": sorted(environments),
        "files": {path: sha256(files[path]) for path in sorted(files)},
    }


def pack(files: Mapping[str, bytes], manifest: Mapping[str, Any], mtime: int) -> bytes:
    """A deterministic .tar.gz of `manifest.json` and `files`."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as archive:
        entries = {MANIFEST: (json.dumps(manifest, indent=2) + "\n").encode(), **files}
        for name in [MANIFEST, *sorted(files)]:
            data = entries[name]
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = mtime
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            archive.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), compresslevel=9, mtime=0)


def _safe_name(name: str) -> str:
    clean = posixpath.normpath(name[2:] if name.startswith("./") else name)
    if (
        name.startswith("/")
        or "\\" in name
        or clean.startswith("..")
        or clean in (".", "")
        or "\x00" in name
    ):
        raise BundleError(f"{name}: a path outside the bundle; refused")
    return clean


def unpack(data: bytes) -> tuple[dict[str, Any], dict[str, bytes]]:
    """`manifest.json` and the other files of a bundle, after verifying them."""
    files: dict[str, bytes] = {}
    total = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            for count, member in enumerate(archive):
                if count >= MAX_MEMBERS:
                    raise BundleError(f"more than {MAX_MEMBERS} files; refused")
                if member.isdir():
                    continue
                name = _safe_name(member.name)
                if not member.isfile():
                    raise BundleError(f"{name}: not a regular file (a link or device); refused")
                if member.size > MAX_MEMBER_BYTES:
                    raise BundleError(f"{name}: larger than {MAX_MEMBER_BYTES // 2**20} MiB")
                total += member.size
                if total > MAX_TOTAL_BYTES:
                    raise BundleError(f"more than {MAX_TOTAL_BYTES // 2**20} MiB unpacked")
                if name in files:
                    raise BundleError(f"{name}: appears twice; refused")
                handle = archive.extractfile(member)
                if handle is None:
                    raise BundleError(f"{name}: cannot be read")
                files[name] = handle.read(MAX_MEMBER_BYTES + 1)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
        raise BundleError(f"not a readable .tar.gz ({error})") from None
    if MANIFEST not in files:
        raise BundleError(f"no {MANIFEST}: not a flowpin bundle")
    try:
        manifest = json.loads(files.pop(MANIFEST))
    except (ValueError, UnicodeDecodeError) as error:
        raise BundleError(f"{MANIFEST}: not JSON ({error})") from None
    problems = verify(manifest, files)
    if problems:
        raise BundleError("; ".join(problems))
    return manifest, files


def verify(manifest: Any, files: Mapping[str, bytes]) -> list[str]:
    """Every problem with a bundle's content against its manifest, each naming a file."""
    if not isinstance(manifest, dict):
        return [f"{MANIFEST}: not an object"]
    version = manifest.get("formatVersion")
    if not isinstance(version, int) or isinstance(version, bool):
        return [f"{MANIFEST}: formatVersion is missing"]
    if version > FORMAT_VERSION:
        return [
            f"{MANIFEST}: bundle format {version} is newer than this flowpin reads "
            f"({FORMAT_VERSION}); upgrade flowpin"
        ]
    listed = manifest.get("files")
    if not isinstance(listed, dict):
        return [f"{MANIFEST}: files is missing"]
    problems: list[str] = []
    for path in sorted(listed):
        if path not in files:
            problems.append(f"{path}: listed in {MANIFEST} but missing from the bundle")
        elif sha256(files[path]) != listed[path]:
            problems.append(f"{path}: content differs from its sha256 in {MANIFEST} (tampered)")
    for path in sorted(set(files) - set(listed)):
        problems.append(f"{path}: in the bundle but not listed in {MANIFEST} (tampered)")
    return problems
