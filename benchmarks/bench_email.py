"""Benchmark: render + build one 20-paper digest message (DESIGN.md section 11: <= 1 ms per message).

Standalone: ``python benchmarks/bench_email.py [--quick]``. Papers come from the captured HF days in
../shared/fixtures/hf (the bundled digest/demo_data copy when that is missing). Two numbers are printed:

- warm: a run where subscribers share papers, so each paper's block is rendered once per run and reused
  (the production case: the paper-block cache in digest.render);
- cold: every paper block rendered from scratch for every message (no sharing at all: the worst case).
"""

from __future__ import annotations

import argparse
import binascii
import json
import sys
import tempfile
import time
import timeit
from datetime import UTC, date, datetime
from pathlib import Path

from digest.message import DkimSigner, Envelope, _base64_body, build_message
from digest.models import Explanation, MatchedPaper, Paper, Rule, Span
from digest.render import DigestContext, clear_caches, render_digest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = (ROOT.parent / "shared" / "fixtures" / "hf", ROOT / "digest" / "demo_data")


def _papers(count: int) -> list[MatchedPaper]:
    """``count`` real papers, each with a one-word explanation and a highlight in its title."""
    out: list[MatchedPaper] = []
    for folder in SOURCES:
        for path in sorted(folder.glob("api_daily_papers_date-*.json")):
            for item in json.loads(path.read_text("utf-8")):
                p = item["paper"]
                title = " ".join(p["title"].split())
                word = title.split()[0]
                paper = Paper(
                    id=p["id"],
                    title=title,
                    summary=" ".join(p["summary"].split()),
                    daily_date=date(2026, 8, 21),
                    authors=tuple(a["name"] for a in p.get("authors", [])),
                    upvotes=int(p.get("upvotes", 0)),
                    num_comments=int(item.get("numComments", 0)),
                    ai_summary=p.get("ai_summary"),
                    github_repo=p.get("githubRepo"),
                    project_page=p.get("projectPage"),
                    organization=(item.get("organization") or {}).get("fullname"),
                )
                rule = ("agents", "diffusion")[len(out) % 2]
                why = Explanation(
                    rule=rule, terms=(word.lower(),), fields=("title",), spans=(Span("title", 0, len(word)),)
                )
                out.append(MatchedPaper(paper=paper, why=(why,)))
                if len(out) == count:
                    return out
        if out:
            break
    raise SystemExit(f"only {len(out)} papers found in {SOURCES}")


def _one(ctx: DigestContext, when: datetime) -> bytes:
    rendered = render_digest(ctx)
    return build_message(
        rendered,
        Envelope(
            sender="Paper Digest <digest@example.org>",
            recipient=ctx.recipient,
            list_id="paper-digest.example.org",
            unsubscribe_url=ctx.unsubscribe_url,
            unsubscribe_mailto="mailto:unsubscribe@example.org?subject=unsubscribe",
            date=when,
        ),
    )


def _dkim_cost(ctx: DigestContext, when: datetime, n: int) -> dict[str, float]:
    """Extra ms per message for DKIM signing: RSA-SHA256 (2048 bits), and RSA + Ed25519 together."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    with tempfile.TemporaryDirectory() as folder:
        key, ed = Path(folder) / "bench.key", Path(folder) / "ed.key"
        key.write_bytes(
            rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        ed.write_bytes(
            ed25519.Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        signers = {
            "rsa-sha256": DkimSigner.from_file(key, "bench", "example.org"),
            "rsa-sha256 + ed25519-sha256": DkimSigner.from_file(
                key, "bench", "example.org", ed25519_path=ed, ed25519_selector="ed"
            ),
        }
    raw = _one(ctx, when)
    out = {}
    for name, signer in signers.items():
        start = time.perf_counter()
        for _ in range(n):
            signer.sign(raw)
        out[name] = (time.perf_counter() - start) / n * 1000
    return out


def _encodings(ctx: DigestContext, n: int) -> None:
    """base64 (what we send) vs quoted-printable for the two parts: size on the wire and encoding time."""
    rendered = render_digest(ctx)
    for part, text in (("html", rendered.html), ("text", rendered.text)):
        data = text.encode("utf-8")
        timings = {}
        for name, encode in (
            ("base64", lambda text=text: _base64_body(text)),
            (
                "quoted-printable",
                lambda data=data: binascii.b2a_qp(data.replace(b"\n", b"\r\n"), istext=True),
            ),
        ):
            size = len(encode())
            best = min(timeit.repeat(encode, number=n, repeat=5)) / n * 1e6
            timings[name] = (size, best)
        (b64_size, b64_us), (qp_size, qp_us) = timings["base64"], timings["quoted-printable"]
        print(
            f"{part} part, {len(data)} bytes decoded: base64 {b64_size} bytes in {b64_us:.0f} us; "
            f"quoted-printable {qp_size} bytes ({qp_size / b64_size:.2f}x) in {qp_us:.0f} us ({qp_us / b64_us:.1f}x)"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run)")
    parser.add_argument("--papers", type=int, default=20)
    args = parser.parse_args()
    n = 200 if args.quick else 3000
    ctx = DigestContext(
        recipient="ada@example.org",
        name="Ada",
        run_date=date(2026, 8, 21),
        papers=_papers(args.papers),
        rules=(Rule("agent*", name="agents"), Rule("diffusion")),
        manage_url="https://digest.example.org/manage/TOKEN",
        unsubscribe_url="https://digest.example.org/u/TOKEN",
        postal_address="Paper Digest, 1 Example Street, 75001 Paris",
    )
    when = datetime(2026, 8, 21, 7, tzinfo=UTC)
    size = len(_one(ctx, when))

    results = {}
    for mode in ("warm", "cold"):
        for _ in range(n // 10):  # warm-up
            if mode == "cold":
                clear_caches()
            _one(ctx, when)
        start = time.perf_counter()
        for _ in range(n):
            if mode == "cold":
                clear_caches()
            _one(ctx, when)
        elapsed = time.perf_counter() - start
        results[mode] = elapsed / n
    for mode, per in results.items():
        print(
            f"{mode:>4}: {1 / per:8.0f} messages/s  {per * 1000:.3f} ms/message  ({args.papers} papers, {size} bytes)"
        )
    for name, ms in _dkim_cost(ctx, when, 20 if args.quick else 200).items():
        print(f"DKIM signing ({name}, RSA 2048 bits, relaxed/relaxed) adds {ms:.3f} ms/message")
    _encodings(ctx, 20 if args.quick else 200)
    ok = results["warm"] <= 0.001
    print(f"target <= 1 ms/message (warm, the production path): {'met' if ok else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
