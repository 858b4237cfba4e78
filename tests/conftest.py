"""Shared pytest fixtures: generated netCDF files and the real servers tests run against."""

from tests.fixtures_data import *
from tests.servers.conftest_fixtures import *
