"""Shared constants and aliases."""

from typing import Final

ABSTAIN: Final[int] = -1
"""The label value meaning "no label": masked out of every loss and metric."""

__all__ = ["ABSTAIN"]
