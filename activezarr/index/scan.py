"""Kerchunk JSON text scanned with numpy: the plain chunk references of an index as arrays.

``split`` finds the runs of plain references (``"key": ["url", offset, length],``, nearly all
of a kerchunk index) in the raw bytes and returns them as arrays (``ChunkRefs``: key
positions, url ids, offsets, lengths; no Python object per reference) and the rest of the
document parsed by the JSON parser. What is not plain (metadata, inline data, escapes,
other spacing, the last member of an object) stays in the rest. The contract: the arrays hold
exactly what a JSON parser reads from the same text, or ``split`` returns None and the caller
parses the whole text. A key that appears twice at the top level or among the references is
refused (``check_duplicates``; readers disagree on which one counts).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import IndexLoadError
from .jsontext import loads

PAD = 512  # bytes after the text: windows may read past the end of the last reference
KEY_MAX = 96  # longer keys, urls and gaps stay in the rest (parsed as JSON)
URL_MAX = 256
GAP_MAX = 96
DIGITS_MAX = 18  # offsets and lengths below 10**18 (beyond: the JSON parser's errors)
BLOCK = 1 << 16  # references checked at a time (bounds the window matrices)
WS = rb"[ \t\r\n]*"
STRING = rb'"[^"\\\x00-\x1f\x7f-\xff]+"'
NUMBER = rb"(?:0|[1-9][0-9]*)"
# The first plain reference gives the spacing every other one must have exactly.
FIRST = re.compile(
    STRING + rb"(" + WS + rb":" + WS + rb"\[" + WS + rb")" + STRING
    + b"(" + WS + rb"),(" + WS + b")" + NUMBER + b"(" + WS + b"),(" + WS + b")" + NUMBER
    + b"(" + WS + rb")\](" + WS + b"),(" + WS + b')"'
)  # fmt: skip


@dataclass
class ChunkRefs:
    """Plain references of one document: the i-th key is ``buf[key_at[i]:][:key_len[i]]``
    (ASCII, no escapes, not a metadata key), its reference ``[urls[url_ids[i]],
    offsets[i], sizes[i]]``. ``member_at`` gives the text positions of the references left in
    the parsed rest (their order in the document among these)."""

    buf: np.ndarray  # uint8: the document's bytes, padded
    key_at: np.ndarray  # int64
    key_len: np.ndarray  # int64
    urls: list[str]
    url_ids: np.ndarray  # int32
    offsets: np.ndarray  # int64, >= 0
    sizes: np.ndarray  # int64, >= 0
    member_at: np.ndarray  # int64

    def key(self, row: int) -> str:
        at = int(self.key_at[row])
        return self.buf[at : at + int(self.key_len[row])].tobytes().decode("ascii")

    def keys(self) -> list[str]:
        """Every key, in order (one string each: for callers that want a plain dict)."""
        if not len(self.key_at):
            return []
        width = int(self.key_len.max()) + 1
        window = _window(self.buf, self.key_at, width).copy()
        window[np.arange(len(window)), self.key_len] = ord("\n")
        return window[_cols(width) <= self.key_len[:, None]].tobytes().decode().split("\n")[:-1]

    def rows_for(self, prefix: str | None) -> np.ndarray:
        """Rows whose key starts with ``prefix``; ``None``: keys without a "/" (the root array)."""
        if prefix is None:
            width = int(self.key_len.max(initial=1))
            window = _window(self.buf, self.key_at, width)
            slash = (window == ord("/")) & (_cols(width) < self.key_len[:, None])
            return np.flatnonzero(~slash.any(axis=1))
        raw = np.frombuffer(prefix.encode(), np.uint8)
        if not raw.size:
            return np.arange(len(self.key_at))
        match = (_window(self.buf, self.key_at, raw.size) == raw).all(axis=1)
        return np.flatnonzero(match & (self.key_len >= raw.size))

    def coords(self, rows: np.ndarray, cut: int, sep: str, ndim: int) -> np.ndarray | int:
        """Chunk coordinates (``len(rows)`` × ``ndim``) of the keys of ``rows`` after their
        first ``cut`` bytes: canonical integers joined by ``sep``; else the first bad row."""
        length = self.key_len[rows] - cut
        width = int(length.max(initial=1))
        window = _window(self.buf, self.key_at[rows] + cut, width)
        inside = _cols(width) < length[:, None]
        digit = (window >= ord("0")) & (window <= ord("9"))
        split = (window == ord(sep)) & inside
        bad = (inside & ~digit & ~split).any(axis=1) | (split.sum(axis=1) != ndim - 1)
        if bad.any():
            return int(rows[np.argmax(bad)])
        at = np.flatnonzero(split.ravel()).reshape(len(rows), ndim - 1) % width
        starts = np.concatenate([np.zeros((len(rows), 1), np.int64), at + 1], axis=1)
        ends = np.concatenate([at, length[:, None]], axis=1)
        out = np.empty((len(rows), ndim), np.int64)
        base = self.key_at[rows] + cut
        for j in range(ndim):
            value, ok = _number(self.buf, base + starts[:, j], ends[:, j] - starts[:, j])
            if not ok.all():
                return int(rows[np.argmin(ok)])
            out[:, j] = value
        return out


def _cols(width: int) -> np.ndarray:
    return np.arange(width)[None, :]


def _window(buf: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    """``buf[s:s + width]`` for each start, as rows of a matrix (one gather, no index matrix)."""
    return sliding_window_view(buf, max(width, 1))[starts]


def _number(buf: np.ndarray, at: np.ndarray, length: np.ndarray):
    """Values of the digit runs ``buf[at:at + length]`` and which are canonical JSON integers
    (1 to ``DIGITS_MAX`` digits, no leading zero)."""
    width = int(np.clip(length, 1, DIGITS_MAX).max(initial=1))
    window = _window(buf, at, width)
    ok = (length >= 1) & (length <= DIGITS_MAX) & ((window[:, 0] != ord("0")) | (length == 1))
    value = np.zeros(len(at), np.int64)
    for t in range(width):
        digit = window[:, t].astype(np.int64) - ord("0")
        value = np.where(t < length, value * 10 + digit, value)
    return value, ok


def quotes(arr: np.ndarray) -> np.ndarray:
    """Positions of the quotes that open or close a string (not escaped by an odd run of
    backslashes)."""
    found = np.flatnonzero(arr == ord('"'))
    slashes = np.flatnonzero(arr == ord("\\"))
    if not (slashes.size and found.size):
        return found
    after = np.flatnonzero(arr[np.maximum(found - 1, 0)] == ord("\\"))
    after = after[found[after] > 0]
    if not after.size:
        return found
    breaks = np.flatnonzero(np.diff(slashes) != 1)
    run_start = slashes[np.concatenate([[0], breaks + 1])]
    run_end = slashes[np.concatenate([breaks, [len(slashes) - 1]])]
    run = np.searchsorted(run_end, found[after] - 1)
    escaped = after[(run_end[run] - run_start[run]) % 2 == 0]
    return np.delete(found, escaped)


@dataclass
class Structure:
    """The strings of a valid JSON text: where each opens and closes, the nesting depth it
    sits at (1 inside the top-level object) and whether it is an object key."""

    opens: np.ndarray
    closes: np.ndarray
    depth: np.ndarray
    is_key: np.ndarray


NEST = np.zeros(256, np.int8)
NEST[[ord("{"), ord("[")]] = 1
NEST[[ord("}"), ord("]")]] = -1
UNPLAIN = np.ones(256, bool)  # bytes a plain string does not hold
UNPLAIN[0x20:0x7F] = False
UNPLAIN[ord("\\")] = True
SPACE = np.zeros(256, bool)
SPACE[list(b" \t\r\n")] = True


def structure(arr: np.ndarray) -> Structure:
    """``Structure`` of ``arr``, a text a JSON parser has accepted (padded by ``PAD`` spaces
    or zeros past its end is not needed: ``arr`` is all of it)."""
    q = quotes(arr)
    opens, closes = q[0::2], q[1::2]
    brackets = np.flatnonzero(NEST[arr])
    brackets = brackets[np.searchsorted(q, brackets) % 2 == 0]  # not inside a string
    level = np.concatenate([[0], np.cumsum(NEST[arr[brackets]], dtype=np.int64)])
    depth = level[np.searchsorted(brackets, opens)]
    return Structure(opens, closes, depth, _followed_by_colon(arr, closes))


def _followed_by_colon(arr: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Whether the first byte after each position in ``at`` that is not white space is ":"."""
    out = np.zeros(len(at), bool)
    todo, step = np.arange(len(at)), 1
    while todo.size:
        pos = at[todo] + step
        inside = pos < len(arr)
        byte = arr[np.minimum(pos, len(arr) - 1)]
        space = inside & SPACE[byte]
        out[todo[~space]] = inside[~space] & (byte[~space] == ord(":"))
        todo, step = todo[space], step + 1
    return out


