"""Bundles: deterministic packing, and refusal of anything tampered with."""

from __future__ import annotations

import gzip
import io
import json
import tarfile

import pytest

from controller.interop.bundle import BundleError, build_manifest, pack, sha256, unpack, verify

FILES = {
    "workflows/a/1.0.0.yaml": b"kind: Workflow\n",
    "environments/dev.yaml": b"kind: Environment\n",
}


def bundle(files: dict[str, bytes] = FILES) -> bytes:
    manifest = build_manifest(
        files,
        exported_at="2025-01-01T00:00:00+00:00",
        source_commit="abc",
        generator="flowpin test",
        workflows={"a": {"versions": ["1.0.0"]}},
        environments=["dev"],
    )
    return pack(files, manifest, mtime=1_700_000_000)


def retar(members: dict[str, bytes], symlink: str | None = None) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        if symlink:
            info = tarfile.TarInfo(symlink)
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            archive.addfile(info)
    return gzip.compress(raw.getvalue())


def members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        return {m.name: archive.extractfile(m).read() for m in archive if m.isfile()}  # type: ignore[union-attr]


def test_pack_is_deterministic_and_sorted() -> None:
    assert bundle() == bundle()
    with tarfile.open(fileobj=io.BytesIO(bundle()), mode="r:gz") as archive:
        infos = archive.getmembers()
    assert [i.name for i in infos] == [
        "manifest.json",
        "environments/dev.yaml",
        "workflows/a/1.0.0.yaml",
    ]
    assert {(i.mtime, i.uid, i.uname, i.mode) for i in infos} == {(1_700_000_000, 0, "", 0o644)}


def test_manifest_lists_checksums() -> None:
    manifest, files = unpack(bundle())
    assert files == FILES
    assert manifest["formatVersion"] == 1
    assert manifest["sourceCommit"] == "abc"
    assert manifest["files"] == {p: sha256(c) for p, c in FILES.items()}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda m: m | {"workflows/a/1.0.0.yaml": b"kind: Workflow # evil\n"},
            "workflows/a/1.0.0.yaml: content differs",
        ),
        (
            lambda m: m | {"workflows/b/1.0.0.yaml": b"x"},
            "workflows/b/1.0.0.yaml: in the bundle but not listed",
        ),
        (
            lambda m: {k: v for k, v in m.items() if k != "environments/dev.yaml"},
            "environments/dev.yaml: listed in manifest.json but missing",
        ),
        (lambda m: {k: v for k, v in m.items() if k != "manifest.json"}, "no manifest.json"),
        (lambda m: m | {"manifest.json": b"{"}, "manifest.json: not JSON"),
        (lambda m: m | {"../escape.yaml": b"x"}, "../escape.yaml: a path outside the bundle"),
        (
            lambda m: (
                m
                | {
                    "manifest.json": json.dumps(
                        json.loads(m["manifest.json"]) | {"formatVersion": 2}
                    ).encode()
                }
            ),
            "bundle format 2 is newer",
        ),
    ],
)
def test_tampered_bundles_are_refused_naming_the_file(change: object, message: str) -> None:
    tampered = retar(change(members(bundle())))  # type: ignore[operator]
    with pytest.raises(BundleError, match=message.replace(".", r"\.")):
        unpack(tampered)


def test_links_and_garbage_are_refused() -> None:
    with pytest.raises(BundleError, match="not a regular file"):
        unpack(retar(members(bundle()), symlink="workflows/link.yaml"))
    with pytest.raises(BundleError, match=r"not a readable \.tar\.gz"):
        unpack(gzip.compress(b"not a tar") + b"junk")
    assert verify([], {}) == ["manifest.json: not an object"]
