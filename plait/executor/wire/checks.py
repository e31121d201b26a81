"""How a process reports its broken invariants (the head's and a node's validate_state).

Each check reads one process's own tables and names what it finds broken, with the state
that broke it, so that a soak or a test teardown can say *what* went wrong rather than
only that a get hung. Only what one process knows is checked: whether a copy the head
counts on node-1 is really in node-1's store is a race by nature (a Delete may be on its
way) and is left to the results the soaks check.
"""

from __future__ import annotations

SHOWN = 5          # ids named per broken invariant


def note_broken(problems: list[str], what: str, found: list[str]) -> None:
    """Add one broken invariant to ``problems``: what broke, how often, the first ids."""
    if found:
        problems.append(f"{what} ({len(found)}): {', '.join(found[:SHOWN])}")
