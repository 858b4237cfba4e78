"""``activezarr catalog ...`` and ``activezarr combine``: the catalog commands."""

from __future__ import annotations


def add_catalog_commands(sub, remote_options) -> None:
    """Register the catalog subcommands on the main parser's subparsers."""
