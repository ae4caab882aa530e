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
from collections.abc import Iterator, Mapping
from typing import Any

from controller.model import jsonsafe

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


# --------------------------------------------------------------------------- reading
#
# The tar is read header by header from a gzip stream (not with `tarfile`, which reads a pax
# or GNU long-name header whole, whatever size it claims, and follows chains of them
# recursively): every header's declared size is checked before anything is read, so a
# small bundle cannot make the reader decompress or hold more than the limits below.

MAX_HEADER_BYTES = 64 * 1024  # a pax extended header or a GNU long name / long link
MAX_EXTENSIONS = 8  # extension headers before one member
_BLOCK = 512
_REGULAR = (b"0", b"\x00", b"7")
_DIRECTORY = b"5"
_PAX, _PAX_GLOBAL, _LONG_NAME, _LONG_LINK = b"x", b"g", b"L", b"K"
_TYPES = {
    b"1": "a hard link",
    b"2": "a symbolic link",
    b"3": "a character device",
    b"4": "a block device",
    b"6": "a FIFO",
    b"S": "a sparse file",
    b"X": "a Solaris extended header",
    b"V": "a volume label",
    b"M": "a multi-volume continuation",
    b"D": "a GNU dump directory",
    b"N": "an old GNU long name",
}


def _size_text(size: int) -> str:
    if size >= 2**30:
        return f"{size / 2**30:.1f} GiB"
    if size >= 2**20:
        return f"{size / 2**20:.1f} MiB"
    if size >= 2**10:
        return f"{size / 2**10:.1f}".removesuffix(".0") + " KiB"
    return f"{size} bytes"


class _Stream:
    """The decompressed tar, read in exact amounts; never more than asked for."""

    def __init__(self, data: bytes) -> None:
        self.file = gzip.GzipFile(fileobj=io.BytesIO(data), mode="rb")
        self.offset = 0

    def read(self, size: int, what: str) -> bytes:
        chunk = self.file.read(size)
        self.offset += len(chunk)
        if len(chunk) != size:
            raise BundleError(f"not a readable .tar.gz (truncated in {what})")
        return chunk

    def block(self) -> bytes:
        """The next 512-byte header block; b"" at the end of the data."""
        chunk = self.file.read(_BLOCK)
        self.offset += len(chunk)
        if chunk and len(chunk) != _BLOCK:
            raise BundleError("not a readable .tar.gz (truncated header)")
        return chunk

    def padded(self, size: int, what: str) -> bytes:
        data = self.read(size, what)
        self.read(-size % _BLOCK, what)
        return data


def _number(field: bytes, at: int) -> int:
    if field[:1] in (b"\x80", b"\xff"):  # GNU base-256
        value = int.from_bytes(field[1:], "big")
        if field[0] == 0xFF:
            value -= 256 ** (len(field) - 1)
        return value
    text = field.split(b"\x00", 1)[0].strip(b" ")
    try:
        return int(text or b"0", 8)
    except ValueError:
        raise BundleError(
            f"not a readable .tar.gz (a header at byte {at} has a malformed number)"
        ) from None


def _text(field: bytes, what: str) -> str:
    raw = field.split(b"\x00", 1)[0]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BundleError(
            f"{raw.decode('utf-8', 'backslashreplace')}: {what} is not UTF-8; refused"
        ) from None


def _pax_records(data: bytes, at: int) -> dict[str, str]:
    """`<length> <key>=<value>\n` records (POSIX.1-2001)."""
    records: dict[str, str] = {}
    position = 0
    while position < len(data):
        if data[position:].strip(b"\x00") == b"":
            break
        space = data.find(b" ", position, position + 20)
        length = data[position:space]
        if space < 0 or not length.isdigit() or int(length) < 5:
            raise BundleError(f"not a readable .tar.gz (a malformed pax header at byte {at})")
        end = position + int(length)
        record = data[space + 1 : end]
        if end > len(data) or not record.endswith(b"\n") or b"=" not in record:
            raise BundleError(f"not a readable .tar.gz (a malformed pax header at byte {at})")
        key, _, value = record[:-1].partition(b"=")
        key_text = _text(key, "a pax header key")
        records[key_text] = _text(value, f"the pax header {key_text}")
        position = end
    return records


