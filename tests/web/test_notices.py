"""The service's own mails and the link helpers the web and the digest share."""

from __future__ import annotations

from email import message_from_bytes, policy
from pathlib import Path

from digest.config_load import parse_config
from digest.message import Envelope, build_message
from digest.models import Cadence, Rule, Subscriber, SubscriberStatus
from digest.notices import (
    confirm_url,
    manage_url,
    render_admin_alert,
    render_confirmation,
    render_reminder,
    render_welcome,
    unsubscribe_url,
)
from digest.tokens import read_token

SECRET = "notices-secret-key-notices-secret-key-000"
SUB = Subscriber(
    id=7,
    email="ann@example.org",
    rules=(Rule("diffusion"), Rule('title:"<b>agents</b>"')),
    name="Ann <script>",
    status=SubscriberStatus.PENDING,
    cadence=Cadence.WEEKLY,
    weekday=4,
    token_version=3,
)


def _config(tmp_path: Path):  # type: ignore[no-untyped-def]
    return parse_config({"web": {"base_url": "https://digest.example.org/"}}, tmp_path / "config.toml")


def test_links_carry_the_purpose_the_id_and_the_version(tmp_path: Path) -> None:
    config = _config(tmp_path)
    for helper, purpose, path in (
        (confirm_url, "confirm", "/confirm/"),
        (manage_url, "manage", "/manage/"),
        (unsubscribe_url, "unsubscribe", "/u/"),
    ):
        url = helper(config, SECRET, SUB)
        assert url.startswith("https://digest.example.org" + path)
        assert read_token(SECRET, purpose, url.rsplit("/", 1)[1]) == (7, 3)  # type: ignore[arg-type]


def test_the_confirmation_lists_the_rules_and_escapes_them_in_html(tmp_path: Path) -> None:
    from freezegun import freeze_time

    config = _config(tmp_path)
    with freeze_time("2026-03-02 09:30:00"):  # links carry a timestamp: sign them all in the same second
        mail = render_confirmation(config, SECRET, SUB)
        link = confirm_url(config, SECRET, SUB)
        assert unsubscribe_url(config, SECRET, SUB) in mail.text
    assert mail.subject == "Confirm your Paper digest subscription"
    assert '  - title:"<b>agents</b>"' in mail.text and link in mail.text
    assert "<b>agents" not in mail.html and "&lt;b&gt;agents" in mail.html
    assert "Ann &lt;script&gt;" in mail.html and "<script>" not in mail.html
    assert f'href="{link}"' in mail.html


def test_the_welcome_says_when_mail_comes_and_links_manage_and_unsubscribe(tmp_path: Path) -> None:
    from freezegun import freeze_time

    config = _config(tmp_path)
    with freeze_time("2026-03-02 09:30:00"):  # links carry a timestamp: sign them all in the same second
        mail = render_welcome(config, SECRET, SUB)
        assert "every Friday" in mail.text
        assert manage_url(config, SECRET, SUB) in mail.text
        assert unsubscribe_url(config, SECRET, SUB) in mail.text
        reminder = render_reminder(config, SECRET, SUB)
        assert "already subscribed" in reminder.text and manage_url(config, SECRET, SUB) in reminder.text


def test_a_javascript_base_url_cannot_exist(tmp_path: Path) -> None:
    import pytest

    from digest.errors import ConfigError

    with pytest.raises(ConfigError):
        parse_config({"web": {"base_url": "javascript:alert(1)"}}, tmp_path / "config.toml")


def test_the_admin_alert_is_one_line_subject_and_escaped_detail() -> None:
    mail = render_admin_alert(
        "run failed\r\nBcc: x@example.org", "source down <html>\nline 2", prefix="[digest]"
    )
    assert "\n" not in mail.subject and "\r" not in mail.subject
    assert mail.subject.startswith("[digest] run failed")
    assert mail.text == "source down <html>\nline 2\n"
    assert "&lt;html&gt;" in mail.html


def test_a_notice_becomes_a_valid_mime_message(tmp_path: Path) -> None:
    config = _config(tmp_path)
    mail = render_welcome(config, SECRET, SUB)
    raw = build_message(
        mail,
        Envelope(
            sender="Paper Digest <digest@example.org>",
            recipient=SUB.email,
            list_id="paper-digest.example.org",
            unsubscribe_url=unsubscribe_url(config, SECRET, SUB),
        ),
    )
    parsed = message_from_bytes(raw, policy=policy.default)
    assert parsed["Subject"] == "Welcome to Paper digest"
    body = parsed.get_body(preferencelist=("plain",))
    assert body is not None and "every Friday" in body.get_content()
