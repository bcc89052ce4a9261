"""Named points where a fit can be killed on purpose, for the tests of what a kill leaves behind.

`KERASRNN_KILL_AT=NAME` (or `NAME:N`, the N-th time the point is reached) makes the process SIGKILL itself
there: no handler, finalizer or flush runs, as when a laptop's battery dies or the OOM killer strikes.
Unset, a point costs one dictionary lookup.
"""

import os
import signal

_reached: dict[str, int] = {}


def point(name: str) -> None:
    """Kill this process here if KERASRNN_KILL_AT names this point (and its count is reached)."""
    wanted = os.environ.get("KERASRNN_KILL_AT")
    if not wanted:
        return
    target, _, count = wanted.partition(":")
    if target != name:
        return
    _reached[name] = _reached.get(name, 0) + 1
    if _reached[name] >= int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
