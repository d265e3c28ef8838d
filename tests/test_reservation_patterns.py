"""The reservation pattern matcher: normalisation, coverage, overlap and the literal-prefix pre-filter.

The exhaustive cross-checks compare the matcher with an independent reference (``fnmatchcase``
per segment plus a recursive ``**``) over every path in a small universe that is big enough to
witness any overlap of the generated patterns, so they catch a wrong True as well as a wrong False.
"""

from __future__ import annotations

import functools
import itertools
import re
from fnmatch import fnmatchcase
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jetpack.errors import InvalidInput
from jetpack.reservations.patterns import PatternError, covers, literal_prefix, normalise_pattern, patterns_overlap

# ---------------------------------------------------------------------------------------------
# patterns_overlap

OVERLAP_CASES = [
    # literal vs literal
    ("src/x.py", "src/x.py", True),
    ("src", "src", True),
    ("src/x.py", "src", True),  # a directory and a file inside it
    ("src/a", "src/a/b/c.py", True),
    ("src/a.py", "src/b.py", False),  # siblings
    ("src", "srcx/a", False),  # a string prefix that is not a segment prefix
    ("src/a", "src/ab", False),
    ("SRC", "src", False),  # case-sensitive
    ("my dir/a b.txt", "my dir", True),
    # the cases naive implementations get wrong
    ("src/*.py", "src/foo*", True),  # src/foo.py
    ("src/api/*.py", "src/*/handlers.py", True),  # src/api/handlers.py
    ("*.py", "src/a.py", False),  # '*' is one root segment
    ("docs/**", "src/**", False),
    ("**/test_*.py", "tests/unit/test_a.py", True),
    ("a/**/b", "a/b", True),
    ("{src,lib}/x.py", "lib/*", True),
    ("[ab]*.md", "c.md", False),
    ("[!a]*", "a", False),
    ("file?.txt", "file10.txt", False),
    # '**' overlaps everything
    ("**", "src/a.py", True),
    ("**", "*.md", True),
    ("**", "**", True),
    # '**' at the start
    ("**/x", "x", True),
    ("**/x", "d/x", True),
    ("**/x", "d", True),  # d may be a directory holding x
    ("**/a", "**/b", True),  # a/b
    # '**' in the middle
    ("a/**/b", "a/x/y/b", True),
    ("a/**/b", "a/x", True),  # a/x/b
    ("a/**/b", "c/b", False),
    ("a/**/b/**/c", "a/b/c", True),
    ("src/**/*.py", "src/a/b.py", True),
    ("**/a/**", "**/b/**", True),
    # '**' at the end
    ("a/**", "a", True),
    ("a/**", "a/b/c", True),
    ("a/**", "b", False),
    ("src/**", "src", True),
    ("docs/*.md", "docs/api/**", False),  # docs/api does not match *.md
    # glob vs glob
    ("src/*.py", "src/*.js", False),
    ("src/*.py", "*.py", False),
    ("*.py", "src.py/x", True),  # below src.py
    ("*.md", "*.py", False),
    ("*.md", "*", True),
    ("x.py", "*.py", True),
    ("*a", "b*", True),  # ba
    ("a*b", "b*a", False),
    ("a*", "*b", True),  # ab
    ("??", "???", False),
    ("*", "?", True),
    ("?x", "x?", True),  # xx
    ("a/*/c", "a/b/d", False),
    ("a/*/c", "a/b/c/d", True),
    ("a/*/c", "a/*/d", False),
    ("a/b/c", "a/*/*/*", True),  # a/b/c/anything
    ("a/*/b", "**/c/b", True),  # a/c/b
    (".*", "a", False),
    (".hidden", "*", True),
    # braces
    ("{a,b}.py", "c.py", False),
    ("{a,b}.py", "{b,c}.py", True),
    ("{a,b}/x", "{c,d}/x", False),
    ("src/{a,b}/**", "src/b/c", True),
    ("file{,.bak}", "file", True),
    ("file{,.bak}", "file.bak", True),
    ("file{,.bak}", "file.orig", False),
    # character classes
    ("[a-c].py", "b.py", True),
    ("[a-c].py", "d.py", False),
    ("[!a-c]x", "bx", False),
    ("[!a-c]x", "dx", True),
    ("[^a]*", "a", False),
    ("[ab]*", "[bc]*", True),  # b
    ("[a]*", "[b]*", False),
    ("[!a]", "[!b]", True),  # c
    ("[*]", "*", True),
    ("[*]", "a", False),
]


