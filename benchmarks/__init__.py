"""Benchmark suite: activezarr next to h5py, netCDF4-python, kerchunk + zarr and PyActiveStorage.

Run ``python -m benchmarks.run`` (see ``docs/performance.md``). Not part of the test run.
"""
