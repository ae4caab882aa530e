from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.model.semver import (
    Version,
    bump_kind,
    parse_range,
    parse_version,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.0.0", Version(0, 0, 0)),
        ("1.4.0", Version(1, 4, 0)),
        ("10.20.30", Version(10, 20, 30)),
        ("1.0.0-alpha", Version(1, 0, 0, ("alpha",))),
        ("1.0.0-alpha.1", Version(1, 0, 0, ("alpha", 1))),
        ("1.0.0-0.3.7", Version(1, 0, 0, (0, 3, 7))),
        ("1.0.0-x-y-z.--", Version(1, 0, 0, ("x-y-z", "--"))),
        ("1.0.0+20130313144700", Version(1, 0, 0, (), ("20130313144700",))),
        ("1.0.0-beta+exp.sha.5114f85", Version(1, 0, 0, ("beta",), ("exp", "sha", "5114f85"))),
        ("1.0.0+0001", Version(1, 0, 0, (), ("0001",))),  # build may have leading zeros
        (" 1.2.3 ", Version(1, 2, 3)),
    ],
)
def test_parse_version_valid(text: str, expected: Version) -> None:
    assert parse_version(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("1.2", "all three parts are required, such as 1.2.0"),
        ("1", "such as 1.0.0"),
        ("v1.2.3", "drop the leading 'v'"),
        ("01.2.3", "leading zeros"),
        ("1.02.3", "leading zeros"),
        ("1.2.3-01", "leading zero"),
        ("1.2.3-", "MAJOR.MINOR.PATCH"),
        ("1.2.3+", "MAJOR.MINOR.PATCH"),
        ("1.2.3-a..b", "MAJOR.MINOR.PATCH"),
        ("", "MAJOR.MINOR.PATCH"),
        ("latest", "MAJOR.MINOR.PATCH"),
        ("1.2.3.4", "MAJOR.MINOR.PATCH"),
        ("-1.2.3", "MAJOR.MINOR.PATCH"),
    ],
)
def test_parse_version_invalid(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match="is not a semantic version") as info:
        parse_version(text)
    assert fragment in str(info.value)


def test_parse_version_rejects_non_string() -> None:
    with pytest.raises(ValueError):
        parse_version(1.2)  # type: ignore[arg-type]  # what YAML makes of `version: 1.2`


def test_str_round_trips() -> None:
    for text in ["1.2.3", "1.0.0-rc.1", "1.0.0-alpha.beta+build.1", "0.0.1+x"]:
        assert str(parse_version(text)) == text


# semver.org section 11's example chain, in increasing precedence.
SPEC_ORDER = [
    "1.0.0-alpha",
    "1.0.0-alpha.1",
    "1.0.0-alpha.beta",
    "1.0.0-beta",
    "1.0.0-beta.2",
    "1.0.0-beta.11",
    "1.0.0-rc.1",
    "1.0.0",
    "1.0.1",
    "1.1.0",
    "2.0.0",
    "2.1.0",
    "2.1.1",
]


@pytest.mark.parametrize(("lower", "higher"), list(itertools.pairwise(SPEC_ORDER)))
def test_precedence_chain(lower: str, higher: str) -> None:
    a, b = parse_version(lower), parse_version(higher)
    assert a < b
    assert b > a
    assert a <= b and not b <= a
    assert not a >= b


def test_sorting_the_spec_chain() -> None:
    shuffled = list(reversed(SPEC_ORDER))
    assert [str(v) for v in sorted(parse_version(t) for t in shuffled)] == SPEC_ORDER


def test_build_metadata_ignored_in_ordering_but_not_equality() -> None:
    a, b = parse_version("1.0.0+a"), parse_version("1.0.0+b")
    assert a <= b and b <= a
    assert not a < b and not b < a
    assert a != b
    assert a.same_precedence(b)
    assert len({a, b}) == 2


def test_compare_with_other_type_raises() -> None:
    with pytest.raises(TypeError):
        _ = parse_version("1.0.0") < "1.0.1"


versions = st.builds(
    Version,
    st.integers(0, 20),
    st.integers(0, 20),
    st.integers(0, 20),
    st.lists(
        st.one_of(st.integers(0, 5), st.sampled_from(["alpha", "beta", "rc", "a-b"])), max_size=3
    ).map(tuple),
    st.lists(st.sampled_from(["b1", "001", "sha"]), max_size=2).map(tuple),
)


@given(versions, versions, versions)
def test_ordering_is_a_total_preorder(a: Version, b: Version, c: Version) -> None:
    assert a <= b or b <= a  # total
    if a <= b and b <= c:
        assert a <= c  # transitive
    assert (a < b) == (not b <= a)  # < is the strict part of <=


@given(versions, versions)
def test_release_order_matches_tuple_compare(a: Version, b: Version) -> None:
    release_a, release_b = Version(*a.core), Version(*b.core)
    assert (release_a < release_b) == (a.core < b.core)
    assert (release_a <= release_b) == (a.core <= b.core)
    # A different core decides regardless of pre-release; a pre-release precedes its release.
    if a.core != b.core:
        assert (a < b) == (a.core < b.core)
    elif a.prerelease and not b.prerelease:
        assert a < b


@given(versions)
def test_parse_str_round_trip(v: Version) -> None:
    assert parse_version(str(v)) == v


