"""Task ids: ``<prefix>-<hash>`` for roots, ``<parent>.<n>`` for children.

The hash is base36 and short: its length is the smallest (at least 4) that keeps the chance
of one new root colliding with the existing ones under 1%, so ids grow only as the table
does. Collisions are still checked by the primary key inside the insert transaction.
"""

from __future__ import annotations

import hashlib
import re

from jetpack.errors import InvalidInput

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_TASK_ID = re.compile(r"^[a-z][a-z0-9]{0,15}-[0-9a-z]{3,12}(\.[1-9][0-9]{0,5})*$")
MIN_HASH_LENGTH = 4
MAX_HASH_LENGTH = 12
_COLLISION_BUDGET = 0.01


def looks_like_task_id(value: str) -> bool:
    return bool(_TASK_ID.match(value))


def check_task_id(value: str) -> str:
    if not looks_like_task_id(value):
        raise InvalidInput(
            f"{value[:80]!r} is not a task id; ids look like jp-a3f8 or jp-a3f8.2.1 (call list_tasks to find one)"
        )
    return value


def hash_length_for(existing_roots: int) -> int:
    length = MIN_HASH_LENGTH
    while length < MAX_HASH_LENGTH and existing_roots / (36**length) > _COLLISION_BUDGET:
        length += 1
    return length


def _base36(number: int) -> str:
    digits = []
    while number:
        number, remainder = divmod(number, 36)
        digits.append(_ALPHABET[remainder])
    return "".join(reversed(digits)) or "0"


def root_id(prefix: str, seed: str, length: int) -> str:
    digest = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:10], "big")
    return f"{prefix}-{_base36(digest).rjust(length, '0')[-length:]}"


def child_id(parent_id: str, number: int) -> str:
    return f"{parent_id}.{number}"


def parent_of(task_id: str) -> str | None:
    head, dot, _ = task_id.rpartition(".")
    return head if dot else None


def ancestors_of(task_id: str) -> list[str]:
    """Ancestors, nearest first: ``jp-a.1.2`` -> ``[jp-a.1, jp-a]``."""
    found = []
    parent = parent_of(task_id)
    while parent is not None:
        found.append(parent)
        parent = parent_of(parent)
    return found


def depth_of(task_id: str) -> int:
    """Level in the tree, root = 1."""
    return task_id.count(".") + 1