def _ids(cases: list[tuple[str, str, bool]]) -> list[str]:
    return [f"{a} ~ {b}" for a, b, _ in cases]


@pytest.mark.parametrize(("a", "b", "expected"), OVERLAP_CASES, ids=_ids(OVERLAP_CASES))
def test_patterns_overlap_exactly_when_some_path_is_covered_by_both_in_either_order(
    a: str, b: str, expected: bool
) -> None:
    assert patterns_overlap(a, b) is expected
    assert patterns_overlap(b, a) is expected


def test_overlap_table_has_at_least_forty_cases() -> None:
    assert len(OVERLAP_CASES) >= 40


def test_overlap_normalises_both_patterns_first() -> None:
    assert patterns_overlap("./src//x.py", "src\\x.py")
    assert patterns_overlap("src/a/../b", "src/b/c")


def test_overlap_refuses_malformed_patterns() -> None:
    with pytest.raises(PatternError):
        patterns_overlap("src/[ab", "src")


@pytest.mark.timeout(20)
def test_overlap_of_long_glob_heavy_patterns_is_decided_in_polynomial_time() -> None:
    a = "/".join(["**", "*a*a*a*a*b"] * 32)
    b = "/".join(["*a*", "**"] * 32)
    c = "/".join(["*a*a*a*a*c"] * 64)
    assert patterns_overlap(a, b)
    assert patterns_overlap(a, c)  # a's leading '**' takes all of c, c's implicit trailing '**' the rest of a
    assert not patterns_overlap("/".join(["*a*a*a*a*b", "**"] * 32), c)
    assert not covers(a, "/".join(["aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaac"] * 64))


# ---------------------------------------------------------------------------------------------
# covers

COVERS_CASES = [
    ("src", "src/x.py", True),
    ("src/x.py", "src/x.py", True),
    ("src/*.py", "src/a/b.py", False),
    ("src/*", "src/a/b.py", True),
    ("src/*.py", "src/a.py", True),
    ("src", "srcx/a.py", False),
    ("src/x.py", "src", False),  # a pattern does not cover its parent directory
    ("src", "SRC/x.py", False),
    ("**", "any/path/at/all.txt", True),
    ("**/test_*.py", "tests/unit/test_a.py", True),
    ("**/test_*.py", "test_a.py", True),
    ("**/test_*.py", "tests/unit/a.py", False),
    ("a/**/b", "a/b", True),
    ("a/**/b", "a/x/y/b", True),
    ("a/**/b", "a/x/c", False),
    ("a/**", "a", True),
    ("a/**", "a/b/c", True),
    ("a/**", "ab", False),
    ("{src,lib}/x.py", "lib/x.py", True),
    ("{src,lib}/x.py", "bin/x.py", False),
    ("[ab]*.md", "b.md", True),
    ("[ab]*.md", "c.md", False),
    ("[!a]*", "a", False),
    ("[!a]*", "b", True),
    ("file?.txt", "file1.txt", True),
    ("file?.txt", "file10.txt", False),
    ("*.py", "src/a.py", False),
    ("*.py", "a.py", True),
    ("a[*]", "a*", True),
    ("a*", "a[b]", True),  # the path is literal: '[' is just a character of its name
    ("src", "./src//x.py", True),  # the path is normalised too
]


@pytest.mark.parametrize(("pattern", "path", "expected"), COVERS_CASES, ids=_ids(COVERS_CASES))
def test_a_pattern_covers_what_it_matches_and_everything_below(pattern: str, path: str, expected: bool) -> None:
    assert covers(pattern, path) is expected


