"""The web preview shows only papers a digest could carry: `source.min_upvotes` applies to it too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from web_helpers import make_config

from digest.demo.smtp_sink import SmtpSink


async def test_the_web_preview_leaves_out_papers_under_min_upvotes(
    web_factory: Any, sink: SmtpSink, tmp_path: Path
) -> None:
    config = make_config(tmp_path, sink.port, source={"min_upvotes": 20})
    web = await web_factory(config=config)
    fragment = await web.client.get("/preview", params={"rules": "diffusion"})
    assert fragment.status_code == 200
    assert "Video Diffusion Models at Scale" in fragment.text  # 42 upvotes
    assert "Flow Matching for Images" not in fragment.text  # 19 upvotes: it would never be mailed
