"""Semantic versions (semver 2.0.0) and npm/Masterminds-style ranges.

Workflow versions are the unit of promotion and migration ranges (`from: ">=1.0.0 <1.4.0"`)
select the versions a migration applies to, so ordering must follow the spec exactly,
including pre-release precedence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

BumpKind = Literal["major", "minor", "patch", "none", "downgrade"]
Op = Literal["<", "<=", ">", ">=", "="]

_NUM = r"0|[1-9][0-9]*"
_IDENT = r"[0-9A-Za-z-]+"
_VERSION_RE = re.compile(
    rf"^(?P<major>{_NUM})\.(?P<minor>{_NUM})\.(?P<patch>{_NUM})"
    rf"(?:-(?P<pre>{_IDENT}(?:\.{_IDENT})*))?"
    rf"(?:\+(?P<build>{_IDENT}(?:\.{_IDENT})*))?$"
)
_EXAMPLE = "expected MAJOR.MINOR.PATCH with optional -prerelease and +build, such as 1.4.0"

# A partial version inside a range: "1", "1.2", "1.x", "1.2.3-rc.1", "*".
_XR = r"[xX*]|0|[1-9][0-9]*"
_PARTIAL_RE = re.compile(
    rf"^v?(?P<major>{_XR})(?:\.(?P<minor>{_XR})(?:\.(?P<patch>{_XR})"
    rf"(?:-(?P<pre>{_IDENT}(?:\.{_IDENT})*))?"
    rf"(?:\+(?P<build>{_IDENT}(?:\.{_IDENT})*))?)?)?$"
)
_OPS: dict[str, Op] = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "=": "="}
_COMPARATOR_RE = re.compile(r"^(?P<op>>=|<=|>|<|=|\^|~>|~)?\s*(?P<ver>\S+)$")


def _pre_key(pre: tuple[str | int, ...]) -> tuple[tuple[int, int, str], ...]:
    # Numeric identifiers sort before alphanumeric ones (semver 11.4.3).
    return tuple((0, p, "") if isinstance(p, int) else (1, 0, p) for p in pre)


@dataclass(frozen=True)
class Version:
    """A semantic version.

    Equality is structural (build metadata included) so distinct strings stay distinct in
    sets; ordering follows semver precedence, which ignores build metadata. So two versions
    that differ only in build compare `<=` both ways yet are not `==`.
    """

    major: int
    minor: int
    patch: int
    prerelease: tuple[str | int, ...] = ()
    build: tuple[str, ...] = ()
    _key: tuple[object, ...] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if min(self.major, self.minor, self.patch) < 0:
            raise ValueError("version numbers must not be negative")
        key = (
            self.major,
            self.minor,
            self.patch,
            0 if self.prerelease else 1,  # a pre-release precedes its release
            _pre_key(self.prerelease),
        )
        object.__setattr__(self, "_key", key)

    @property
    def precedence_key(self) -> tuple[object, ...]:
        return self._key

    @property
    def core(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)

    @property
    def is_prerelease(self) -> bool:
        return bool(self.prerelease)

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += "-" + ".".join(str(p) for p in self.prerelease)
        if self.build:
            text += "+" + ".".join(self.build)
        return text

    def _cmp_key(self, other: object) -> tuple[object, ...]:
        if not isinstance(other, Version):
            raise TypeError(f"cannot compare Version with {type(other).__name__}")
        return other._key

    def __lt__(self, other: object) -> bool:
        return self._key < self._cmp_key(other)

    def __le__(self, other: object) -> bool:
        return self._key <= self._cmp_key(other)

    def __gt__(self, other: object) -> bool:
        return self._key > self._cmp_key(other)

    def __ge__(self, other: object) -> bool:
        return self._key >= self._cmp_key(other)

    def same_precedence(self, other: Version) -> bool:
        return self._key == other._key


def _split_pre(text: str | None) -> tuple[str | int, ...]:
    if not text:
        return ()
    parts: list[str | int] = []
    for ident in text.split("."):
        if ident.isdigit():
            if len(ident) > 1 and ident[0] == "0":
                raise ValueError(f"pre-release identifier {ident!r} has a leading zero")
            parts.append(int(ident))
        else:
            parts.append(ident)
    return tuple(parts)


def parse_version(text: str) -> Version:
    """Parse a strict semver 2.0.0 string; the error says what was expected."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a semantic version: {_EXAMPLE}")
    stripped = text.strip()
    match = _VERSION_RE.match(stripped)
    if match is None:
        hint = _EXAMPLE
        if stripped[:1] in ("v", "V") and _VERSION_RE.match(stripped[1:]):
            hint = f"drop the leading {stripped[0]!r}: write {stripped[1:]}"
        elif stripped.count(".") < 2 and re.fullmatch(r"[0-9.]+", stripped or "x"):
            hint = f"all three parts are required, such as {_pad(stripped)}"
        elif re.search(r"(^|\.)0[0-9]", stripped.split("-")[0].split("+")[0]):
            hint = "numbers must not have leading zeros"
        raise ValueError(f"{text!r} is not a semantic version: {hint}")
    try:
        pre = _split_pre(match["pre"])
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a semantic version: {exc}") from None
    return Version(
        int(match["major"]),
        int(match["minor"]),
        int(match["patch"]),
        pre,
        tuple(match["build"].split(".")) if match["build"] else (),
    )


