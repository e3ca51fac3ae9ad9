"""The web form's mails (confirmation, welcome) take the one service-mail path: DKIM-signed like a digest,
verified by dkimpy against the public key of a key pair made for the test."""

from __future__ import annotations

from pathlib import Path

import dkim
import pytest
from dkim_keys import rsa_key_pair
from web_helpers import BASE, Web, links_in, make_config


@pytest.fixture
def dkim_key(tmp_path: Path) -> tuple[Path, bytes]:
    return rsa_key_pair(tmp_path)


async def test_the_confirmation_and_welcome_mails_of_the_web_form_are_dkim_signed(
    web_factory: object, dkim_key: tuple[Path, bytes], tmp_path: Path
) -> None:
    key, txt = dkim_key
    probe = await web_factory()  # type: ignore[operator]
    digest = {
        "list_id": "paper-digest.example.org",
        "admin_email": "ops@example.org",
        "dkim_key_file": str(key),
        "dkim_selector": "mail",
        "dkim_domain": "example.org",
    }
    config = make_config(tmp_path, probe.sink.port, digest=digest, web={"base_url": BASE})
    web: Web = await web_factory(config=config)  # type: ignore[operator]
    await web.subscribe("ann@example.org", "diffusion")
    (confirmation,) = web.new_mail()
    await web.confirm(links_in(confirmation)["confirm"])
    (welcome,) = web.new_mail()

    def dns(name: bytes, timeout: int = 5) -> bytes:
        return txt if name == b"mail._domainkey.example.org." else b""

    for mail in (confirmation, welcome):
        assert mail.data.startswith(b"DKIM-Signature: ")
        assert dkim.verify(mail.data, dnsfunc=dns)
        assert mail.message["List-Unsubscribe"].startswith(f"<{BASE}/u/")