def members(st: Structure, arr: np.ndarray, data: dict) -> tuple[np.ndarray, np.ndarray | None]:
    """String numbers of the top-level keys and of the keys of the ``refs`` object of a parsed
    document (None in version 0, where the top-level keys are the references)."""
    top = np.flatnonzero(st.is_key & (st.depth == 1))
    if data.get("version") is None and not isinstance(data.get("refs"), dict):
        return top, None
    names = [_decoded(arr, st, int(i)) for i in top]
    at = top[len(names) - 1 - names[::-1].index("refs")]
    after = top[top > at]
    end = after[0] if len(after) else len(st.opens)
    inner = np.flatnonzero(st.is_key & (st.depth == 2))
    return top, inner[(inner > at) & (inner < end)]


def _decoded(arr: np.ndarray, st: Structure, i: int) -> str:
    return loads(arr[st.opens[i] : st.closes[i] + 1].tobytes())


def check_duplicates(arr: np.ndarray, data, location: str) -> None:
    """Refuse a parsed document (``arr`` its text) in which a top-level key or a reference
    key appears twice (the parsed objects then hold fewer keys than the text)."""
    if not isinstance(data, dict):
        return
    st = structure(arr)
    top, refs = members(st, arr, data)
    if len(top) != len(data):
        _refuse_twice([_decoded(arr, st, int(i)) for i in top], location)
    if refs is not None and len(refs) != len(data["refs"]):
        _refuse_twice([_decoded(arr, st, int(i)) for i in refs], location)


