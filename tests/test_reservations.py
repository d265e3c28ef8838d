"""Advisory file reservations: advisory vs exclusive, shared, renewal, release, expiry, the repository edge."""

from __future__ import annotations

from pathlib import Path

import pytest

from jetpack.clock import ManualClock
from jetpack.errors import InvalidInput
from jetpack.reservations.patterns import PatternError
from jetpack.reservations.service import (
    ReservationContext,
    ReserveMode,
    active_reservations,
    check_files,
    release_files,
    renew_files,
    reserve_files,
    sweep_expired_reservations,
)
from jetpack.store import DataLayer

EXCLUSIVE, ADVISORY = ReserveMode.EXCLUSIVE, ReserveMode.ADVISORY


@pytest.fixture
def res(store: DataLayer, clock: ManualClock, project: Path) -> ReservationContext:
    return ReservationContext(store=store, repo_root=project, clock=clock)


def test_advisory_reservations_are_always_recorded_and_report_conflicts(res: ReservationContext) -> None:
    reserve_files(res, "bob", ["src/api/**"])
    result = reserve_files(res, "alice", ["src/api/handlers.py"], reason="fix 500s", task_id=None)
    assert result.recorded
    [conflict] = result.conflicts
    assert (conflict.holder, conflict.pattern, conflict.path) == ("bob", "src/api/**", "src/api/handlers.py")
    assert {r.agent for r in active_reservations(res)} == {"alice", "bob"}


def test_exclusive_records_nothing_when_anything_conflicts(res: ReservationContext) -> None:
    reserve_files(res, "bob", ["docs/readme.md"])
    result = reserve_files(res, "alice", ["src/a.py", "docs"], mode=EXCLUSIVE)
    assert not result.recorded and result.reservations == []
    assert [c.pattern for c in result.conflicts] == ["docs/readme.md"]
    assert [r.agent for r in active_reservations(res)] == ["bob"]
    assert reserve_files(res, "alice", ["src/a.py"], mode=EXCLUSIVE).recorded


def test_conflicts_are_found_in_both_directions(res: ReservationContext) -> None:
    reserve_files(res, "bob", ["src/x.py"])
    assert [c.holder for c in check_files(res, "alice", ["src"])] == ["bob"]
    reserve_files(res, "carol", ["lib"])
    assert [c.holder for c in check_files(res, "alice", ["lib/deep/file.py"])] == ["carol"]
    reserve_files(res, "dan", ["web/*.ts"])
    assert [c.holder for c in check_files(res, "alice", ["web/foo*"])] == ["dan"]
    assert check_files(res, "alice", ["docs/**", "srcx/a.py"]) == []


def test_shared_never_conflicts_with_shared_but_does_with_others(res: ReservationContext) -> None:
    reserve_files(res, "bob", ["src/**"], shared=True)
    assert reserve_files(res, "alice", ["src/a.py"], shared=True).conflicts == []
    assert sorted(c.holder for c in reserve_files(res, "carol", ["src/a.py"]).conflicts) == ["alice", "bob"]
    assert not reserve_files(res, "dan", ["src/b.py"], mode=EXCLUSIVE).recorded


def test_your_own_reservations_never_conflict_and_reserving_again_refreshes(
    res: ReservationContext, clock: ManualClock
) -> None:
    first = reserve_files(res, "alice", ["src/**"], ttl_seconds=600).reservations[0]
    clock.advance(300)
    again = reserve_files(res, "alice", ["src/**", "src/a.py"], mode=EXCLUSIVE, ttl_seconds=900)
    assert again.recorded and again.conflicts == []
    refreshed = next(r for r in again.reservations if r.pattern == "src/**")
    assert refreshed.id == first.id and refreshed.exclusive
    assert refreshed.expires_at > first.expires_at