def test_a_literal_path_with_glob_characters_is_matched_literally() -> None:
    assert covers("src/[ab].py", "src/a.py")
    assert not covers("src/[ab].py", "src/[ab].py")  # '[ab]' is a class in the pattern, literal in the path
    assert covers("src/[[]ab?.py", "src/[ab].py")  # no escapes: a class for "[", "?" for "]"


# ---------------------------------------------------------------------------------------------
# normalise_pattern

NORMALISE_CASES = [
    ("./src//a\\b.py", "src/a/b.py"),
    ("a/../b", "b"),
    ("a/b/../../c", "c"),
    ("src/", "src"),
    ("  src/a.py \n", "src/a.py"),
    ("src/./a", "src/a"),
    ("a//b///c", "a/b/c"),
    ("src\\api\\*.py", "src/api/*.py"),
    ("**", "**"),
    ("**/**/x", "**/x"),
    ("a/**/**", "a/**"),
    ("src/*.py", "src/*.py"),
    ("{src,lib}/*.py", "{src,lib}/*.py"),
    ("[!a]*", "[!a]*"),
    ("dir with space/a b.txt", "dir with space/a b.txt"),
    ("Src/README.md", "Src/README.md"),
    ("C:/x", "C:/x"),  # not a drive outside Windows: a directory named "C:"
]


@pytest.mark.parametrize(("raw", "expected"), NORMALISE_CASES)
def test_normalise_pattern_gives_the_canonical_repo_relative_form(raw: str, expected: str) -> None:
    assert normalise_pattern(raw) == expected
    assert normalise_pattern(expected) == expected


