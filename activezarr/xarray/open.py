"""``open_dataset``: an activezarr index as a lazy, CF-decoded xarray Dataset the accessor knows.

The Dataset is what xarray's zarr engine makes of the kerchunk references (no data read, no
dask), and every data variable carries ``encoding["activezarr"]``: the ``IndexSource`` that
``.active`` reduces through. ``IndexSource`` opens one ``Active`` per variable and backend
configuration, on first use, and shares it between every selection of that Dataset.
"""

from __future__ import annotations

import inspect
import os
import threading
import warnings
from pathlib import Path
from typing import Any

import xarray as xr

from ..active import Active
from ..errors import IndexLoadError
from ..index.load import read_refs
from ..index.sources import filesystem_options, is_remote, is_source_file

ENCODING_KEY = "activezarr"


class IndexSource:
    """Where a Dataset's variables are indexed, and the ``Active`` objects reducing them.

    Parameters
    ----------
    index : str, Path or dict
        The kerchunk index (path, URL or reference dict).
    storage_options : dict, optional
        fsspec options for a remote index and its data.
    active_options : dict
        Default ``Active`` options (``backend``, ``server``, ``executor``, ...).
    """

    def __init__(self, index, storage_options: dict | None, active_options: dict) -> None:
        self.index = index if isinstance(index, dict) else os.fspath(index)
        self.storage_options = storage_options
        self.active_options = dict(active_options)
        self._actives: dict[tuple, Active] = {}
        self._coordinates: dict | None = None
        self._lock = threading.Lock()
        self._stamp = _stamp(self.index)

    def active(self, variable: str, **options: Any) -> Active:
        """The ``Active`` of ``variable`` with these options over the defaults (cached)."""
        merged = {**self.active_options, **options}
        key = (variable, tuple(sorted((k, repr(v)) for k, v in merged.items())))
        with self._lock:
            found = self._actives.get(key)
            if found is None:
                self._check_unchanged()
                found = Active(self.index, variable, storage_options=self.storage_options, **merged)
                self._actives[key] = found
        return found

    def _check_unchanged(self) -> None:
        """Refuse an index written again since the Dataset was opened from it (a combined
        index of another selection, or of changed rows): its chunks would not be the
        Dataset's."""
        if self._stamp is not None and _stamp(self.index) != self._stamp:
            raise IndexLoadError(
                f"{self.index} was written again after this Dataset was opened from it (by "
                "another combine of that name, or after its files were indexed again); open "
                "the Dataset again"
            )

    def coordinates(self) -> dict:
        """The index's dimension coordinates as xarray decodes them (read once)."""
        with self._lock:
            if self._coordinates is None:
                store = _reference_store(self.index, self.storage_options)
                with xr.open_dataset(
                    store, engine="zarr", consolidated=False, zarr_format=2, chunks=None
                ) as ds:
                    self._coordinates = dict(ds.indexes)
            return self._coordinates

    def close(self) -> None:
        """Close every ``Active`` this source opened."""
        with self._lock:
            for active in self._actives.values():
                active.close()
            self._actives.clear()

    def __repr__(self) -> str:
        where = "<refs dict>" if isinstance(self.index, dict) else self.index
        return f"IndexSource({where!r})"

    # xarray copies encodings (deeply on ds.copy(deep=True)); the source is shared, not copied
    def __copy__(self) -> IndexSource:
        return self

    def __deepcopy__(self, memo) -> IndexSource:
        return self


