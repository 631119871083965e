"""Run ids: short, unguessable, never mistaken for an item number."""

from __future__ import annotations

import secrets
import string

_RUN_ID_ALPHABET = string.ascii_lowercase + string.digits


def new_run_id() -> str:
    """8 characters, starting with a letter so it never looks like an item number."""
    # One draw from the OS's randomness, spelled in base 36 (a letter, then 7 letters
    # or digits): as unguessable as eight draws, at an eighth of the cost.
    n = secrets.randbelow(26 * 36**7)
    head, n = divmod(n, 36**7)
    tail = []
    for _ in range(7):
        n, d = divmod(n, 36)
        tail.append(_RUN_ID_ALPHABET[d])
    return string.ascii_lowercase[head] + "".join(tail)