def _pad(text: str) -> str:
    parts = [p or "0" for p in text.split(".")] if text else ["1"]
    return ".".join([*parts, "0", "0"][:3])


# --------------------------------------------------------------------------- ranges


@dataclass(frozen=True)
class Comparator:
    """One primitive bound. `explicit_pre` marks a pre-release the user wrote, which is what
    lets pre-release versions of that same MAJOR.MINOR.PATCH match (npm's rule)."""

    op: Op
    version: Version
    explicit_pre: bool = False

    def test(self, v: Version) -> bool:
        if self.op == "=":
            return v.same_precedence(self.version)
        if self.op == "<":
            return v < self.version
        if self.op == "<=":
            return v <= self.version
        if self.op == ">":
            return v > self.version
        return v >= self.version

    def __str__(self) -> str:
        return f"{'' if self.op == '=' else self.op}{self.version}"


@dataclass(frozen=True)
class VersionRange:
    """A union ("||") of intersections of comparators.

    Pre-release versions match only when a comparator in the same intersection names a
    pre-release of the same MAJOR.MINOR.PATCH (as npm and Flux do), unless
    `include_prerelease` is passed; otherwise `>=1.0.0` would silently take 2.0.0-alpha.
    """

    text: str
    alternatives: tuple[tuple[Comparator, ...], ...]

    def contains(self, version: Version, *, include_prerelease: bool = False) -> bool:
        return any(_set_contains(cs, version, include_prerelease) for cs in self.alternatives)

    def __contains__(self, version: object) -> bool:
        return isinstance(version, Version) and self.contains(version)

    def __str__(self) -> str:
        return " || ".join(" ".join(str(c) for c in cs) if cs else "*" for cs in self.alternatives)


def _set_contains(cs: tuple[Comparator, ...], v: Version, include_pre: bool) -> bool:
    if not all(c.test(v) for c in cs):
        return False
    if not v.prerelease or include_pre:
        return True
    return any(c.explicit_pre and c.version.core == v.core for c in cs)