@pytest.mark.parametrize(
    ("range_text", "inside", "outside"),
    [
        (">=1.0.0 <1.4.0", ["1.0.0", "1.2.3", "1.3.99"], ["0.9.9", "1.4.0", "2.0.0", "1.4.0-rc.1"]),
        (">= 1.0.0, < 1.4.0", ["1.0.0", "1.3.0"], ["1.4.0"]),
        ("1.2.x", ["1.2.0", "1.2.9"], ["1.3.0", "1.1.9", "1.3.0-0"]),
        ("1.2", ["1.2.0", "1.2.9"], ["1.3.0"]),
        ("1.x", ["1.0.0", "1.99.0"], ["2.0.0", "0.9.0"]),
        ("*", ["0.0.0", "99.0.0"], ["1.0.0-rc.1"]),
        ("^1.2.0", ["1.2.0", "1.9.9"], ["1.1.9", "2.0.0", "2.0.0-alpha"]),
        ("^0.2.3", ["0.2.3", "0.2.9"], ["0.3.0", "0.2.2"]),
        ("^0.0.3", ["0.0.3"], ["0.0.4", "0.0.2"]),
        ("^0.x", ["0.0.0", "0.9.0"], ["1.0.0"]),
        ("~1.2.0", ["1.2.0", "1.2.7"], ["1.3.0", "1.1.0"]),
        ("~1", ["1.0.0", "1.9.0"], ["2.0.0"]),
        ("~>1.2.3", ["1.2.3", "1.2.4"], ["1.3.0"]),
        ("=1.0.0", ["1.0.0", "1.0.0+build"], ["1.0.1", "1.0.0-rc.1"]),
        ("1.0.0", ["1.0.0"], ["1.0.1", "0.9.0"]),
        (">1.2", ["1.3.0"], ["1.2.9", "1.2.0"]),
        ("<1.2", ["1.1.9"], ["1.2.0"]),
        ("<=1.2", ["1.2.9"], ["1.3.0"]),
        ("1.0.0 - 1.2.0", ["1.0.0", "1.2.0"], ["1.2.1"]),
        ("1.0 - 1.2", ["1.0.0", "1.2.9"], ["1.3.0"]),
        ("1.x || >=3.0.0", ["1.5.0", "3.1.0"], ["2.0.0"]),
        (
            ">=1.4.0-rc.1 <2.0.0",
            ["1.4.0-rc.1", "1.4.0-rc.2", "1.5.0"],
            ["1.4.0-beta", "1.5.0-rc.1"],
        ),
    ],
)
def test_range_contains(range_text: str, inside: list[str], outside: list[str]) -> None:
    r = parse_range(range_text)
    for text in inside:
        assert r.contains(parse_version(text)), f"{text} should be in {range_text}"
        assert parse_version(text) in r
    for text in outside:
        assert not r.contains(parse_version(text)), f"{text} should not be in {range_text}"


def test_include_prerelease_uses_plain_precedence() -> None:
    r = parse_range(">=1.0.0 <1.4.0")
    assert not r.contains(parse_version("1.4.0-rc.1"))
    assert r.contains(parse_version("1.4.0-rc.1"), include_prerelease=True)
    assert not r.contains(parse_version("1.4.0"), include_prerelease=True)


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        (">=1.0.0 <1.4.0", ">=1.0.0 <1.4.0"),
        ("1.2.x", ">=1.2.0 <1.3.0-0"),
        ("^1.2.0", ">=1.2.0 <2.0.0-0"),
        ("~1.2.0", ">=1.2.0 <1.3.0-0"),
        ("=1.0.0", "1.0.0"),
        ("*", "*"),
        ("1.x || 3.x", ">=1.0.0 <2.0.0-0 || >=3.0.0 <4.0.0-0"),
    ],
)
def test_range_str(text: str, normalized: str) -> None:
    assert str(parse_range(text)) == normalized


@pytest.mark.parametrize(
    "text",
    ["", "   ", "1.0.0 ||", ">=foo", ">=1.0.0 <bar", "1.2.3.4", "1.x-rc.1", "!1.0.0", ">=01.0.0"],
)
def test_range_invalid(text: str) -> None:
    with pytest.raises(ValueError, match="is not a version range"):
        parse_range(text)


@pytest.mark.parametrize(
    ("old", "new", "kind"),
    [
        ("1.0.0", "2.0.0", "major"),
        ("1.9.9", "2.0.0-rc.1", "major"),
        ("1.0.0", "1.1.0", "minor"),
        ("1.0.5", "1.1.0", "minor"),
        ("1.0.0", "1.0.1", "patch"),
        ("1.4.0-rc.1", "1.4.0-rc.2", "patch"),
        ("1.4.0-rc.1", "1.4.0", "patch"),
        ("1.0.0", "1.0.0", "none"),
        ("1.0.0+a", "1.0.0+b", "none"),
        ("1.0.1", "1.0.0", "downgrade"),
        ("2.0.0", "1.9.9", "downgrade"),
        ("1.4.0", "1.4.0-rc.1", "downgrade"),
    ],
)
def test_bump_kind(old: str, new: str, kind: str) -> None:
    assert bump_kind(parse_version(old), parse_version(new)) == kind
