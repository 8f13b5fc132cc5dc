import pytest

from steppatch.errors import UnsafePath
from steppatch.paths import is_within, link_stays_inside, safe_relpath


@pytest.mark.parametrize("path", ["a", "a/b", "lib/x.jar", "a-b/c_d.e"])
def test_safe_relpath_accepts_plain_relative_paths(path: str) -> None:
    assert safe_relpath(path) == path


@pytest.mark.parametrize(
    "path", ["", "/etc/passwd", "../x", "a/../../x", "a//b", "a/./b", "a/", ".", "a\\b", "a\0b"]
)
def test_safe_relpath_refuses_escapes_and_ambiguity(path: str) -> None:
    with pytest.raises(UnsafePath) as info:
        safe_relpath(path)
    assert info.value.path == path


@pytest.mark.parametrize(
    ("link", "target", "inside"),
    [
        ("a/b", "c", True),
        ("a/b", "../c", True),
        ("a/b", "..", True),
        ("a/b", "../..", False),
        ("a", "../x", False),
        ("a", "/etc/passwd", False),
        ("a/b/c", "../../d/e", True),
        ("a", "", False),
    ],
)
def test_link_stays_inside(link: str, target: str, inside: bool) -> None:
    assert link_stays_inside(link, target) is inside


def test_is_within() -> None:
    assert is_within("/h/current", "/h/current/a/b")
    assert is_within("/h/current", "/h/current")
    assert not is_within("/h/current", "/h/currentx/a")
    assert not is_within("/h/current", "/h")
