"""The reduction math and the CF rules it follows, with no I/O.

- ``missing``: which stored values are missing and how packed values decode, as
  netCDF4-python applies the CF attributes.
- ``partials``: per-chunk partial results, how they add up and become the final answer.
- ``kernels``: the numpy kernels that reduce a block of stored values into a partial.
"""