def _refuse_twice(keys: list[str], location: str) -> None:
    seen: set[str] = set()
    twice = next((k for k in keys if k in seen or seen.add(k)), "?")
    raise IndexLoadError(f"index {location}: key {twice!r:.80} appears twice")


@dataclass
class Split:
    """A document as its plain references and its parsed rest (``refs`` without them)."""

    data: dict
    chunks: ChunkRefs


def split(buf: np.ndarray, n: int, location: str) -> Split | None:
    """``buf[:n]`` (padded by ``PAD`` bytes) as its plain references and its parsed rest;
    None when it has none or when the rest needs the whole text (``gen``, ``templates``, a
    reference-like member outside the references, text a JSON parser refuses)."""
    arr = buf[:n]
    first = FIRST.search(memoryview(arr))
    if first is None:
        return None
    q = quotes(arr)
    if len(q) % 2:
        return None
    opens, closes = q[0::2], q[1::2]
    colon = first.group(1)
    key = np.flatnonzero(opens[1:-1] == closes[:-2] + 1 + len(colon))
    for k, ch in enumerate(colon):
        key = key[arr[closes[key] + 1 + k] == ch]
    layout = first.groups()[1:]
    found = [
        _plain(buf, opens, closes, key[s : s + BLOCK], layout) for s in range(0, len(key), BLOCK)
    ]
    ok = np.concatenate([f[0] for f in found]) if found else np.zeros(0, bool)
    if not ok.any():
        return None
    offsets, sizes, hashes = (np.concatenate([f[j] for f in found])[ok] for j in (1, 2, 3))
    return _rest(buf, n, (opens, closes), key[ok], offsets, sizes, hashes, location)


