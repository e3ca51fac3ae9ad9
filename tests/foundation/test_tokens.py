"""Signed link tokens: one purpose each, tamper-proof, expiring as promised."""

from __future__ import annotations

import pytest
from freezegun import freeze_time
from itsdangerous import TimestampSigner

from digest.errors import TokenError
from digest.tokens import make_token, read_token

KEY = "k" * 48


def test_a_token_carries_the_subscriber_and_version() -> None:
    assert read_token(KEY, "unsubscribe", make_token(KEY, "unsubscribe", 42, 3)) == (42, 3)


def test_a_token_is_only_good_for_its_own_purpose() -> None:
    token = make_token(KEY, "manage", 42)
    with pytest.raises(TokenError, match="not valid"):
        read_token(KEY, "unsubscribe", token)


@pytest.mark.parametrize(
    "change",
    [
        lambda t: t[:-5] + ("A" if t[-5] != "A" else "B") + t[-4:],
        lambda t: "43" + t[2:],
        lambda t: t + "x",
        lambda t: "",
    ],
)
def test_a_damaged_or_forged_token_is_refused(change: object) -> None:
    token = make_token(KEY, "unsubscribe", 42)
    with pytest.raises(TokenError):
        read_token(KEY, "unsubscribe", change(token))  # type: ignore[operator]


def test_another_key_cannot_make_valid_tokens() -> None:
    with pytest.raises(TokenError):
        read_token(KEY, "unsubscribe", make_token("x" * 48, "unsubscribe", 42))


def test_confirm_links_expire_after_three_days_and_unsubscribe_links_live_past_sixty() -> None:
    with freeze_time("2026-01-01 00:00:00"):
        confirm = make_token(KEY, "confirm", 1)
        unsubscribe = make_token(KEY, "unsubscribe", 1)
    with freeze_time("2026-01-03 23:00:00"):
        assert read_token(KEY, "confirm", confirm) == (1, 0)
    with freeze_time("2026-01-04 00:00:01"), pytest.raises(TokenError, match="expired"):
        read_token(KEY, "confirm", confirm)
    with freeze_time("2026-03-15 00:00:00"):  # 73 days later
        assert read_token(KEY, "unsubscribe", unsubscribe) == (1, 0)


def test_a_signed_token_with_an_absurd_id_is_refused_not_a_crash() -> None:
    from itsdangerous import TimestampSigner

    token = TimestampSigner(KEY, salt="paper-digest/unsubscribe").sign("9" * 40 + ".0").decode()
    with pytest.raises(TokenError):
        read_token(KEY, "unsubscribe", token)


def test_the_refusal_says_why_in_a_field_not_only_in_its_text() -> None:
    with freeze_time("2026-01-01 00:00:00"):
        confirm = make_token(KEY, "confirm", 1)
    with freeze_time("2026-01-05 00:00:00"), pytest.raises(TokenError) as expired:
        read_token(KEY, "confirm", confirm)
    assert expired.value.reason == "expired"
    with pytest.raises(TokenError) as forged:
        read_token(KEY, "confirm", confirm + "x")
    assert forged.value.reason == "invalid"
    assert TokenError("any words at all", "replaced").reason == "replaced"


@pytest.mark.parametrize("purpose", ["manage", "unsubscribe", "more"])
def test_links_signed_by_plain_itsdangerous_still_open_and_ours_verify_there(purpose: str) -> None:
    # Our signer derives its key once and uses OpenSSL's HMAC: the signatures must stay the same.
    plain = TimestampSigner(KEY, salt=f"paper-digest/{purpose}")
    earlier = plain.sign("42.3").decode("ascii")
    assert read_token(KEY, purpose, earlier) == (42, 3)  # type: ignore[arg-type]
    assert plain.unsign(make_token(KEY, purpose, 42, 3)) == b"42.3"  # type: ignore[arg-type]