def _stamp(index) -> tuple | None:
    """Identity and version of a local index file (None: a dict or a URL)."""
    if isinstance(index, dict) or is_remote(index):
        return None
    try:
        st = os.stat(index)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _reference_store(index, storage_options: dict | None):
    """A read-only zarr store over the references (async fsspec, as zarr 3 needs)."""
    import fsspec
    import zarr.storage

    refs = read_refs(index, storage_options)
    if not any(key == ".zarray" or key.endswith("/.zarray") for key in refs):
        where = "the reference dict" if isinstance(index, dict) else index
        raise IndexLoadError(
            f"{where} is not a kerchunk index (it describes no arrays); give the index of a "
            "file (`activezarr index <file>` writes indexes/<stem>.json) or a combined index"
        )
    urls = [v[0] for v in refs.values() if isinstance(v, list) and v and isinstance(v[0], str)]
    protocols = {u.split("://", 1)[0] if is_remote(u) else "file" for u in urls} or {"file"}
    if len(protocols) > 1:
        remote_protocol, remote_options = None, {}  # fsspec picks per URL
    else:
        remote_protocol = protocols.pop()
        remote_options = filesystem_options(remote_protocol, storage_options)
    fs = fsspec.filesystem(
        "reference",
        fo=refs,
        remote_protocol=remote_protocol,
        remote_options={**remote_options, "asynchronous": True},
        asynchronous=True,
    )
    return zarr.storage.FsspecStore(fs, read_only=True, path="")


def open_dataset(
    index: str | os.PathLike | dict,
    *,
    storage_options: dict | None = None,
    backend: str = "local",
    server: str | None = None,
    executor=None,
    check_stale: bool = True,
    var: str | list[str] | None = None,
    concat_dim: str = "time",
    **kwargs: Any,
) -> xr.Dataset:
    """Open an activezarr index as a lazy xarray Dataset with the ``.active`` accessor.

    Parameters
    ----------
    index : str, Path, dict or Catalog
        A kerchunk index written by ``activezarr index`` (one file or a combined index),
        its URL, a reference dict, or a catalog selection (``Catalog(...).select(...)``),
        whose files are combined along ``concat_dim`` into one index first (kept as it is
        when the catalog rows it was made from are unchanged: ``Catalog.combine(reuse=True)``).
        A local netCDF4/HDF5 file is indexed once into the index cache (as ``Active`` does)
        and its index opened.
    storage_options : dict, optional
        fsspec options for a remote index and its data (``key``, ``secret``,
        ``client_kwargs``, ``ssl``, ...).
    backend : {"local", "reductionist"}
        Where ``.active`` reductions run by default; ``da.active(backend=...)`` overrides it.
    server : str, optional
        The Reductionist server URL (``backend="reductionist"``).
    executor : concurrent.futures.Executor or dask.distributed.Client, optional
        Run chunk batches there.
    check_stale : bool
        Refuse to reduce when a source file changed since it was indexed.
    var : str or list of str, optional
        For a catalog selection: the variables to combine (default: every data variable
        along ``concat_dim`` that the selected files share), each into its combined index.
    concat_dim : str
        For a catalog selection: the dimension the files are concatenated along.
    **kwargs
        Arguments of ``xarray.open_dataset`` (``decode_times``, ``drop_variables``, ...) go
        there (``chunks`` makes dask arrays, which ``.active`` cannot see through); any other
        is an ``Active`` option (``max_workers``, ``verify``, ``retries``, ...).

    Returns
    -------
    xarray.Dataset
        CF-decoded and lazy: nothing is read until values are used.

    Examples
    --------
    >>> import activezarr
    >>> ds = activezarr.open_dataset("indexes/tas_day.json")  # doctest: +SKIP
    >>> ds.tas.sel(time=slice("2000", "2009")).active.mean("time")  # doctest: +SKIP
    >>> cat = activezarr.Catalog("indexes")  # doctest: +SKIP
    >>> ds = activezarr.open_dataset(cat.select(var="tas"))  # many files along time  # doctest: +SKIP
    """
    from . import accessor  # noqa: F401 - registers .active

    if hasattr(index, "combine") and hasattr(index, "entries"):  # a catalog selection
        names = [var] if isinstance(var, str) else var or _data_variables(index, concat_dim)
        options = {
            "storage_options": storage_options,
            "backend": backend,
            "server": server,
            "executor": executor,
            "check_stale": check_stale,
        }
        parts = [  # each combined index written again only when its rows changed
            open_dataset(_combined(index, name, concat_dim), **options, **kwargs) for name in names
        ]
        return xr.merge(parts, compat="override", join="exact", combine_attrs="override")
    location = index if isinstance(index, dict) else os.fspath(index)
    if not isinstance(location, dict) and is_source_file(location):  # a data file, as Active
        from ..catalog.single import ensure_index  # takes it: indexed once, then reused

        location = str(ensure_index(location, storage_options=storage_options)[0])
    if isinstance(location, str) and not is_remote(location) and not Path(location).exists():
        raise IndexLoadError(
            f"index {location} does not exist; build it with `activezarr index <file>`"
        )
    xr_names = inspect.signature(xr.open_dataset).parameters
    options = {k: v for k, v in kwargs.items() if k not in xr_names}
    options.update(backend=backend, server=server, executor=executor, check_stale=check_stale)
    source = IndexSource(location, storage_options, options)  # stamps the index before it is read
    store = _reference_store(location, storage_options)
    xr_kwargs = {k: v for k, v in kwargs.items() if k in xr_names}
    xr_kwargs.setdefault("chunks", None)
    ds = _open_decoded(store, xr_kwargs)
    for name, variable in ds.variables.items():
        variable.encoding[ENCODING_KEY] = source
        variable.encoding.setdefault("activezarr_variable", name)
    return ds


