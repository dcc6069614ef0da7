"""How the CLI words a count in its messages: ``1 line``, ``2 lines``.

Footers and errors say how many lines were skipped or workers are gone; the noun follows the
number, so a single one never reads as ``1 lines``.
"""

from __future__ import annotations


def counted(n: int, singular: str, plural: str | None = None) -> str:
    """``n`` and the noun in the number it takes (``plural`` defaults to ``singular + "s"``)."""
    return f"{n} {singular if n == 1 else (plural or singular + 's')}"
