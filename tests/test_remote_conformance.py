"""Reductions against the netCDF4 oracle for every source and backend: local files, S3 (moto or
a real store) and HTTPS (nginx), each reduced locally and, for remote data, on Reductionist.

One conformance class (``tests.remote_fixtures.ReductionConformance``), subclassed per pair.
Set ``REDUCTIONIST_URL`` (with ``S3_ENDPOINT_URL``, ``S3_ACCESS_KEY``, ``S3_SECRET_KEY``) to run
the Reductionist classes against a real server; see docs/remote.md.
"""

from __future__ import annotations

import pytest

from tests.remote_fixtures import REAL_REDUCTIONIST, REMOTE_CASES, S3_CASES, ReductionConformance


class TestLocalFiles(ReductionConformance):
    origin, backend = "local", "local"


class TestS3Local(ReductionConformance):
    origin, backend = "s3", "local"
    generated_cases = S3_CASES + REMOTE_CASES


class TestS3Reductionist(ReductionConformance):
    origin, backend = "s3", "reductionist"
    generated_cases = S3_CASES + REMOTE_CASES


class TestHTTPSLocal(ReductionConformance):
    origin, backend = "https", "local"


@pytest.mark.skipif(
    bool(REAL_REDUCTIONIST),
    reason="a real Reductionist cannot reach the tests' nginx (127.0.0.1, self-signed certificate)",
)
class TestHTTPSReductionist(ReductionConformance):
    origin, backend = "https", "reductionist"
