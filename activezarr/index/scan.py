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

import json
import re
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import IndexLoadError
from .jsontext import loads

SMALL = 1 << 16  # shorter texts are parsed whole (parse_small)
PAD = 512  # bytes after the text: windows may read past the end of the last reference
KEY_MAX = 96  # longer keys, urls and gaps stay in the rest (parsed as JSON)
URL_MAX = 256
GAP_MAX = 96
DIGITS_MAX = 18  # offsets and lengths below 10**18 (beyond: the JSON parser's errors)
TOP_NAMES = ("version", "refs", "templates", "gen", "activezarr")  # members of a version 1 text
BLOCK = 1 << 14  # references checked at a time (bounds the window matrices)
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
    """Plain references of one document: the i-th key is ``key_rows[i, :key_len[i]]``
    (ASCII, no escapes, not a metadata key) at ``key_at[i]`` in the text, its reference
    ``[urls[url_ids[i]], offsets[i], sizes[i]]``. ``member_at`` gives the text positions of
    the references left in the parsed rest (their order in the document among these)."""

    key_at: np.ndarray  # int32
    key_len: np.ndarray  # int32
    urls: list[str]
    url_ids: np.ndarray  # int32
    offsets: np.ndarray  # int64, >= 0
    sizes: np.ndarray  # int64, >= 0
    member_at: np.ndarray  # int64
    key_rows: np.ndarray  # uint8, one zero-padded key a row

    def key(self, row: int) -> str:
        return self.key_rows[row, : self.key_len[row]].tobytes().decode("ascii")

    def has_key(self, name: str) -> bool:
        raw = np.frombuffer(name.encode(), np.uint8)
        if raw.size > self.key_rows.shape[1]:
            return False
        return bool(
            (~_any_rows(self.key_rows[:, : raw.size] != raw) & (self.key_len == raw.size)).any()
        )

    def keys(self) -> list[str]:
        """Every key, in order (one string each: for callers that want a plain dict)."""
        if not len(self.key_at):
            return []
        rows = np.concatenate([self.key_rows, np.zeros((len(self.key_at), 1), np.uint8)], 1)
        rows[np.arange(len(rows)), self.key_len] = ord("\n")
        keep = _cols(rows.shape[1]) <= self.key_len[:, None]
        return rows[keep].tobytes().decode("ascii").split("\n")[:-1]

    def rows_for(self, prefix: str | None) -> np.ndarray:
        """Rows whose key starts with ``prefix``; ``None``: keys without a "/" (the root array)."""
        if prefix is None:
            return np.flatnonzero(~_any_rows(self.key_rows == ord("/")))
        raw = np.frombuffer(prefix.encode(), np.uint8)
        if raw.size > self.key_rows.shape[1]:
            return np.zeros(0, np.int64)
        match = ~_any_rows(self.key_rows[:, : raw.size] != raw)
        return np.flatnonzero(match & (self.key_len >= raw.size))

    def chunk_ids(self, rows: np.ndarray, cut: int, sep: str, grid: tuple[int, ...]):
        """Flat chunk numbers (C order over ``grid``) of the keys of ``rows`` after their
        first ``cut`` bytes, and which lie inside the grid; the first bad row if a key is not
        a chunk key (``coords``). A block of rows at a time."""
        shape = np.array(grid or (1,), np.int64)
        strides = np.concatenate([np.cumprod(shape[:0:-1])[::-1], [1]]) if grid else np.zeros(1)
        flat, inside = np.zeros(len(rows), np.int64), np.zeros(len(rows), bool)
        for s in range(0, len(rows), 4 * BLOCK):
            part = slice(s, s + 4 * BLOCK)
            coords = self.coords(rows[part], cut, sep, len(shape))
            if not isinstance(coords, np.ndarray):
                return coords
            inside[part] = ~_any_rows(coords >= shape)
            flat[part] = coords @ strides.astype(np.int64)  # past the grid: wrong, not used
        return flat, inside

    def coords(self, rows: np.ndarray, cut: int, sep: str, ndim: int) -> np.ndarray | int:
        """Chunk coordinates (``len(rows)`` × ``ndim``) of the keys of ``rows`` after their
        first ``cut`` bytes: canonical integers joined by ``sep``; else the first bad row."""
        every = len(rows) == len(self.key_at)  # rows is all of them, in order: no copy
        keys = self.key_rows if every else self.key_rows[rows]
        other = np.ones(256, bool)
        other[[0, ord(sep), *range(ord("0"), ord("9") + 1)]] = False
        suffix = _cols(keys.shape[1]) >= cut
        split = (keys == ord(sep)) & suffix
        length = self.key_len[rows] - cut
        bad = _any_rows(other[keys] & suffix) | (_count_rows(split) != ndim - 1) | (length < 1)
        if bad.any():
            return int(rows[np.argmax(bad)])
        at = np.flatnonzero(split.ravel()).reshape(len(rows), ndim - 1) % split.shape[1]
        starts = np.concatenate([np.full((len(rows), 1), cut), at + 1], axis=1)
        ends = np.concatenate([at, length[:, None] + cut], axis=1)
        flat = keys.reshape(-1)
        base = np.arange(len(rows)) * keys.shape[1]
        value = np.zeros((len(rows), ndim), np.int64)
        for j in range(ndim):
            digits = ends[:, j] - starts[:, j]
            lead = flat[base + starts[:, j]] == ord("0")
            wrong = (digits < 1) | (digits > DIGITS_MAX) | (lead & (digits > 1))
            if wrong.any():
                return int(rows[np.argmax(wrong)])
            for k in range(int(digits.max())):
                digit = flat[base + np.maximum(ends[:, j] - 1 - k, 0)].astype(np.int64) - 48
                value[:, j] += np.where(k < digits, digit * 10**k, 0)
        return value


