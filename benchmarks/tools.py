"""One measurement in a fresh process: ``python -m benchmarks.tools TOOL CASE_JSON``.

The process imports the tool's modules (timed, reported as ``import_s``), prepares what is not
part of the operation (untimed), times the operation alone with ``time.perf_counter`` and
prints one JSON object on stdout::

    {"tool", "kind", "import_s", "op_s", "op_cpu_s", "peak_rss_mb", "base_rss_mb", "ru_maxrss_mb",
     "value", "extra"}

``peak_rss_mb`` is the process's peak resident size at the end (``VmHWM``, imports included;
``ru_maxrss_mb`` is ``getrusage(RUSAGE_SELF).ru_maxrss``, see ``peak_rss_mb()``);
``base_rss_mb`` is the resident size just before the operation. Anything the tools print
goes to stderr. ``CASE_JSON`` keys: ``kind`` (reduce | load | build | import | many_reduce |
combine; the last two over ``files``, ``catalog`` and ``kerchunk`` directories), ``path``,
``var``, ``sel`` (``"0:2,4:6,7:9"``, ``":"`` for everything), ``axis`` (null or an int),
``index`` (activezarr index), ``refs`` (kerchunk references), ``save`` (``.npy`` for array
results), ``tmp`` (scratch directory for index builds), ``cold`` (load: drop activezarr's
binary sidecar first, so the JSON itself is parsed).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import statistics
import sys
import time
from pathlib import Path

TOOLS: dict[str, type] = {}


def register(name: str):
    def wrap(cls):
        cls.name = name
        TOOLS[name] = cls
        return cls

    return wrap


def parse_selection(text: str) -> tuple:
    """``"0:2,4:6,7:9"`` -> ``(slice(0, 2), slice(4, 6), slice(7, 9))``; ints allowed."""
    parts = []
    for item in text.split(","):
        item = item.strip()
        if ":" in item:
            bounds = [int(b) if b.strip() else None for b in item.split(":")]
            parts.append(slice(*bounds))
        else:
            parts.append(int(item))
    return tuple(parts)


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """Peak resident size of this process since exec (``VmHWM``).

    ``ru_maxrss`` is also recorded, but after ``fork``/``exec`` Linux folds the parent's peak
    into it, so the harness's own size would be a floor under every tool's figure.
    """
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return ru_maxrss_mb()


def ru_maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Tool:
    """Base: ``imports`` pulls in the modules; ``prepare_<kind>`` returns the timed callable."""

    name = "?"

    def imports(self, case: dict) -> None:
        raise NotImplementedError

    def prepare_import(self, case: dict):
        return lambda: None  # the import itself is the measurement (import_s)


@register("activezarr")
class ActiveZarrTool(Tool):
    """``Active(index, var).mean[sel]``: index load included, index built beforehand."""

    def imports(self, case):
        import activezarr
        from activezarr import Active, Catalog  # noqa: F401 - the package imports them lazily

        self.az = activezarr
        if case["kind"] == "build":  # what build_index imports on first use (kerchunk.hdf,
            # imported before kerchunk's clock, imports h5py and all it needs)
            import h5py  # noqa: F401

            import activezarr.catalog.single
            import activezarr.index.build

    def prepare_reduce(self, case):
        sel, axis = parse_selection(case["sel"]), case.get("axis")

        def op():
            active = self.az.Active(case["index"], case["var"])
            reduction = active.mean if axis is None else active.mean(axis=axis)
            return reduction[sel]

        return op

    def prepare_warm(self, case):
        sel = parse_selection(case["sel"])
        active = self.az.Active(case["index"], case["var"])
        return warm_calls(lambda: active.mean[sel])

    def prepare_load(self, case):
        if case.get("cold"):
            drop_sidecar(Path(case["index"]))
        # kerchunk's references name the data beside their directory: allowed explicitly
        allow = [str(Path(case["path"]).parent)]
        return lambda: self.az.Active(case["index"], case["var"], allow_paths=allow).shape

    def prepare_build(self, case):
        out = fresh_dir(case["tmp"])
        return lambda: self.az.build_index(case["path"], out=out)

    def prepare_many_reduce(self, case):
        return lambda: self.az.Catalog(case["catalog"]).reduce(case["var"], "mean")

    def prepare_combine(self, case):
        out = fresh_dir(case["tmp"]) / "combined.json"
        return lambda: self.az.Catalog(case["catalog"]).combine(case["var"], "time", out=out)


@register("h5py+numpy")
class H5pyTool(Tool):
    """h5py reads the selection into memory, numpy takes the float64 mean."""

    def imports(self, case):
        import h5py
        import numpy

        self.h5py, self.np = h5py, numpy

    def prepare_reduce(self, case):
        sel, axis = parse_selection(case["sel"]), case.get("axis")

        def op():
            with self.h5py.File(case["path"], "r") as f:
                data = f[case["var"]][sel]
            return self.np.mean(data, axis=axis, dtype=self.np.float64)

        return op

    def prepare_many_reduce(self, case):
        """The loop a scientist writes: each file opened, read whole, summed in float64."""
        paths, np = many_paths(case), self.np

        def op():
            total, count = 0.0, 0
            for path in paths:
                with self.h5py.File(path, "r") as f:
                    data = f[case["var"]][...]
                total += float(np.sum(data, dtype=np.float64))
                count += data.size
            return np.float64(total / count)

        return op

    def prepare_warm(self, case):
        sel, np = parse_selection(case["sel"]), self.np
        f = self.h5py.File(case["path"], "r")
        var = f[case["var"]]
        return warm_calls(lambda: np.mean(var[sel], dtype=np.float64))


@register("netcdf4")
class NetCDF4Tool(Tool):
    """netCDF4-python reads a masked array, ``numpy.ma.mean`` in float64 (the oracle route)."""

    def imports(self, case):
        import netCDF4
        import numpy

        self.netCDF4, self.np = netCDF4, numpy

    def prepare_reduce(self, case):
        sel, axis = parse_selection(case["sel"]), case.get("axis")

        def op():
            with self.netCDF4.Dataset(case["path"]) as ds:
                data = ds[case["var"]][sel]
            return self.np.ma.mean(data, axis=axis, dtype=self.np.float64)

        return op

    def prepare_many_reduce(self, case):
        """The same loop through netCDF4-python's masked arrays (the oracle route)."""
        paths, np = many_paths(case), self.np

        def op():
            total, count = 0.0, 0
            for path in paths:
                with self.netCDF4.Dataset(path) as ds:
                    data = ds[case["var"]][...]
                total += float(np.ma.sum(data, dtype=np.float64))
                count += int(np.ma.count(data))
            return np.float64(total / count)

        return op