def test_an_absolute_path_inside_the_repository_is_made_relative(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    assert normalise_pattern(f"{root}/src/a.py", root) == "src/a.py"
    assert normalise_pattern(f"{root}/src/../lib/*.py", root) == "lib/*.py"
    assert normalise_pattern(f"{tmp_path}/other/../repo/x", root) == "x"
    assert normalise_pattern(f"{root}/", tmp_path) == "repo"


def test_an_absolute_path_outside_the_repository_is_refused_naming_the_root(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    with pytest.raises(InvalidInput, match=re.escape(str(root.as_posix()))) as raised:
        normalise_pattern("/elsewhere/a.py", root)
    assert "outside the repository" in str(raised.value)
    with pytest.raises(InvalidInput, match="outside the repository"):
        normalise_pattern(f"{root}x/a.py", root)  # a sibling sharing the root's name as a string prefix
    with pytest.raises(InvalidInput, match="outside the repository"):
        normalise_pattern(f"{root}/../a.py", root)


def test_an_absolute_path_without_a_repository_root_is_refused() -> None:
    with pytest.raises(InvalidInput, match="absolute path"):
        normalise_pattern("/abs/inside/x")


@pytest.mark.parametrize("raw", ["../x", "a/../../x", "src/../../etc/passwd"])
def test_dot_dot_above_the_repository_root_is_refused(raw: str) -> None:
    with pytest.raises(InvalidInput, match="outside the repository") as raised:
        normalise_pattern(raw)
    assert not isinstance(raised.value, PatternError)


@pytest.mark.parametrize("raw", ["", "   ", ".", "./", "/", "//", "a/..", "./."])
def test_empty_patterns_are_refused_pointing_at_globstar(raw: str) -> None:
    with pytest.raises(InvalidInput, match=r"\*\*"):
        normalise_pattern(raw)


def test_the_repository_root_itself_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"\*\*"):
        normalise_pattern(str(tmp_path), tmp_path)


MALFORMED_CASES = [
    ("a**b", "'**'"),
    ("src/**.py", "not a whole segment"),
    ("***", "not a whole segment"),
    ("src/[ab", "unbalanced '['"),
    ("src/[a/b]", "unbalanced '['"),  # a class cannot span segments
    ("a]", "unbalanced ']'"),
    ("{a,b", "unbalanced '{'"),
    ("{src,lib/x}", "unbalanced '{'"),  # alternatives cannot span segments
    ("a}", "unbalanced '}'"),
    ("{}", "empty '{}'"),
    ("[]", "empty character class"),
    ("[!]", "empty character class"),
    ("{a,{b,c}}", "nested"),
    ("[z-a]", "reversed range"),
    ("{,}", "empty"),
    ("x/{.,a}", "'.' or '..'"),
    ("a\x00b", "control character U+0000"),
    ("a\tb", "control character U+0009"),
    ("a\x7fb", "control character U+007F"),
    ("a/**/../b", "'..' right after '**'"),
    ("a" * 1025, "1,025 characters"),
    ("/".join(["a"] * 65), "65 segments"),
    ("{a,b,c,d}{a,b,c,d}{a,b,c,d}{a,b,c,d}{a,b}", "alternatives"),
]


@pytest.mark.parametrize(("raw", "problem"), MALFORMED_CASES, ids=[c[1] for c in MALFORMED_CASES])
def test_malformed_globs_raise_pattern_error_naming_the_problem(raw: str, problem: str) -> None:
    with pytest.raises(PatternError, match=re.escape(problem)):
        normalise_pattern(raw)


def test_limits_are_inclusive() -> None:
    assert normalise_pattern("a" * 1024) == "a" * 1024
    assert normalise_pattern("/".join(["a"] * 64)).count("/") == 63


def test_pattern_error_is_invalid_input() -> None:
    assert issubclass(PatternError, InvalidInput)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab/.\\ *?{},[]!-", max_size=14))
def test_normalising_twice_changes_nothing(raw: str) -> None:
    try:
        once = normalise_pattern(raw)
    except InvalidInput:
        return
    assert normalise_pattern(once) == once


# ---------------------------------------------------------------------------------------------
# literal_prefix

LITERAL_PREFIX_CASES = [
    ("src/api/*.py", "src/api"),
    ("src/x.py", "src/x.py"),
    ("*.py", ""),
    ("**/x", ""),
    ("src/**/x", "src"),
    ("src/{a,b}/x", "src"),
    ("src/[ab]/x", "src"),
    ("src/a?/x", "src"),
    ("a,b/c", "a,b/c"),  # a comma outside braces is literal
    ("./src//api/*.py", "src/api"),
]


@pytest.mark.parametrize(("pattern", "prefix"), LITERAL_PREFIX_CASES)
def test_literal_prefix_is_the_leading_glob_free_segments(pattern: str, prefix: str) -> None:
    assert literal_prefix(pattern) == prefix


def is_segment_prefix(prefix: str, of: str) -> bool:
    """``prefix`` equals ``of`` or is a whole-segment prefix of it ("" is a prefix of everything)."""
    return prefix in ("", of) or of.startswith(prefix + "/")


def test_segment_prefix_is_about_whole_segments() -> None:
    assert is_segment_prefix("src", "src/a")
    assert is_segment_prefix("", "src")
    assert not is_segment_prefix("src", "srcx/a")


# ---------------------------------------------------------------------------------------------
# Properties and exhaustive cross-checks

SEGMENTS = ["a", "b", "ab", "*", "a*", "?", "**", "{a,ab}", "[!a]"]
patterns = st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=3).map("/".join)

# Every segment glob above that meets another meets it in one of these names, and a common
# covered path needs at most as many segments as the two patterns have non-'**' segments.
NAMES = ["a", "b", "ab", "ba"]
DEPTH = 4
UNIVERSE = ["/".join(parts) for depth in range(1, DEPTH + 1) for parts in itertools.product(NAMES, repeat=depth)]


def _expand_braces(segment: str) -> list[str]:
    match = re.search(r"\{([^}]*)\}", segment)
    if not match:
        return [segment]
    head, tail = segment[: match.start()], segment[match.end() :]
    return [head + choice + tail for choice in match.group(1).split(",")]


def _reference_match(pattern: tuple[str, ...], path: tuple[str, ...]) -> bool:
    if not pattern:
        return not path
    if pattern[0] == "**":
        return any(_reference_match(pattern[1:], path[skip:]) for skip in range(len(path) + 1))
    return (
        bool(path)
        and any(fnmatchcase(path[0], choice) for choice in _expand_braces(pattern[0]))
        and _reference_match(pattern[1:], path[1:])
    )


