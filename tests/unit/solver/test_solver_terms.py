"""Terms and version spaces: set algebra, specifier -> bitset, display."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from steppatch.solver._terms import Space, Term, format_specifier

RELEASES = ["0.9", "1.0", "1.0.post1", "1.0+local", "1.1a1", "1.1", "1.1.dev0", "2.0rc1", "2.0"]
RELEASES += ["2.0.post2", "2!0.5", "1.0.0.1", "3.0b2", "1.1.1"]
OPS = [">=", ">", "<", "<=", "==", "!=", "~="]


def spec_text(op: str, version: str) -> str:
    if "+" in version and op not in ("==", "!="):
        version = version.split("+")[0]
    if op == "~=" and "." not in version.split("!")[-1]:
        version += ".0"
    return f"{op}{version}"


specs = st.lists(
    st.builds(spec_text, st.sampled_from(OPS), st.sampled_from([*RELEASES, "1.*", "2.0.*"])),
    max_size=3,
).map(
    lambda items: ",".join(i for i in items if not (i.endswith("*") and i[:2] not in ("==", "!=")))
)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(RELEASES), unique=True), specs)
def test_bisected_bits_match_packaging_filter(versions: list[str], text: str) -> None:
    space = Space("x", [Version(v) for v in versions])
    spec = SpecifierSet(text)
    expected = {str(v) for v in spec.filter(space.versions, prereleases=spec.prereleases is True)}
    got = {str(v) for v in Term(space, True, space.bits_for(spec)).versions}
    assert got == expected


def test_installed_prerelease_matches_in_range() -> None:
    space = Space("x", [Version("1.0"), Version("2.0rc1")], installed=Version("2.0rc1"))
    assert Term(space, True, space.bits_for(SpecifierSet(">=1"))).versions == (
        Version("1.0"),
        Version("2.0rc1"),
    )
    assert space.bits_for(SpecifierSet("<2")) == 0b01


def test_term_algebra() -> None:
    space = Space("x", [Version(v) for v in ("1", "2", "3", "4")])
    a = Term(space, True, 0b0110)
    b = Term(space, True, 0b1100)
    assert a.intersect(b) == Term(space, True, 0b0100)
    assert a.intersect(b.negate()) == Term(space, True, 0b0010)
    assert a.negate().intersect(b.negate()) == Term(space, False, 0b1110)
    assert a.difference(b) == Term(space, True, 0b0010)
    assert Term(space, True, 0b0100).satisfies(a)
    assert not a.satisfies(b)
    assert a.satisfies(Term(space, False, 0b1000))
    assert not a.negate().satisfies(a)
    assert Term(space, False, 0b1111).satisfies(a.negate())
    assert Term(space, True, 0).is_empty()
    assert not Term(space, False, 0).is_empty()
    assert hash(a) == hash(Term(space, True, 0b0110, "label"))


def test_display() -> None:
    space = Space("x", [Version(str(v)) for v in range(1, 7)])
    assert space.describe(space.full) == "any"
    assert space.describe(0b000001) == "1"
    assert space.describe(0b000110) == ">=2,<4"
    assert space.describe(0b110000) == ">=5"
    assert space.describe(0b100011) == "<3 or 6"
    space.label(0b000110, ">=2,<3.5")
    assert space.describe(0b000110) == ">=2,<3.5"
    assert Term(space, True, space.full).text(allow_every=True) == "every version of x"
    assert Term(space, True, space.full).text() == "x"
    assert str(Term(space, False, 0b110000)) == "not x >=5"
    assert format_specifier(SpecifierSet("<10,>=9.0,!=9.5")) == ">=9.0,<10,!=9.5"
