"""The paper source: Hugging Face Daily Papers over HTTP (JSON API, HTML fallback).

``fetch_day`` / ``fetch_days`` fetch and normalise; ``papers_from_api_json`` parses a saved API response.
"""

from digest.sources.hf_api import (
    FetchBatch,
    FetchResult,
    fetch_day,
    fetch_days,
    merge_papers,
    papers_from_api_json,
    papers_from_file,
)
from digest.sources.http import RetryPolicy

__all__ = [
    "FetchBatch",
    "FetchResult",
    "RetryPolicy",
    "fetch_day",
    "fetch_days",
    "merge_papers",
    "papers_from_api_json",
    "papers_from_file",
]
