"""JSON text: parsed with orjson when installed, written compactly with the standard library.

No numpy here: the catalog's store reads its rows with it on the command line's quick paths.
"""

from __future__ import annotations

import json
from typing import Any

try:
    import orjson
except ImportError:  # optional (extra "fast"): the standard library parses the same JSON
    orjson = None


def loads(data: bytes | memoryview | str) -> Any:
    """Parse JSON with orjson when installed (several times faster), falling back to the
    standard library for what orjson refuses (NaN literals, huge integers, deep nesting: the
    standard library then parses it or raises)."""
    if orjson is not None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(bytes(data) if isinstance(data, memoryview) else data)


# ``json.dumps(value, separators=(",", ":"))``, without building an encoder per call
compact_json = json.JSONEncoder(separators=(",", ":")).encode
