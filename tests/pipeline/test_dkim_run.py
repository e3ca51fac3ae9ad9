"""A DKIM-signed run: every digest the SMTP server received carries an RSA and an Ed25519 signature, and
dkimpy verifies both on the bytes as received (nothing in transit may change what was signed)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import dkim
from dkim import dknewkey
from pipeline_helpers import DAY, make_config, subscribe

from digest.mailer import SmtpPool
from digest.pipeline import RunOptions, run_digest
from digest.store import db


async def test_every_mail_of_a_signed_run_verifies_with_both_signatures(
    tmp_path: Path, hf: Any, smtp_server: Any
) -> None:
    rsa_key, rsa_dns, ed_key, ed_dns = (tmp_path / n for n in ("rsa.key", "rsa.dns", "ed.key", "ed.dns"))
    dknewkey.GenRSAKeys(str(rsa_key), verbose=False)
    dknewkey.ExtractRSADnsPublicKey(str(rsa_key), str(rsa_dns), verbose=False)
    dknewkey.ExtractEd25519PublicKey(
        str(ed_dns), dknewkey.GenEd25519Keys(str(ed_key), verbose=False), verbose=False
    )
    records = {
        b"s1._domainkey.example.org.": rsa_dns.read_bytes(),
        b"s2._domainkey.example.org.": ed_dns.read_bytes(),
    }

    server = smtp_server()
    config = make_config(
        tmp_path,
        hf_url=hf.base_url,
        smtp_port=server.port,
        digest={
            "dkim_key_file": str(rsa_key),
            "dkim_selector": "s1",
            "dkim_domain": "example.org",
            "dkim_ed25519_key_file": str(ed_key),
            "dkim_ed25519_selector": "s2",
        },
    )
    engine = db.open_database(config.database_url)
    for i, rule in enumerate(["agent*", "video OR diffusion", "model*", "title:video", "benchmark*"]):
        subscribe(engine, f"reader{i}@example.org", rule)
    async with SmtpPool(server.settings(pool_size=3)) as pool:
        report = await run_digest(config, engine, DAY, pool, options=RunOptions(retry_base_s=0.05))
    engine.dispose()

    assert report.status == "done" and report.sent == len(server.messages) >= 4
    for received in server.messages:
        raw = received.data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        assert [a for a in re.findall(rb"a=([a-z0-9-]+);", raw)] == [b"rsa-sha256", b"ed25519-sha256"]
        d = dkim.DKIM(raw)
        assert d.verify(idx=0, dnsfunc=lambda name, timeout=5: records.get(name, b""))
        assert d.verify(idx=1, dnsfunc=lambda name, timeout=5: records.get(name, b""))
