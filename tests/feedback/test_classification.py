"""Bounce and complaint messages of several MTAs are read right: who failed, how badly, and why."""

from __future__ import annotations

import pytest
from feedback_helpers import sample, settings, verp

from digest.feedback import Settings, classify, verp_delivery_id

CASES = [
    # file, failed address, kind, words of the reason
    ("postfix-3.7-user-unknown.eml", "ghost@users.example.net", "hard", "550 5.1.1"),
    ("postfix-3.7-mailbox-full.eml", "full@users.example.net", "soft", "4.2.2"),
    ("gmail-address-not-found.eml", "no.such.person@gmail.com", "hard", "NoSuchUser"),
    (
        "exchange-online-recipient-not-found.eml",
        "ghost@contoso.com",
        "hard",
        "5.1.10 RESOLVER.ADR.RecipientNotFound",
    ),
    ("exchange-online-mailbox-full.eml", "full@contoso.com", "soft", "5.2.2 mailbox full"),
    ("exim-4.96-unrouteable.eml", "gone@example.net", "hard", "User unknown"),
    ("flufl-exim_01.eml", "delangen@its.tudelft.nl", "hard", "553 5.1.1"),
    ("flufl-microsoft_01.eml", "djbennett@ikon.com", "hard", "Undeliverable"),
]


@pytest.mark.parametrize(("name", "address", "kind", "reason"), CASES)
def test_each_mtas_bounce_names_the_failed_address_its_kind_and_reason(
    name: str, address: str, kind: str, reason: str
) -> None:
    verdict = classify(sample(name, 7), settings())

    assert verdict.kind == kind
    assert [f.email for f in verdict.failures] == [address]
    assert reason in verdict.failures[0].reason


@pytest.mark.parametrize(
    "name",
    [
        "postfix-3.7-user-unknown.eml",
        "gmail-address-not-found.eml",
        "exchange-online-recipient-not-found.eml",
        "exim-4.96-unrouteable.eml",
    ],
)
def test_the_verp_address_names_the_delivery(name: str) -> None:
    assert classify(sample(name, 4242), settings()).delivery_id == 4242


def test_an_arf_report_is_a_complaint_about_the_original_recipient() -> None:
    verdict = classify(sample("arf-abuse-complaint.eml", 9), settings())

    assert verdict.kind == "complaint"
    assert verdict.failures[0].email == "ada@users.example.net"
    assert verdict.delivery_id == 9  # from Original-Mail-From
    assert "abuse" in verdict.failures[0].reason


def test_an_arf_not_spam_report_is_no_complaint() -> None:
    raw = sample("arf-abuse-complaint.eml", 9).replace(b"Feedback-Type: abuse", b"Feedback-Type: not-spam")
    assert classify(raw, settings()).kind == "ignored"


def test_a_forged_or_foreign_verp_token_names_no_delivery() -> None:
    other = Settings(secret="another-key-" * 4, bounce_address="bounces@lists.example.org")
    assert verp_delivery_id(other, verp(5)) is None
    assert verp_delivery_id(settings(), verp(5).replace("bounces+5-", "bounces+6-")) is None
    assert verp_delivery_id(settings(), verp(5).replace("lists.example.org", "elsewhere.test")) is None
    assert verp_delivery_id(settings(), verp(5).upper()) == 5, "an MTA may change the case of the address"


def test_a_mangled_bounce_to_a_verp_address_counts_as_soft_for_that_delivery() -> None:
    raw = (
        f"From: MAILER-DAEMON@mx.example.net\r\nTo: {verp(31)}\r\nSubject: failure notice\r\n\r\n"
        "Sorry, we could not deliver your message. Try again never.\r\n"
    ).encode()
    verdict = classify(raw, settings())
    assert (verdict.kind, verdict.delivery_id) == ("soft", 31)


def test_garbage_and_vacation_replies_are_not_bounces() -> None:
    assert classify(b"\x00\xff not a mail at all", settings()).kind == "unreadable"
    assert (
        classify(b"Subject: hello\r\n\r\nplain mail to the bounce address\r\n", settings()).kind
        == "unreadable"
    )
    vacation = f"From: bob@example.net\r\nTo: {verp(3)}\r\nAuto-Submitted: auto-replied\r\nSubject: Out of office\r\n\r\nAway.\r\n"
    assert classify(vacation.encode(), settings()).kind == "ignored"


def test_a_detector_that_chokes_on_a_message_does_not_lose_what_verp_says() -> None:
    # No From: header: one of Mailman's heuristic detectors raises on it.
    raw = f"To: {verp(8)}\r\nSubject: returned mail\r\n\r\nsomething went wrong\r\n".encode()
    verdict = classify(raw, settings())
    assert (verdict.kind, verdict.delivery_id) == ("soft", 8)