def _plain(buf: np.ndarray, opens, closes, key: np.ndarray, layout: tuple[bytes, ...]):
    """Which of the strings ``key`` (each followed by the first reference's colon and a string)
    start a plain reference; its offset, length and key hash."""
    key_at, url_at, gap_at = opens[key] + 1, opens[key + 1] + 1, closes[key + 1] + 1
    key_len, url_len, gap_len = (
        closes[key] - key_at,
        closes[key + 1] - url_at,
        opens[key + 2] - gap_at,
    )
    ok = (key_len >= 1) & (key_len <= KEY_MAX) & (url_len >= 1) & (url_len <= URL_MAX)
    ok &= gap_len <= GAP_MAX
    plain_key, hashes = _text(buf, key_at, np.minimum(key_len, KEY_MAX), key=True)
    ok &= plain_key & _text(buf, url_at, np.minimum(url_len, URL_MAX))
    offsets, sizes, fits = _gap(buf, gap_at, np.minimum(gap_len, GAP_MAX), layout)
    return ok & fits, offsets, sizes, hashes


def _text(buf: np.ndarray, at: np.ndarray, length: np.ndarray, key: bool = False):
    """Whether each string ``buf[at:at + length]`` is plain: printable ASCII without
    backslashes (JSON reads it as it is written); a plain key is not a metadata key (no
    name starting with "."). For keys, also a hash of each."""
    width = -(-int(length.max(initial=1)) // 8) * 8
    window = _window(buf, at, width)
    inside = _cols(width) < length[:, None]
    ok = ~(UNPLAIN[window] & inside).any(axis=1)
    if not key:
        return ok
    ok &= window[:, 0] != ord(".")
    dot = (window[:, :-1] == ord("/")) & (window[:, 1:] == ord("."))
    ok &= ~(dot & inside[:, 1:]).any(axis=1)
    return ok, hash_rows(np.where(inside, window, 0), length)


def hash_rows(window: np.ndarray, length: np.ndarray) -> np.ndarray:
    """A hash of each row (width a multiple of 8, zero past ``length``): equal bytes, equal
    hash."""
    words = np.ascontiguousarray(window).view(np.uint64)
    h = length.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    for t in range(words.shape[1]):  # words past the end leave it as it is: any width
        mixed = (h ^ words[:, t]) * np.uint64(0x100000001B3) + np.uint64(t)
        h = np.where(8 * t < length, mixed ^ (mixed >> np.uint64(29)), h)
    return h


def _gap(buf: np.ndarray, at: np.ndarray, length: np.ndarray, layout: tuple[bytes, ...]):
    """Offset and length of each reference whose text after the url, ``buf[at:at +
    length]``, is ``, offset, length],`` spaced exactly as ``layout`` says; which are."""
    a1, a2, a3, a4, a5, a6, a7 = layout
    pre, mid, post = a1 + b"," + a2, a3 + b"," + a4, a5 + b"]" + a6 + b"," + a7
    width = max(int(length.max(initial=0)), len(pre) + len(mid) + len(post) + 2) + 1
    window = _window(buf, at, width)
    digit = (window >= ord("0")) & (window <= ord("9"))
    ok = _expect(window, np.zeros(len(window), np.int64), pre)
    start = np.full(len(window), len(pre))
    end = start + np.argmin(digit[:, len(pre) :], axis=1)
    ok &= _expect(window, end, mid)
    start2 = end + len(mid)
    end2 = np.argmax(~digit & (_cols(width) >= start2[:, None]), axis=1)
    ok &= _expect(window, end2, post) & (end2 + len(post) == length)
    offsets, ok1 = _number(buf, at + start, end - start)
    sizes, ok2 = _number(buf, at + start2, end2 - start2)
    return offsets, sizes, ok & ok1 & ok2


def _expect(window: np.ndarray, at: np.ndarray, text: bytes) -> np.ndarray:
    """Whether each row holds ``text`` from column ``at``."""
    rows, last = np.arange(len(window)), window.shape[1] - 1
    ok = np.ones(len(window), bool)
    for k, ch in enumerate(text):
        ok &= window[rows, np.minimum(at + k, last)] == ch
    return ok


def _rest(buf, n, strings, key, offsets, sizes, hashes, location) -> Split | None:
    """The document without the runs of plain references starting at strings ``key``,
    parsed, and checked: each run sits right before a reference key, no key appears twice."""
    opens, closes = strings
    run = np.concatenate([[True], np.diff(key) != 2])
    last = key[np.concatenate([run[1:], [True]])]
    cuts = np.column_stack([opens[key[run]], opens[last + 2]])
    bounds = np.concatenate([[0], cuts.ravel(), [n]]).reshape(-1, 2)
    text = memoryview(buf)
    rest = b"".join(text[a:b] for a, b in bounds.tolist())
    try:
        data = loads(rest)
    except (ValueError, RecursionError):
        return None  # the caller parses the whole text and reports it
    if not isinstance(data, dict) or "gen" in data or "templates" in data:
        return None
    arr = np.frombuffer(rest, np.uint8)
    st = structure(arr)
    top, inner = members(st, arr, data)
    refs = data if inner is None else data["refs"]
    inner = top if inner is None else inner
    if len(top) != len(data):
        _refuse_twice([_decoded(arr, st, int(i)) for i in top], location)
    if len(inner) != len(refs):
        _refuse_twice([_decoded(arr, st, int(i)) for i in inner], location)
    after = last + 2 - 2 * np.searchsorted(key, last + 2)  # string numbers in the rest
    if not np.isin(after, inner).all():
        return None
    urls, url_ids = url_table(buf, opens[key + 1] + 1, closes[key + 1] - opens[key + 1] - 1)
    starts = np.cumsum(bounds[:, 1] - bounds[:, 0]) - (bounds[:, 1] - bounds[:, 0])
    at = st.opens[inner]
    seg = np.searchsorted(starts, at, side="right") - 1
    chunks = ChunkRefs(
        buf, opens[key] + 1, closes[key] - opens[key] - 1, urls, url_ids, offsets, sizes,
        bounds[seg, 0] + at - starts[seg],
    )  # fmt: skip
    _plain_duplicates(chunks, hashes, list(refs), location)
    return Split(data, chunks)


def url_table(buf: np.ndarray, at: np.ndarray, length: np.ndarray) -> tuple[list[str], np.ndarray]:
    """The distinct urls ``buf[at:at + length]`` (plain ASCII) in order of first use, and
    each one's number. Only a url that differs from the one before it is decoded."""
    same = np.zeros(len(at), bool)
    for s in range(1, len(at), BLOCK):
        part = slice(s - 1, min(s + BLOCK, len(at)))
        width = -(-int(length[part].max()) // 8) * 8
        window = _window(buf, at[part], width)
        words = np.where(_cols(width) < length[part][:, None], window, 0).view(np.uint64)
        equal = (words[1:] == words[:-1]).all(axis=1)
        same[s : s + len(equal)] = equal & (length[part][1:] == length[part][:-1])
    heads = np.flatnonzero(~same)
    table: dict[str, int] = {}
    pairs = zip(at[heads].tolist(), length[heads].tolist(), strict=True)
    names = (buf[a : a + m].tobytes().decode("ascii") for a, m in pairs)
    ids = np.fromiter((table.setdefault(u, len(table)) for u in names), np.int32, len(heads))
    return list(table), ids[np.cumsum(~same) - 1]


def _plain_duplicates(chunks: ChunkRefs, hashes: np.ndarray, others: list[str], location: str):
    """Refuse a plain key that appears twice, or also among the other references ``others``."""
    other = [k.encode() for k in others if len(k) <= KEY_MAX]
    if other:
        width = -(-max(map(len, other)) // 8) * 8
        window = np.frombuffer(b"".join(k.ljust(width, b"\0") for k in other), np.uint8)
        window = window.reshape(len(other), width)
        lengths = np.fromiter(map(len, other), np.int64, len(other))
        hashes = np.concatenate([hashes, hash_rows(window, lengths)])
    order = np.argsort(hashes, kind="stable")
    same = np.flatnonzero(hashes[order[1:]] == hashes[order[:-1]])
    n = len(chunks.key_at)

    def name(i: int) -> str:
        return chunks.key(i) if i < n else other[i - n].decode()

    for i in same.tolist():  # a hash collision is not a duplicate: compare the keys
        a, b = name(int(order[i])), name(int(order[i + 1]))
        if a == b:
            raise IndexLoadError(f"index {location}: reference {a!r:.80} appears twice")