@register("kerchunk+zarr")
class KerchunkZarrTool(Tool):
    """The plain reference route: fsspec reference filesystem + zarr 3 + numpy mean."""

    def imports(self, case):
        import fsspec
        import numpy
        import zarr

        self.fsspec, self.zarr, self.np = fsspec, zarr, numpy
        if case["kind"] == "build":
            from kerchunk.hdf import SingleHdf5ToZarr

            self.translator = SingleHdf5ToZarr

    def _array(self, case):
        fs = self.fsspec.filesystem(
            "reference", fo=case["refs"], remote_protocol="file", asynchronous=True
        )
        store = self.zarr.storage.FsspecStore(fs, read_only=True)
        return self.zarr.open_group(store, mode="r", zarr_format=2)[case["var"]]

    def prepare_reduce(self, case):
        sel, axis = parse_selection(case["sel"]), case.get("axis")
        np = self.np
        return lambda: np.mean(self._array(case)[sel], axis=axis, dtype=np.float64)

    def prepare_load(self, case):
        return lambda: self._array(case).shape

    def prepare_combine(self, case):
        """kerchunk's ``MultiZarrToZarr`` over the per-file references, written as JSON."""
        from kerchunk.combine import MultiZarrToZarr

        refs = sorted(str(p) for p in Path(case["kerchunk"]).glob("*.json"))
        out = fresh_dir(case["tmp"]) / "combined.json"

        def op():
            mzz = MultiZarrToZarr(
                refs,
                concat_dims=["time"],
                identical_dims=["lat", "lon"],
                remote_protocol="file",
                inline_threshold=0,
            )
            with open(out, "w") as fh:
                json.dump(mzz.translate(), fh)
            return out

        return op

    def prepare_build(self, case):
        out = fresh_dir(case["tmp"]) / (Path(case["path"]).stem + ".json")

        def op():
            refs = self.translator(case["path"], inline_threshold=0).translate()
            with open(out, "w") as fh:
                json.dump(refs, fh)
            return out

        return op