def _cols(width: int) -> np.ndarray:
    return np.arange(width)[None, :]


def _words(mask: np.ndarray) -> np.ndarray:
    """A boolean matrix's rows as uint64 words (8 flags a word; padded with False): reducing a
    row then costs a few word operations, not one step per flag."""
    if mask.shape[1] % 8 or not mask.flags.c_contiguous:
        padded = np.zeros((len(mask), -(-mask.shape[1] // 8) * 8), bool)
        padded[:, : mask.shape[1]] = mask
        mask = padded
    return mask.view(np.uint64)


def _any_rows(mask: np.ndarray) -> np.ndarray:
    """``mask.any(axis=1)``, by words."""
    words = _words(mask)
    out = words[:, 0].copy() if words.shape[1] else np.zeros(len(mask), np.uint64)
    for j in range(1, words.shape[1]):
        out |= words[:, j]
    return out != 0


def _count_rows(mask: np.ndarray) -> np.ndarray:
    """``mask.sum(axis=1)``, by words."""
    words = np.bitwise_count(_words(mask))
    out = np.zeros(len(mask), np.int64)
    for j in range(words.shape[1]):
        out += words[:, j]
    return out


def _window(buf: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    """``buf[s:s + width]`` for each start, as rows of a matrix (one gather, no index matrix)."""
    return sliding_window_view(buf, max(width, 1))[starts]


def quotes(arr: np.ndarray) -> np.ndarray:
    """Positions of the quotes that open or close a string (not escaped by an odd run of
    backslashes)."""
    found, slashes = _positions(arr, ord('"')), _positions(arr, ord("\\"))
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
    keep = np.ones(len(found), bool)
    keep[after[(run_end[run] - run_start[run]) % 2 == 0]] = False
    return found[keep]


def _positions(arr: np.ndarray, byte: int, step: int = 1 << 20) -> np.ndarray:
    """Where ``arr`` holds ``byte`` (int32: texts are below 2 GiB), a MiB at a time (no
    temporary the size of the text)."""
    parts = [np.flatnonzero(arr[s : s + step] == byte).astype(np.int32) + np.int32(s)
             for s in range(0, len(arr), step)]  # fmt: skip
    return np.concatenate(parts) if parts else np.zeros(0, np.int32)


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


def members(st: Structure, arr: np.ndarray, data: dict):
    """String numbers of the top-level keys and of the reference keys of a parsed document,
    and its references: the top-level object in version 0 (as ``read_index`` tells them
    apart), else the ``refs`` object (None, None when it is not an object)."""
    top = np.flatnonzero(st.is_key & (st.depth == 1))
    if data.get("version") is None and not isinstance(data.get("refs"), dict):
        return top, top, data
    if not isinstance(data.get("refs"), dict):
        return top, None, None
    names = [_decoded(arr, st, int(i)) for i in top]
    at = top[len(names) - 1 - names[::-1].index("refs")]
    after = top[top > at]
    end = after[0] if len(after) else len(st.opens)
    inner = np.flatnonzero(st.is_key & (st.depth == 2))
    return top, inner[(inner > at) & (inner < end)], data["refs"]


def _decoded(arr: np.ndarray, st: Structure, i: int) -> str:
    return loads(arr[st.opens[i] : st.closes[i] + 1].tobytes())


def check_duplicates(arr: np.ndarray, data, location: str) -> None:
    """Refuse a parsed document (``arr`` its text) in which a top-level key or a reference
    key appears twice (the parsed objects then hold fewer keys than the text)."""
    if not isinstance(data, dict):
        return
    st = structure(arr)
    top, inner, refs = members(st, arr, data)
    if len(top) != len(data):
        _refuse_twice([_decoded(arr, st, int(i)) for i in top], location)
    if refs is not None and len(inner) != len(refs):
        _refuse_twice([_decoded(arr, st, int(i)) for i in inner], location)


class _Object(dict):
    """A parsed JSON object that names a key its text holds twice (None: none)."""

    twice: str | None = None


def _object(pairs: list[tuple[str, object]]) -> _Object:
    out = _Object(pairs)
    if len(out) < len(pairs):
        seen: set[str] = set()
        out.twice = next(k for k, _ in pairs if k in seen or seen.add(k))
    return out


def parse_small(text: bytes, location: str):
    """A short text parsed whole by the standard library (the scan's fixed cost is more
    than it saves), refused like ``check_duplicates`` refuses."""
    data = json.loads(text, object_pairs_hook=_object)
    if isinstance(data, dict):
        version0 = data.get("version") is None and not isinstance(data.get("refs"), dict)
        for parsed in (data, None if version0 else data.get("refs")):
            if isinstance(parsed, _Object) and parsed.twice is not None:
                raise IndexLoadError(f"index {location}: key {parsed.twice!r:.80} appears twice")
    return data


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
    if not key.size:
        return None
    found = _Found(buf, opens, closes, key)
    del key, q
    for s in range(0, len(found.key), BLOCK):
        found.check(s, min(s + BLOCK, len(found.key)), first.groups()[1:])
    return found.split(n, location)


class _Found:
    """The candidate references (strings ``key`` followed by the first reference's colon and
    a string), checked a block at a time."""

    def __init__(self, buf: np.ndarray, opens: np.ndarray, closes: np.ndarray, key: np.ndarray):
        self.buf, self.opens, self.closes, self.key = buf, opens, closes, key.astype(np.int32)
        key_len = closes[key] - opens[key] - 1
        width = -(-int(key_len[key_len <= KEY_MAX].max(initial=1)) // 8) * 8
        self.key_rows = np.zeros((len(key), width), np.uint8)
        self.ok = np.zeros(len(key), bool)
        self.same_url = np.zeros(len(key), bool)  # the url of the candidate before
        self.offsets = np.zeros(len(key), np.int64)
        self.sizes = np.zeros(len(key), np.int64)

    def _at(self, part: slice, string: int) -> tuple[np.ndarray, np.ndarray]:
        """Where the ``string``-th string of candidates ``part`` starts (after its quote) and
        how long it is."""
        at = self.opens[self.key[part] + string] + 1
        return at, self.closes[self.key[part] + string] - at

    def check(self, s: int, e: int, layout: tuple[bytes, ...]) -> None:
        """Check candidates ``s:e``: plain key, plain url, spacing of the numbers."""
        part = slice(s, e)
        (key_at, key_len), (url_at, url_len) = self._at(part, 0), self._at(part, 1)
        gap_at = self.closes[self.key[part] + 1] + 1
        gap_len = self.opens[self.key[part] + 2] - gap_at
        width = self.key_rows.shape[1]
        ok = (key_len >= 1) & (key_len <= width) & (gap_len <= GAP_MAX)
        ok &= (url_len >= 1) & (url_len <= URL_MAX)
        rows, plain = _key_rows(self.buf, key_at, np.minimum(key_len, width), width)
        self.key_rows[part] = rows
        gap = _gap(self.buf, gap_at, np.minimum(gap_len, GAP_MAX), layout)
        self.offsets[part], self.sizes[part] = gap[0], gap[1]
        self.ok[part] = ok & plain & gap[2]
        before = slice(max(s - 1, 0), e)  # the candidate before this block too
        url_at, url_len = self._at(before, 1)
        same = _same_as_before(self.buf, url_at, np.minimum(url_len, URL_MAX))
        self.same_url[s + (s == 0) : e] = same

    def split(self, n: int, location: str) -> Split | None:
        """The urls (a plain one decoded once per run of equal ones), then ``_rest``."""
        heads = np.flatnonzero(~self.same_url)
        at, length = self._at(heads, 1)
        length = np.minimum(length, URL_MAX)
        window = _window(self.buf, at, int(length.max()))
        plain = ~_any_rows(UNPLAIN[window] & (_cols(window.shape[1]) < length[:, None]))
        table: dict[str, int] = {}
        names = (self.buf[a : a + m].tobytes().decode("ascii") if p else None
                 for a, m, p in zip(at.tolist(), length.tolist(), plain.tolist(), strict=True))  # fmt: skip
        number = [table.setdefault(u, len(table)) if u is not None else -1 for u in names]
        url_ids = np.array(number, np.int32)[np.cumsum(~self.same_url) - 1]
        ok = np.flatnonzero(self.ok & (url_ids >= 0))
        if not ok.size:
            return None
        if ok.size == len(self.ok):  # all of them (the usual case): no copies
            ok = slice(None)
        key_at, key_len = self._at(ok, 0)
        chunks = ChunkRefs(
            key_at, key_len, list(table), url_ids[ok], self.offsets[ok], self.sizes[ok],
            np.zeros(0, np.int64), self.key_rows[ok],
        )  # fmt: skip
        buf, opens, key = self.buf, self.opens, self.key[ok]
        self.__dict__.clear()  # the candidates' arrays: not held while the rest is parsed
        hashes = hash_rows(chunks.key_rows, chunks.key_len)
        return _rest(buf, n, opens, key, chunks, hashes, location)


def _key_rows(buf: np.ndarray, at: np.ndarray, length: np.ndarray, width: int):
    """Each key ``buf[at:at + length]`` as a row of ``width`` zero-padded bytes, and whether
    it is plain: printable ASCII without backslashes (JSON reads it as written) and not a
    metadata key (no name starting with ".")."""
    window = _window(buf, at, width)
    inside = _cols(width) < length[:, None]
    ok = ~_any_rows(UNPLAIN[window] & inside) & (window[:, 0] != ord("."))
    slash, dot = _words((window == ord("/")) & inside), _words(window == ord("."))
    hits = (slash << np.uint64(8)) & dot  # a "." right after a "/" (flags are bytes)
    hits[:, 1:] |= (slash[:, :-1] >> np.uint64(56)) & dot[:, 1:]
    ok &= ~_any_rows(hits != 0)
    return np.where(inside, window, 0), ok


def _same_as_before(buf: np.ndarray, at: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Whether each string ``buf[at:at + length]`` but the first equals the one before it."""
    if length.size and length.min() == length.max():  # one length (the usual case): no mask
        window = _window(buf, at, int(length[0]))
        return ~_any_rows(window[1:] != window[:-1])
    width = -(-int(length.max(initial=1)) // 8) * 8
    window = _window(buf, at, width)
    words = np.where(_cols(width) < length[:, None], window, 0).view(np.uint64)
    return ~_any_rows(words[1:] != words[:-1]) & (length[1:] == length[:-1])


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
    offsets, end = _digits(buf, at + len(pre))
    sizes, end2 = _digits(buf, at + len(pre) + end + len(mid))
    ok = (end > 0) & (end2 > 0) & _holds(buf, at, pre) & _holds(buf, at + len(pre) + end, mid)
    tail = at + len(pre) + end + len(mid) + end2
    ok &= _holds(buf, tail, post) & (tail + len(post) == at + length)
    return offsets, sizes, ok


def _holds(buf: np.ndarray, at: np.ndarray, text: bytes) -> np.ndarray:
    """Whether ``text`` is at each position ``at`` of ``buf``."""
    window = _window(buf, at, len(text))
    ok = np.ones(len(at), bool)
    for k, ch in enumerate(text):
        ok &= window[:, k] == ch
    return ok


def _digits(buf: np.ndarray, at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The value of the canonical JSON integer at each position ``at`` of ``buf`` (1 to
    ``DIGITS_MAX`` digits, no leading zero) and its length (0 where there is none)."""
    window = _window(buf, at, DIGITS_MAX + 1)
    digit = (window >= ord("0")) & (window <= ord("9"))
    length = np.argmin(digit, axis=1)
    length[(window[:, 0] == ord("0")) & (length > 1)] = 0
    value = np.zeros(len(at), np.int64)
    for t in range(int(length.max(initial=0))):
        value = np.where(t < length, value * 10 + (window[:, t] - ord("0")), value)
    return value, length


def _rest(buf, n, opens, key, chunks: ChunkRefs, hashes, location: str) -> Split | None:
    """The document without the runs of plain references starting at strings ``key``,
    parsed, and checked: each run sits right before a reference key, no key appears twice."""
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
    top, inner, refs = members(st, arr, data)
    if refs is None or (refs is data and any(map(chunks.has_key, TOP_NAMES))):
        return None  # not references, or a plain member that reads as a version 1 name
    if len(top) != len(data):
        _refuse_twice([_decoded(arr, st, int(i)) for i in top], location)
    if len(inner) != len(refs):
        _refuse_twice([_decoded(arr, st, int(i)) for i in inner], location)
    after = last + 2 - 2 * np.searchsorted(key, last + 2)  # string numbers in the rest
    if not np.isin(after, inner).all():
        return None
    starts = np.cumsum(bounds[:, 1] - bounds[:, 0]) - (bounds[:, 1] - bounds[:, 0])
    at = st.opens[inner]
    seg = np.searchsorted(starts, at, side="right") - 1
    chunks.member_at = bounds[seg, 0] + at - starts[seg]
    _plain_duplicates(chunks, hashes, list(refs), location)
    return Split(data, chunks)


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