def _open_decoded(store, xr_kwargs: dict) -> xr.Dataset:
    """The store as xarray decodes it; a variable whose CF attributes xarray cannot apply (a
    two-element ``scale_factor``, say) is left undecoded with a warning, as netCDF4-python
    leaves it packed, instead of failing the whole dataset."""
    zarr_args = {"engine": "zarr", "consolidated": False, "zarr_format": 2}
    try:
        return xr.open_dataset(store, **zarr_args, **xr_kwargs)
    except (ValueError, TypeError, OverflowError):
        pass  # find the variables that cannot be decoded, below
    undecoded = {**xr_kwargs, "decode_cf": False}
    raw = xr.open_dataset(store, **zarr_args, **undecoded)
    failed = []
    for name in raw.variables:
        try:
            xr.decode_cf(raw[[name]] if name in raw.data_vars else raw.coords[name].to_dataset())
        except (ValueError, TypeError, OverflowError) as exc:
            failed.append(name)
            warnings.warn(
                f"{name}: its CF attributes cannot be applied ({exc}); left undecoded "
                "(as stored, like netCDF4-python leaves it)",
                stacklevel=3,
            )
    kept = {k: v for k, v in xr_kwargs.items() if k != "drop_variables"}
    drop = list(xr_kwargs.get("drop_variables") or []) + failed
    ds = xr.open_dataset(store, **zarr_args, **kept, drop_variables=drop)
    return ds.assign({name: raw[name] for name in failed if name in raw.data_vars})


def _combined(selection, var: str, concat_dim: str) -> Path:
    """The selection's combined index of ``var``, named after the selection (another
    selection's Dataset keeps its own file), written again only when its rows changed."""
    from ..catalog.combine import default_name

    out = selection.directory / default_name(var, concat_dim, selection._conditions)
    return selection.combine(var=var, concat_dim=concat_dim, out=out, reuse=True)


def _data_variables(selection, concat_dim: str) -> list[str]:
    """Variables along ``concat_dim`` whose other dimensions all have coordinates, in every
    selected file (time bounds and the like are left out); found in the catalog's store."""
    from ..catalog.members import shared_along

    found = shared_along(selection, concat_dim)
    if not found:
        raise IndexLoadError(
            f"no variable along {concat_dim!r} is shared by every file of {selection!r}; "
            "select files with select(var=...) or name the variable with var=..."
        )
    return found