@register("pyactivestorage")
class PyActiveStorageTool(Tool):
    """PyActiveStorage 0.8 ``Active(path, ncvar).mean(axis)[sel]`` on the local POSIX file."""

    def imports(self, case):
        from activestorage.active import Active

        self.Active = Active

    def prepare_reduce(self, case):
        sel, axis = parse_selection(case["sel"]), case.get("axis")

        def op():
            active = self.Active(case["path"], case["var"])
            result = active.mean(axis=None if axis is None else (axis,))[sel]
            return result.squeeze() if axis is None else result.squeeze(axis)

        return op


@register("floor")
class FloorTool(Tool):
    """The prototype floor: kerchunk offsets -> ``os.pread`` per chunk on 2 threads -> sum.

    No masking, no CF decoding; the references are parsed before the clock starts.
    """

    def imports(self, case):
        from benchmarks import floor

        self.floor = floor

    def prepare_reduce(self, case):
        plan = self.floor.plan(case["refs"], case["var"], parse_selection(case["sel"]))
        return lambda: self.floor.mean(case["path"], plan, axis=case.get("axis"), threads=2)


@register("floor-mmap")
class MappedFloorTool(FloorTool):
    """The memory-map floor: kerchunk offsets -> chunks summed in place from ``mmap``."""

    def prepare_reduce(self, case):
        plan = self.floor.plan(case["refs"], case["var"], parse_selection(case["sel"]))
        return lambda: self.floor.mean_mapped(case["path"], plan, axis=case.get("axis"))


WARM_CALLS = 1000


def warm_calls(call):
    """``kind == "warm"``: one untimed call, then ``WARM_CALLS`` timed ones on the same open
    object; the operation's time is their median."""

    def op():
        result = call()
        times = []
        for _ in range(WARM_CALLS):
            t0 = time.perf_counter()
            call()
            times.append(time.perf_counter() - t0)
        return result, statistics.median(times)

    return op


def drop_sidecar(index: Path) -> None:
    """Remove activezarr's binary chunk-table cache of ``index``, so the JSON is parsed.

    (activezarr writes ``<index dir>/.activezarr-cache/<index name>.azc`` at index time and
    rewrites it on a load that finds it missing; older versions wrote a directory there.)
    """
    cache = index.parent / ".activezarr-cache"
    (cache / (index.name + ".azc")).unlink(missing_ok=True)
    shutil.rmtree(cache / index.name, ignore_errors=True)


def many_paths(case: dict) -> list[str]:
    """The small files of the ``many-*`` cases, in name (= time) order."""
    return sorted(str(p) for p in Path(case["files"]).glob("*.nc"))


def fresh_dir(path: str) -> Path:
    out = Path(path)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    return out


def summarize(result, case: dict) -> tuple[float | None, dict]:
    """A scalar to compare across tools, plus details (array results saved to ``save``)."""
    if case["kind"] in ("build", "combine"):
        size = Path(result).stat().st_size
        return None, {"index_bytes": size}
    if case["kind"] not in ("reduce", "warm", "many_reduce"):
        return None, {}
    import numpy as np

    masked = int(np.ma.count_masked(result))
    data = np.asarray(np.ma.getdata(result), dtype=np.float64)
    if data.ndim:
        np.save(case["save"], data)
    return float(data.mean()) if data.size else None, {"masked": masked, "shape": data.shape}


def measure(tool_name: str, case: dict) -> dict:
    tool = TOOLS[tool_name]()
    with contextlib.redirect_stdout(sys.stderr):
        t0 = time.perf_counter()
        tool.imports(case)
        import_s = time.perf_counter() - t0
        op = getattr(tool, f"prepare_{case['kind']}")(case)
        base = rss_mb()
        t0, cpu0 = time.perf_counter(), time.process_time()
        result = op()
        op_s, op_cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
        if case["kind"] == "warm":  # the median of many calls, measured by the tool
            result, op_s = result
        peak = peak_rss_mb()
        value, extra = summarize(result, case)
    if case["kind"] == "import":
        op_s = import_s
    return {
        "tool": tool_name,
        "kind": case["kind"],
        "import_s": import_s,
        "op_s": op_s,
        "op_cpu_s": op_cpu_s,  # CPU of all the process's threads: steadier than op_s under load
        "peak_rss_mb": peak,
        "base_rss_mb": base,
        "ru_maxrss_mb": ru_maxrss_mb(),
        "value": value,
        "extra": extra,
    }


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] not in TOOLS:
        sys.exit(f"usage: python -m benchmarks.tools {{{','.join(TOOLS)}}} CASE_JSON")
    print(json.dumps(measure(argv[0], json.loads(argv[1]))))


if __name__ == "__main__":
    main()
