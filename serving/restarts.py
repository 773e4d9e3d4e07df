"""When a version whose worker process ended by itself is loaded again.

The first time after a stable run, after `RESTART_BACKOFF_S`; each further
end in a row doubles the wait, up to `RESTART_BACKOFF_MAX_S`. An end counts
"in a row" when it comes within `STABLE_SECONDS` of the version's last
load. After `MAX_WORKER_ENDS` ends in a row the version is given up (the
manager marks it failed until its files change).

>>> restarts = Restarts()
>>> restarts.loaded(3)
>>> restarts.ended(3), restarts.ended(3)
(0.5, 1.0)
"""

import time

RESTART_BACKOFF_S = 0.5
RESTART_BACKOFF_MAX_S = 30.0
MAX_WORKER_ENDS = 5
STABLE_SECONDS = 60.0


class Restarts:
    """The worker ends of one model's versions."""

    def __init__(self):
        self._loaded_at = {}  # version -> time.monotonic() of its last load
        self._ends = {}  # version -> ends in a row

    def loaded(self, version):
        self._loaded_at[version] = time.monotonic()

    def ends(self, version):
        return self._ends.get(version, 0)

    def ended(self, version):
        """Counts an end of `version`'s worker; returns the seconds to wait
        before loading it again, or None to give it up."""
        now = time.monotonic()
        stable = now - self._loaded_at.get(version, now) >= STABLE_SECONDS
        ends = 1 if stable else self._ends.get(version, 0) + 1
        self._ends[version] = ends
        if ends >= MAX_WORKER_ENDS:
            return None
        return min(RESTART_BACKOFF_MAX_S, RESTART_BACKOFF_S * 2 ** (ends - 1))


__all__ = ["MAX_WORKER_ENDS", "RESTART_BACKOFF_MAX_S", "RESTART_BACKOFF_S", "Restarts"]
