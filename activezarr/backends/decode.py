"""Chunk decoders that never expand a chunk beyond what its index says it holds.

A compressed chunk comes from an index, which is input from elsewhere: a zlib, gzip, bz2 or
lzma stream is decompressed with a ``max_length`` and refused the moment it passes ``bound``
bytes; zstd, blosc and lz4 streams state their decompressed size in a header, which is checked
before anything is allocated. ``bound`` is the decoded chunk's size (times the widening of any
``astype`` filter) plus a small slack (fletcher32's checksum). A stream that ends early is
refused too. Other codecs decode through numcodecs as they are.
"""

from __future__ import annotations

import bz2
import lzma
import struct
import zlib

import numpy as np

SLACK = 64 * 1024  # bytes a compressor's output may exceed the decoded chunk (checksums)


class ChunkTooLarge(ValueError):
    """A compressed stream that would decode beyond its chunk's size (a decompression bomb)."""


def bound_for(codecs: tuple[dict, ...], nbytes: int) -> int:
    """The most bytes any stage of ``codecs`` may produce for a chunk of ``nbytes``."""
    factor = 1.0
    for config in codecs:
        if "astype" in config and "dtype" in config:
            try:
                wide = np.dtype(config["astype"]).itemsize / np.dtype(config["dtype"]).itemsize
            except TypeError:
                continue
            factor *= max(1.0, wide)
    return int(nbytes * factor) + SLACK


def _refuse(codec: str, bound: int) -> ChunkTooLarge:
    return ChunkTooLarge(
        f"the {codec} stream decompresses to more than {bound:,} bytes, beyond the chunk's "
        "size (a decompression bomb, or an index that lies about the chunk); refused"
    )


class BoundedStream:
    """zlib / gzip / bz2 / lzma decoding that stops at ``bound`` bytes."""

    checks_size = True  # decode(buf, out) fills all of ``out`` or raises

    def __init__(self, codec: str, bound: int, config: dict) -> None:
        self.codec, self.bound, self.config = codec, bound, config

    def _decompressor(self):
        if self.codec == "zlib":
            return zlib.decompressobj()
        if self.codec == "gzip":
            return zlib.decompressobj(wbits=31)
        if self.codec == "bz2":
            return bz2.BZ2Decompressor()
        return lzma.LZMADecompressor(
            format=self.config.get("format", lzma.FORMAT_AUTO),
            filters=self.config.get("filters"),
        )

    def decode(self, buf, out=None):
        data = memoryview(buf).cast("B") if not isinstance(buf, bytes) else buf
        parts, total = [], 0
        while True:
            d = self._decompressor()
            got = d.decompress(data, self.bound + 1 - total)
            total += len(got)
            parts.append(got)
            if total > self.bound:
                raise _refuse(self.codec, self.bound)
            if not d.eof:
                raise ValueError(f"the {self.codec} stream ends early (truncated chunk)")
            rest = d.unused_data
            if self.codec != "gzip" or not rest:
                break  # gzip alone may hold several members, one after another
            data = rest
        result = parts[0] if len(parts) == 1 else b"".join(parts)
        return deliver(result, out)


class HeaderChecked:
    """zstd / blosc / lz4 decoding after checking the size the stream's header claims."""

    checks_size = True

    def __init__(self, codec, bound: int, name: str) -> None:
        self.codec, self.bound, self.name = codec, bound, name

    def decode(self, buf, out=None):
        claimed = claimed_size(self.name, memoryview(buf).cast("B"))
        if claimed is None or claimed > self.bound:
            if claimed is None:
                raise ValueError(f"the {self.name} stream does not state its decoded size")
            raise _refuse(self.name, self.bound)
        if out is not None and claimed != memoryview(out).nbytes:
            # numcodecs would fill only the start of ``out``, leaving the rest as it was
            raise ValueError(
                f"the {self.name} stream holds {claimed} bytes, not {memoryview(out).nbytes}"
            )
        return self.codec.decode(buf, out)


# numcodecs filters whose output has their input's size: decoded into a chunk's array only
# when the sizes match (they do not check, and would leave the rest of it as it was)
SIZE_PRESERVING = frozenset({"shuffle", "delta", "bitround", "quantize", "bitshuffle"})


def fills_exactly(codec, buf, out: np.ndarray) -> bool:
    """Whether ``codec.decode(buf, out=out)`` writes all of ``out`` or fails: our bounded
    decoders check; a size-preserving numcodecs filter does when the sizes match; any other
    codec is decoded into a new buffer and its size checked after."""
    if getattr(codec, "checks_size", False):
        return True
    config = getattr(codec, "codec_id", None)
    return config in SIZE_PRESERVING and memoryview(buf).nbytes == out.nbytes


def claimed_size(name: str, data: memoryview) -> int | None:
    """The decoded size a zstd frame, blosc buffer or numcodecs lz4 buffer states."""
    if name == "blosc":
        return struct.unpack_from("<I", data, 4)[0] if len(data) >= 16 else None
    if name == "lz4":
        return struct.unpack_from("<I", data, 0)[0] if len(data) >= 4 else None
    return zstd_content_size(data)


def zstd_content_size(data: memoryview) -> int | None:
    """The frame content size of a zstd frame header (None when absent or not zstd)."""
    if len(data) < 6 or struct.unpack_from("<I", data, 0)[0] != 0xFD2FB528:
        return None
    fhd = data[4]
    fcs_flag, single, dict_flag = fhd >> 6, (fhd >> 5) & 1, fhd & 3
    at = 5 + (0 if single else 1) + (0, 1, 2, 4)[dict_flag]
    size = (1 if single else 0, 2, 4, 8)[fcs_flag]
    if size == 0 or len(data) < at + size:
        return None
    value = int.from_bytes(data[at : at + size], "little")
    return value + 256 if size == 2 else value


def deliver(data: bytes, out):
    """``data`` as a numcodecs ``decode`` returns it: itself, or copied into ``out``."""
    if out is None:
        return data
    target = np.frombuffer(out, dtype=np.uint8) if not isinstance(out, np.ndarray) else out
    if target.nbytes != len(data):
        raise ValueError("decoded size differs from the chunk size")
    target.reshape(-1).view(np.uint8)[:] = np.frombuffer(data, dtype=np.uint8)
    return out


def bounded(config: dict, bound: int):
    """The bounded decoder of a compressor config, or None for any other codec."""
    cid = config.get("id")
    if cid in STREAMS:
        return BoundedStream(cid, bound, config)
    if cid in HEADERS:
        import numcodecs

        return HeaderChecked(numcodecs.get_codec(dict(config)), bound, cid)
    return None


STREAMS = ("zlib", "gzip", "bz2", "lzma")
HEADERS = ("zstd", "blosc", "lz4")
