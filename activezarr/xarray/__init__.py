"""xarray integration: ``open_dataset`` and the ``.active`` accessor on DataArray and Dataset.

Importing this module registers the accessor (``activezarr.open_dataset`` imports it for you).
"""

from .accessor import ActiveDataArrayAccessor, ActiveDatasetAccessor
from .open import IndexSource, open_dataset

__all__ = ["ActiveDataArrayAccessor", "ActiveDatasetAccessor", "IndexSource", "open_dataset"]