def parse_range(text: str) -> VersionRange:
    """Parse `>=1.0.0 <1.4.0`, `1.2.x`, `^1.2.0`, `~1.2.0`, `=1.0.0`, `1.0.0`, `1.0 - 2.0`,
    comma-separated intersections and `||` alternatives."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(
            f"{text!r} is not a version range: expected comparators such as "
            "'>=1.0.0 <2.0.0', '^1.2.0', '~1.2.0', '1.2.x' or '1.0.0', joined by '||'"
        )
    alternatives: list[tuple[Comparator, ...]] = []
    for alt in text.split("||"):
        try:
            alternatives.append(_parse_set(alt))
        except ValueError as exc:
            raise ValueError(f"{text!r} is not a version range: {exc}") from None
    return VersionRange(text, tuple(alternatives))


def _parse_set(text: str) -> tuple[Comparator, ...]:
    text = text.strip()
    if not text:
        raise ValueError("empty alternative around '||'")
    hyphen = re.fullmatch(r"(\S+)\s+-\s+(\S+)", text)
    if hyphen:
        low = _desugar(">=", hyphen[1])
        high = _desugar("<=", hyphen[2])
        return tuple(low + high)
    # Join an operator separated from its version by spaces ("> = 1.0" is not allowed,
    # but ">= 1.0.0" is common), and accept commas as AND like Masterminds/semver.
    text = re.sub(r"(>=|<=|~>|>|<|=|\^|~)\s+", r"\1", text.replace(",", " "))
    out: list[Comparator] = []
    for token in text.split():
        match = _COMPARATOR_RE.match(token)
        if match is None:
            raise ValueError(f"cannot read comparator {token!r}")
        out.extend(_desugar(match["op"] or "=", match["ver"]))
    return tuple(out)


def _num(text: str | None) -> int | None:
    return None if text is None or text in ("x", "X", "*") else int(text)


def _desugar(op: str, text: str) -> list[Comparator]:
    match = _PARTIAL_RE.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a version or partial version (such as 1.2.3 or 1.2.x)")
    major, minor, patch = _num(match["major"]), _num(match["minor"]), _num(match["patch"])
    if major is None:
        minor = patch = None
    elif minor is None:
        patch = None
    pre = _split_pre(match["pre"])
    explicit = bool(pre)
    if pre and patch is None:
        raise ValueError(f"{text!r}: a pre-release needs a full MAJOR.MINOR.PATCH")
    if major is None:  # "*", "x": anything (for "<*" or ">*": nothing)
        if op in ("<", ">"):
            return [Comparator("<", Version(0, 0, 0, (0,)))]
        return []

    def v(ma: int, mi: int = 0, pa: int = 0, p: tuple[str | int, ...] = ()) -> Version:
        return Version(ma, mi, pa, p)

    lowest = (0,)  # X.Y.Z-0 is the smallest version with that core
    if op == "^":
        lo = v(major, minor or 0, patch or 0, pre)
        if major > 0 or minor is None:
            hi = v(major + 1, 0, 0, lowest)
        elif minor > 0 or patch is None:
            hi = v(0, minor + 1, 0, lowest)
        else:
            hi = v(0, 0, patch + 1, lowest)
        return [Comparator(">=", lo, explicit), Comparator("<", hi)]
    if op in ("~", "~>"):
        lo = v(major, minor or 0, patch or 0, pre)
        hi = v(major + 1, 0, 0, lowest) if minor is None else v(major, minor + 1, 0, lowest)
        return [Comparator(">=", lo, explicit), Comparator("<", hi)]
    if patch is not None:  # a full version: the operator applies as written
        return [Comparator(_OPS[op], v(major, minor or 0, patch, pre), explicit)]
    # Partial version: [lo, hi) is the set of versions it stands for.
    lo = v(major, minor or 0, 0)
    hi = v(major + 1, 0, 0, lowest) if minor is None else v(major, minor + 1, 0, lowest)
    if op == "=":
        return [Comparator(">=", lo), Comparator("<", hi)]
    if op == ">=":
        return [Comparator(">=", lo)]
    if op == ">":
        return [Comparator(">=", Version(*hi.core))]
    if op == "<":
        return [Comparator("<", Version(*lo.core, lowest))]
    return [Comparator("<", hi)]  # "<="


def bump_kind(old: Version, new: Version) -> BumpKind:
    """Classify a version change for CI's bump rules.

    A pre-release-only increase (1.4.0-rc.1 -> 1.4.0-rc.2 or -> 1.4.0) counts as "patch",
    the smallest real bump; a build-metadata-only change is "none".
    """
    if new.same_precedence(old):
        return "none"
    if new < old:
        return "downgrade"
    if new.major != old.major:
        return "major"
    if new.minor != old.minor:
        return "minor"
    return "patch"
