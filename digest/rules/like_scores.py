"""What the matcher asks of ``like:`` rules: similarities of its papers to liked papers.

The semantic index (digest.rules.semantic) answers; the matcher only needs this interface, so the base
install (without the semantic extra) never imports the models.
"""

from __future__ import annotations

from typing import Protocol

from digest.rules.nodes import Like

__all__ = ["LikeScores", "like_text"]


class LikeScores(Protocol):
    """Similarities of the matcher's papers to liked papers (built by digest.rules.semantic).

    Paper ``i`` is the matcher's ``papers[i]``; a liked paper that is unknown matches nothing.
    """

    def bits(self, liked_id: str) -> int:
        """The papers at or above the threshold for ``liked_id``, as a bitset."""
        ...

    def score(self, liked_id: str, index: int) -> float:
        """The cosine similarity of ``papers[index]`` to the liked paper."""
        ...

    def title(self, liked_id: str) -> str:
        """The liked paper's title (for explanations)."""
        ...


def like_text(likes: LikeScores, node: Like, index: int) -> str:
    """The explanation of a like: match: 'similar to «Title» (0.71)'."""
    return f"similar to «{likes.title(node.paper_id)}» ({likes.score(node.paper_id, index):.2f})"
