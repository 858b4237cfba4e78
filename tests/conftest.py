"""Shared pytest fixtures: generated netCDF files and the real servers tests run against.

Under CI (``CI`` set) hypothesis runs derandomized: the same examples every run, so a green
main stays green; run locally, it keeps drawing new examples and finding new cases.
"""

import os

from hypothesis import settings

from tests.fixtures_data import *
from tests.remote_fixtures import reductionist_target, remote_data, s3_store  # noqa: F401
from tests.servers.conftest_fixtures import *

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
