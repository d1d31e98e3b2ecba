"""Shared constants and aliases."""

from typing import Final

ABSTAIN: Final[int] = -1
"""The label value meaning "no label": masked out of every loss and metric."""


class MtlError(ValueError):
    """Bad input a user can fix (data, config, checkpoint); the message names the culprit.

    The command-line entry points print it as one line instead of a traceback.
    """


__all__ = ["ABSTAIN", "MtlError"]