def _members(data: bytes) -> Iterator[tuple[str, bytes | None]]:
    """(name, content) of each file in the tar (content None for a directory), refusing
    links, devices, sparse files and anything over the size limits as soon as its header
    says so."""
    stream = _Stream(data)
    global_pax: dict[str, str] = {}
    count = total = 0
    while True:
        pax: dict[str, str] = {}
        long_name: str | None = None
        for extensions in range(MAX_EXTENSIONS + 1):
            at = stream.offset
            header = stream.block()
            if not header or header == bytes(_BLOCK):
                return  # the end of the archive
            stored = _number(header[148:156], at)
            unsigned = sum(header[:148]) + 256 + sum(header[156:])  # the field as spaces
            high = (
                sum(1 for b in header[:148] + header[156:] if b > 127) if stored != unsigned else 0
            )
            if stored not in (unsigned, unsigned - 256 * high):  # old tars summed signed bytes
                raise BundleError(f"not a readable .tar.gz (a bad header checksum at byte {at})")
            kind = header[156:157]
            size = _number(header[124:136], at)
            if size < 0:
                raise BundleError(f"not a readable .tar.gz (a negative size at byte {at})")
            if kind not in (_PAX, _PAX_GLOBAL, _LONG_NAME, _LONG_LINK):
                break
            if extensions == MAX_EXTENSIONS:
                raise BundleError(
                    f"more than {MAX_EXTENSIONS} extension headers before one file at byte {at}; "
                    "refused"
                )
            what = {_PAX: "a pax header", _PAX_GLOBAL: "a global pax header"}.get(
                kind, "a GNU long name"
            )
            if size > MAX_HEADER_BYTES:
                raise BundleError(
                    f"{what} at byte {at} claims {_size_text(size)}, more than the "
                    f"{_size_text(MAX_HEADER_BYTES)} a header may have; refused"
                )
            total += size
            if total > MAX_TOTAL_BYTES:
                raise BundleError(f"more than {MAX_TOTAL_BYTES // 2**20} MiB unpacked")
            payload = stream.padded(size, what)
            if kind == _LONG_NAME:
                long_name = _text(payload, "a file name")
            elif kind == _PAX:
                pax.update(_pax_records(payload, at))
            elif kind == _PAX_GLOBAL:
                global_pax.update(_pax_records(payload, at))
        count += 1
        if count > MAX_MEMBERS:
            raise BundleError(f"more than {MAX_MEMBERS} files; refused")
        fields = {**global_pax, **pax}
        name = fields.get("path") or long_name
        if name is None:
            name = _text(header[0:100], "a file name")
            if header[257:263] == b"ustar\x00":
                prefix = _text(header[345:500], "a file name")
                name = f"{prefix}/{name}" if prefix else name
        if any(key.startswith("GNU.sparse.") for key in fields):
            kind = b"S"
        if "size" in fields:
            if not fields["size"].isdigit() or len(fields["size"]) > 20:
                raise BundleError(f"{name}: a malformed size in its pax header; refused")
            size = int(fields["size"])
        if kind == _DIRECTORY:
            name = name.rstrip("/") or name
            if size:
                raise BundleError(f"{name}: a directory with content; refused")
            _safe_name(name)
            yield name, None
            continue
        if kind not in _REGULAR:
            clean = _safe_name(name)
            what = _TYPES.get(kind, f"of type {kind!r}")
            raise BundleError(f"{clean}: not a regular file ({what}); refused")
        clean = _safe_name(name)
        if size > MAX_MEMBER_BYTES:
            raise BundleError(
                f"{clean}: {_size_text(size)}, larger than {MAX_MEMBER_BYTES // 2**20} MiB"
            )
        total += size
        if total > MAX_TOTAL_BYTES:
            raise BundleError(f"more than {MAX_TOTAL_BYTES // 2**20} MiB unpacked")
        yield clean, stream.padded(size, clean)


def unpack(data: bytes) -> tuple[dict[str, Any], dict[str, bytes]]:
    """`manifest.json` and the other files of a bundle, after verifying them."""
    files: dict[str, bytes] = {}
    try:
        for name, content in _members(data):
            if content is None:
                continue
            if name in files:
                raise BundleError(f"{name}: appears twice; refused")
            files[name] = content
    except (EOFError, zlib.error, OSError) as error:
        raise BundleError(f"not a readable .tar.gz ({error})") from None
    if MANIFEST not in files:
        raise BundleError(f"no {MANIFEST}: not a flowpin bundle")
    try:
        manifest = jsonsafe.loads(files.pop(MANIFEST).decode("utf-8"))
    except UnicodeDecodeError as error:
        raise BundleError(f"{MANIFEST}: not JSON (not UTF-8 at byte {error.start})") from None
    except jsonsafe.JSONInputError as error:
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
