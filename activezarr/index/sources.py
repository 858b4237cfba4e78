"""Where a source file lives (local path, s3://, http(s)://) and how to open and fingerprint it.

A fingerprint is what tells whether a file changed since it was indexed: size and mtime for
local files, size and ETag (or Last-Modified) for remote objects.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from ..errors import IndexBuildError


def is_remote(url: str) -> bool:
    return "://" in url and not url.startswith("file://")


def local_path(url: str) -> str:
    return url[len("file://") :] if url.startswith("file://") else url


@dataclass(frozen=True)
class Source:
    """A file to index: the URL written into references and how to reach it."""

    url: str
    display: str
    storage_options: dict | None = None

    @property
    def remote(self) -> bool:
        return is_remote(self.url)

    @property
    def stem(self) -> str:
        name = PurePosixPath(self.url.split("?", 1)[0]).name
        return name.rsplit(".", 1)[0] if "." in name else name

    def filesystem(self):
        import fsspec

        protocol = self.url.split("://", 1)[0]
        return fsspec.filesystem(protocol, **(self.storage_options or {}))

    def open(self) -> IO[bytes]:
        """A binary file object (local file, or an fsspec file with read-ahead)."""
        if not self.remote:
            return open(self.url, "rb")
        return self.filesystem().open(self.url, "rb", block_size=2**20, cache_type="readahead")

    def head(self, n: int) -> bytes:
        try:
            with self.open() as fh:
                return fh.read(n)
        except FileNotFoundError:
            raise IndexBuildError(f"{self.display}: no such file") from None
        except PermissionError:
            raise IndexBuildError(
                f"{self.display}: permission denied; check the file's read permission"
            ) from None
        except IsADirectoryError:
            raise IndexBuildError(f"{self.display}: is a directory, not a file") from None
        except OSError as exc:
            raise IndexBuildError(f"{self.display}: cannot be read ({exc})") from exc

    def fingerprint(self) -> dict[str, Any]:
        """Size plus mtime (local) or ETag / Last-Modified (remote)."""
        if not self.remote:
            try:
                st = os.stat(self.url)
            except FileNotFoundError:
                raise IndexBuildError(f"{self.display}: no such file") from None
            return {"size": st.st_size, "mtime": st.st_mtime}
        try:
            info = self.filesystem().info(self.url)
        except FileNotFoundError:
            raise IndexBuildError(f"{self.display}: no such object") from None
        except Exception as exc:  # noqa: BLE001 - remote client errors vary by protocol
            raise IndexBuildError(f"{self.display}: cannot be reached ({exc})") from exc
        etag = info.get("ETag") or info.get("etag") or info.get("LastModified")
        return {"size": info.get("size"), "etag": str(etag) if etag is not None else None}


def open_source(path: str | Path, storage_options: dict | None = None) -> Source:
    """The ``Source`` for a path or URL; local paths become absolute."""
    text = str(path)
    if is_remote(text):
        return Source(text, text, storage_options)
    return Source(os.path.abspath(local_path(text)), text, None)
