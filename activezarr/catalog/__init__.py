"""Many indexes: the catalog of an index directory, indexing many files into it, combining
them along a dimension and reducing across them.

``Catalog`` is the public entry point; the modules behind it are private.
"""

from .catalog import Catalog, CoordRange, Entry, Problem

__all__ = ["Catalog", "CoordRange", "Entry", "Problem"]
