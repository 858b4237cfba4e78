"""Byte counts as people read them: decimal units (``1.2 MB``), as everywhere in our output.

Imports nothing, so that any module (the catalog's listings among them) may use it cheaply.
"""

from __future__ import annotations


def size_text(n: float) -> str:
    """Bytes in decimal units: ``size_text(1_234_567) == "1.2 MB"``."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover
