"""The lab's error."""

from __future__ import annotations

from ..errors import ZddError

__all__ = ["LabError"]


class LabError(ZddError):
    """The lab could not be brought up, repaired, changed or taken down.

    The message is one line that says what went wrong and, where it helps,
    what to do (e.g. the tail of a daemon's log).
    """