def reference_covers(pattern: str, path: str) -> bool:
    segments, names = tuple(pattern.split("/")), tuple(path.split("/"))
    return any(_reference_match(segments, names[:depth]) for depth in range(len(names) + 1))


@functools.cache
def covered_in_universe(pattern: str) -> frozenset[str]:
    return frozenset(path for path in UNIVERSE if reference_covers(pattern, path))


def witness_depth(a: str, b: str) -> int:
    """How deep a common covered path may need to be: one segment per non-'**' segment."""
    return max(1, sum(s != "**" for s in a.split("/")) + sum(s != "**" for s in b.split("/")))


def test_the_reference_agrees_with_covers_on_the_table() -> None:
    for pattern, path, expected in COVERS_CASES:
        if "./" not in path and "[" not in path:
            assert reference_covers(normalise_pattern(pattern), path) is expected, (pattern, path)


@settings(max_examples=400, deadline=None)
@given(patterns, patterns)
def test_overlap_matches_an_exhaustive_search_of_common_covered_paths(a: str, b: str) -> None:
    common = covered_in_universe(a) & covered_in_universe(b)
    if common:
        assert patterns_overlap(a, b), f"both cover {sorted(common)[0]!r}"
    if witness_depth(a, b) <= DEPTH:  # the universe is big enough to witness any overlap
        assert patterns_overlap(a, b) is bool(common)


def test_overlap_matches_the_exhaustive_search_for_every_pair_of_one_or_two_segment_patterns() -> None:
    small = ["/".join(parts) for n in (1, 2) for parts in itertools.product(SEGMENTS, repeat=n)]
    for a, b in itertools.combinations_with_replacement(small, 2):
        expected = bool(covered_in_universe(a) & covered_in_universe(b))
        assert patterns_overlap(a, b) is expected, (a, b)


@settings(max_examples=300, deadline=None)
@given(patterns, patterns)
def test_overlap_is_symmetric(a: str, b: str) -> None:
    assert patterns_overlap(a, b) is patterns_overlap(b, a)


@settings(max_examples=300, deadline=None)
@given(patterns, st.lists(st.sampled_from(NAMES), min_size=1, max_size=4).map("/".join))
def test_covering_a_literal_path_implies_overlapping_it_and_agrees_with_the_reference(pattern: str, path: str) -> None:
    assert covers(pattern, path) is reference_covers(pattern, path)
    if covers(pattern, path):
        assert patterns_overlap(pattern, path)


@settings(max_examples=400, deadline=None)
@given(patterns, patterns)
def test_overlapping_patterns_pass_the_literal_prefix_prefilter(a: str, b: str) -> None:
    if patterns_overlap(a, b):
        pa, pb = literal_prefix(a), literal_prefix(b)
        assert is_segment_prefix(pa, pb) or is_segment_prefix(pb, pa)


# One segment: the character-level intersection of '*', '?', classes and literals.
ATOMS = ["a", "b", "c", "*", "?", "[ab]", "[!a]", "[b-c]", "[a-c]", "[^c]"]
CHARS = "abc"


@functools.cache
def segment_language(glob: str) -> frozenset[str]:
    reference = glob.replace("[^", "[!")  # fnmatch spells negation only with '!'
    words = ("".join(w) for n in range(1, 7) for w in itertools.product(CHARS, repeat=n))
    return frozenset(w for w in words if fnmatchcase(w, reference))


segment_globs = st.lists(st.sampled_from(ATOMS), min_size=1, max_size=3).map("".join).filter(lambda g: "**" not in g)


@settings(max_examples=300, deadline=None)
@given(segment_globs, segment_globs)
def test_segment_globs_overlap_exactly_when_they_share_a_name(a: str, b: str) -> None:
    # Each atom takes at most one character, so a shared name is at most six long: all searched.
    assert patterns_overlap(a, b) is bool(segment_language(a) & segment_language(b))