def test_renewal_extends_from_the_later_of_now_and_the_current_expiry(
    res: ReservationContext, clock: ManualClock
) -> None:
    made = reserve_files(res, "alice", ["src/**"], ttl_seconds=600).reservations[0]
    [renewed] = renew_files(res, "alice", ids=[made.id], extend_seconds=600)
    assert (renewed.expires_at - made.expires_at).total_seconds() == 600  # from the later: the expiry
    clock.advance(1300)  # lapsed 100 s ago
    assert renew_files(res, "alice", everything=True) == []  # lapsed reservations are not revived
    fresh = reserve_files(res, "alice", ["lib"], ttl_seconds=60).reservations[0]
    [again] = renew_files(res, "alice", paths=["lib"], extend_seconds=3600)
    assert (again.expires_at - fresh.expires_at).total_seconds() == 3600
    assert renew_files(res, "bob", ids=[fresh.id]) == []  # only your own


def test_release_by_id_pattern_or_all_and_only_your_own(res: ReservationContext) -> None:
    a = reserve_files(res, "alice", ["a", "b", "c"]).reservations
    reserve_files(res, "bob", ["z"])
    assert [r.pattern for r in release_files(res, "alice", ids=[a[0].id])] == ["a"]
    assert [r.pattern for r in release_files(res, "alice", paths=["./b"])] == ["b"]
    assert release_files(res, "alice", paths=["b"]) == []  # twice is harmless
    assert release_files(res, "bob", ids=[a[2].id]) == []
    assert [r.pattern for r in release_files(res, "alice", everything=True)] == ["c"]
    assert [r.agent for r in active_reservations(res)] == ["bob"]
    with pytest.raises(InvalidInput, match="one of them"):
        release_files(res, "alice")


def test_expired_reservations_stop_counting_and_are_swept(res: ReservationContext, clock: ManualClock) -> None:
    reserve_files(res, "bob", ["src/**"], ttl_seconds=60, mode=EXCLUSIVE)
    assert check_files(res, "alice", ["src/a.py"])
    clock.advance(61)
    assert check_files(res, "alice", ["src/a.py"]) == []
    assert reserve_files(res, "alice", ["src/a.py"], mode=EXCLUSIVE).recorded
    assert sweep_expired_reservations(res) == 1
    assert sweep_expired_reservations(res) == 0


@pytest.mark.parametrize(
    ("path", "error", "match"),
    [
        ("../outside.py", InvalidInput, "outside the repository"),
        ("/etc/passwd", InvalidInput, "outside"),
        ("src/[abc.py", PatternError, r"\["),
        ("src/a**b.py", PatternError, r"\*\*"),
        ("", InvalidInput, "empty"),
    ],
)
def test_paths_outside_the_repository_and_malformed_globs_are_refused(
    res: ReservationContext, path: str, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        reserve_files(res, "alice", [path])
    assert active_reservations(res) == []


def test_absolute_paths_inside_the_repository_are_made_relative(res: ReservationContext, project: Path) -> None:
    made = reserve_files(res, "alice", [str(project / "src" / "a.py"), "./src\\b.py"]).reservations
    assert sorted(r.pattern for r in made) == ["src/a.py", "src/b.py"]


def test_ttl_outside_its_bounds_is_refused(res: ReservationContext) -> None:
    with pytest.raises(InvalidInput, match="ttl_seconds"):
        reserve_files(res, "alice", ["a"], ttl_seconds=5)
    with pytest.raises(InvalidInput, match="ttl_seconds"):
        reserve_files(res, "alice", ["a"], ttl_seconds=10**9)


def test_known_files_are_checked_as_files_not_as_directories_or_globs(res: ReservationContext) -> None:
    from jetpack.reservations.service import find_conflicts

    reserve_files(res, "bob", ["src/**/*.py", "app/[[]id?/page.tsx"])
    holders = lambda path: [c.pattern for c in find_conflicts(res, "alice", [path], files=True)]  # noqa: E731
    assert holders("src/a/b.py") == ["src/**/*.py"]
    assert holders("src/a/b.js") == []  # as a directory it could hold .py files; as a file it cannot
    assert holders("app/[id]/page.tsx") == ["app/[[]id?/page.tsx"]  # brackets are part of the name
    assert holders("app/i/page.tsx") == []
    assert holders("a]b.txt") == []  # any character is fine in a file name
