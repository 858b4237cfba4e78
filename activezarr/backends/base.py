"""What every backend receives and returns: a ``Job`` split into ``ChunkBatch`` units.

A ``Job`` is what does not change from chunk to chunk (URLs, codecs, dtype, missing rule,
reduction); a ``ChunkBatch`` is a set of plan rows with their byte ranges and selections. A
backend turns a batch into ``(output block, Partial)`` pairs; ``supports`` says which batches
it can take, and the caller gives the rest to the local backend.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

import numpy as np

from ..reduction.missing import MissingRule, Packing
from ..reduction.partials import Groups, Partial, ReductionSpec


@dataclass(frozen=True)
class Job:
    """The per-variable facts every chunk task shares."""

    variable: str
    source: str  # the index, for messages
    urls: tuple[str, ...]
    chunks: tuple[int, ...]
    raw_dtype: np.dtype  # as stored (byte order included)
    view_dtype: np.dtype  # the same bytes read as the storage dtype (_Unsigned applied)
    codecs: tuple[dict, ...]
    rule: MissingRule
    packing: Packing
    spec: ReductionSpec | None  # None when selecting data rather than reducing
    steps: tuple[int, ...]
    fill_value: object
    attrs: dict = field(default_factory=dict)
    fill: np.ndarray | None = None  # the value unwritten chunks hold, in view_dtype
    groups: Groups | None = None  # partials kept per group along one reduced dimension


@dataclass
class ChunkBatch:
    """Plan rows handled together; ``complete`` batches hold whole interior chunks only."""

    rows: np.ndarray
    url_ids: np.ndarray
    offsets: np.ndarray
    sizes: np.ndarray
    in_start: np.ndarray
    in_stop: np.ndarray
    out_start: np.ndarray
    out_stop: np.ndarray
    complete: bool
    inline: dict[int, bytes] = field(default_factory=dict)  # position in batch -> bytes

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def nbytes(self) -> int:
        return int(self.sizes.sum())

    def subset(self, keep: np.ndarray) -> ChunkBatch:
        """The rows where ``keep`` (bool or positions) selects."""
        positions = np.flatnonzero(keep) if keep.dtype == bool else keep
        inline = {i: self.inline[p] for i, p in enumerate(positions) if p in self.inline}
        return ChunkBatch(
            self.rows[positions],
            self.url_ids[positions],
            self.offsets[positions],
            self.sizes[positions],
            self.in_start[positions],
            self.in_stop[positions],
            self.out_start[positions],
            self.out_stop[positions],
            self.complete,
            inline,
        )


BlockPartial = tuple[tuple[slice, ...], Partial]


class Backend(abc.ABC):
    """Reduces chunk batches; one instance per ``Active``, closed with it."""

    name: str = "backend"

    def supports(self, job: Job, batch: ChunkBatch) -> np.ndarray:
        """A bool per row of ``batch``: can this backend reduce it."""
        return np.ones(len(batch), dtype=bool)

    @abc.abstractmethod
    def reduce(self, job: Job, batch: ChunkBatch, stats) -> list[BlockPartial]:
        """Partials of every row of ``batch`` (rows may be merged when they share a block).

        ``stats`` is a ``RunStats`` to count requests, retries and bytes into.
        """

    def close(self) -> None:
        """Release connections and files."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
