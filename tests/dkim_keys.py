"""DKIM key pairs made with dkimpy's own generator (what an operator runs), for the signing tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from dkim import dknewkey


def rsa_key_pair(folder: Path, name: str = "mail") -> tuple[Path, bytes]:
    """A fresh RSA key pair in ``folder``: (private key file, the DNS TXT record to publish)."""
    key, dns = folder / f"{name}.key", folder / f"{name}.dns"
    dknewkey.GenRSAKeys(str(key), verbose=False)
    dknewkey.ExtractRSADnsPublicKey(str(key), str(dns), verbose=False)
    return key, dns.read_bytes()


@pytest.fixture(scope="module")
def dkim_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """One RSA key pair for the module's tests: (private key file, DNS TXT record)."""
    return rsa_key_pair(tmp_path_factory.mktemp("dkim"))
