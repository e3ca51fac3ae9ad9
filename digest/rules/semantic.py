"""The pure part of ``like:`` rules: cosine similarities of a window's papers to every liked paper at once.

Embeddings are unit-length float32 vectors (digest.embeddings makes them), so the cosine is a dot product
and the whole day is one matrix product: (liked papers x dim) @ (dim x window papers). Each liked paper's
row then becomes a bitset of the papers at or above the threshold, and a subscriber's ``like:`` rule is a
dictionary lookup in the BatchMatcher, whatever the number of subscribers. No I/O here; numpy comes with
the ``semantic`` extra, so only code that runs when the extra is on imports this module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float32]

#: all-MiniLM-L6-v2 gives 384 numbers per text.
DIMENSIONS = 384


def to_bytes(vector: Vector) -> bytes:
    """The float32 little-endian bytes kept in ``paper.embedding``."""
    return np.asarray(vector, dtype="<f4").tobytes()


def from_bytes(blob: bytes) -> Vector:
    """A vector back from ``paper.embedding`` bytes."""
    return np.frombuffer(blob, dtype="<f4").astype(np.float32)


@dataclass(frozen=True, slots=True)
class Liked:
    """A paper someone liked: its title (for explanations) and its embedding."""

    title: str
    vector: Vector


class SemanticIndex:
    """Similarities of ``window`` papers (in the BatchMatcher's order) to every liked paper.

    ``window_vectors[i]`` belongs to the matcher's ``papers[i]``; a row of None (a paper not embedded
    yet) is never similar to anything. Satisfies digest.rules.like_scores.LikeScores.
    """

    def __init__(
        self,
        window_vectors: Sequence[Vector | None],
        liked: Mapping[str, Liked],
        threshold: float,
    ) -> None:
        self.threshold = threshold
        self._titles = {pid: item.title for pid, item in liked.items()}
        self._rows = {pid: row for row, pid in enumerate(liked)}
        n = len(window_vectors)
        window = np.zeros((n, DIMENSIONS), dtype=np.float32)
        present = np.zeros(n, dtype=bool)
        for i, vec in enumerate(window_vectors):
            if vec is not None:
                window[i] = vec
                present[i] = True
        likes = np.zeros((len(liked), DIMENSIONS), dtype=np.float32)
        for row, item in enumerate(liked.values()):
            likes[row] = item.vector
        # The one matrix product: every liked paper against every paper of the window.
        self.scores: npt.NDArray[np.float32] = likes @ window.T
        hits = (self.scores >= np.float32(threshold)) & present
        # Each row as a Python int bitset (bit i = paper i), the BatchMatcher's currency.
        packed = np.packbits(hits, axis=1, bitorder="little")
        self._bits = {pid: int.from_bytes(packed[row].tobytes(), "little") for pid, row in self._rows.items()}

    def bits(self, liked_id: str) -> int:
        """The window papers at or above the threshold for ``liked_id`` (0 when it is unknown)."""
        return self._bits.get(liked_id, 0)

    def score(self, liked_id: str, index: int) -> float:
        """The cosine similarity of window paper ``index`` to ``liked_id``."""
        row = self._rows.get(liked_id)
        return float(self.scores[row, index]) if row is not None else 0.0

    def title(self, liked_id: str) -> str:
        """The liked paper's title, or its id when it is unknown."""
        return self._titles.get(liked_id, liked_id)

    def nearest(self, liked_id: str, count: int) -> list[tuple[int, float]]:
        """The ``count`` most similar window papers to ``liked_id``: (index, score), best first."""
        row = self._rows.get(liked_id)
        if row is None:
            return []
        scores = self.scores[row]
        order = np.argsort(-scores, kind="stable")[:count]
        return [(int(i), float(scores[i])) for i in order]
