"""Slack and JSON bodies: untrusted text escaped, Slack's block limits kept; the [[channels]] config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from channels_helpers import DAY, HOOK_ENV, channel, make_config
from typer.testing import CliRunner
from webhook_server import Reply, WebhookServer

from digest.channels.formats import (
    MAX_BLOCKS,
    MAX_TEXT,
    ChannelDay,
    json_messages,
    slack_escape,
    slack_messages,
)
from digest.cli import app
from digest.config_load import load_config
from digest.errors import ConfigError
from digest.models import MatchedPaper, Paper, Rule
from digest.rules import select_papers
from digest.setup import config_summary


def paper(i: int = 0, **kw: object) -> Paper:
    fields: dict[str, object] = {
        "id": f"2608.{20000 + i}",
        "title": f"Agents {i}",
        "summary": "An agent paper.",
        "daily_date": DAY,
        "upvotes": 10,
    }
    fields.update(kw)
    return Paper(**fields)  # type: ignore[arg-type]


def day_of(*papers: Paper, more: int = 0) -> ChannelDay:
    return ChannelDay("lab", DAY, [MatchedPaper(p, ()) for p in papers], more=more)


def test_slack_text_escapes_angle_brackets_and_ampersands_so_no_mention_or_link_can_be_forged() -> None:
    evil = paper(
        title="<!channel> Tom & Jerry <https://evil.example|click here>",
        summary="Abstract with <@U123> and a > b & c",
        github_repo="javascript:alert(1)",
    )
    [message] = slack_messages(day_of(evil))
    texts = [b["text"]["text"] for b in message["blocks"]]
    paper_text = texts[1]
    assert "<!channel>" not in paper_text and "&lt;!channel&gt;" in paper_text
    assert "Tom &amp; Jerry" in paper_text
    assert "&lt;https://evil.example|click here&gt;" in paper_text
    assert "&lt;@U123&gt;" in paper_text and "a &gt; b &amp; c" in paper_text
    assert "javascript:" not in paper_text  # only http(s) links are made
    # The only real links are ours: HF page, arXiv, PDF.
    assert paper_text.count("<https://") == 3
    assert slack_escape("a<b>&c") == "a&lt;b&gt;&amp;c"


def test_slack_messages_split_every_50_blocks_and_cut_every_text_to_3000_characters() -> None:
    long = "word " * 5000
    many = [
        paper(i, summary=long, title="T" * 400, authors=tuple(f"A{n}" for n in range(50))) for i in range(130)
    ]
    messages = slack_messages(day_of(*many, more=7))
    assert len(messages) == 3
    for message in messages:
        assert len(message["blocks"]) <= MAX_BLOCKS
        for block in message["blocks"]:
            for text in [block.get("text", {}).get("text", "")] + [
                e["text"] for e in block.get("elements", [])
            ]:
                assert len(text) <= MAX_TEXT
        assert message["text"]  # the notification fallback
    sections = [b for m in messages for b in m["blocks"][1:] if b["type"] == "section"]
    assert len(sections) == 130
    assert "and 7 more" in json.dumps(messages[-1])


def test_the_json_format_carries_every_paper_field_and_why_it_matched() -> None:
    p = paper(ai_summary="Short AI summary.", github_repo="https://github.com/example/x")
    matched = select_papers([p], [Rule(query="agents")])
    [body] = json_messages(ChannelDay("raw", DAY, matched))
    assert body["channel"] == "raw" and body["date"] == "2026-08-21" and body["count"] == 1
    [item] = body["papers"]
    assert item["id"] == p.id and item["arxiv_url"] == f"https://arxiv.org/abs/{p.id}"
    assert item["github_repo"] == "https://github.com/example/x" and item["ai_summary"] == "Short AI summary."
    assert item["why"] == ["agents in title"]


def test_a_channel_config_names_an_environment_variable_never_a_url(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        make_config(
            tmp_path, channels=[{**channel(), "webhook_url_env": "https://hooks.slack.com/services/X"}]
        )
    [line] = info.value.problems
    assert "channels.0.webhook_url_env: expected the NAME of an environment variable" in line
    with pytest.raises(ConfigError) as info:
        make_config(tmp_path, channels=[channel(fmt="xml")])
    assert "channels.0.format: expected one of 'slack' or 'json'" in info.value.problems[0]
    with pytest.raises(ConfigError) as info:
        make_config(tmp_path, channels=[channel("a"), channel("a")])
    assert "a appears more than once" in info.value.problems[0]
    with pytest.raises(ConfigError) as info:
        make_config(tmp_path, channels=[channel(send_time="25:00")])
    assert "channels.0.send_time: expected HH:MM" in info.value.problems[0]


def _write_config(tmp_path: Path, port: int, rules: str = '["agent*"]') -> Path:
    key = tmp_path / "secret_key"
    key.write_text("k" * 48)
    path = tmp_path / "config.toml"
    path.write_text(
        f"""
[database]
url = "sqlite:///{tmp_path / "d.db"}"
[security]
secret_key_file = "{key}"
[smtp]
host = "127.0.0.1"
security = "none"
[[channels]]
name = "lab"
rules = {rules}
webhook_url_env = "{HOOK_ENV}"
format = "slack"
""",
        encoding="utf-8",
    )
    return path


def test_check_config_says_the_webhook_is_set_without_showing_it(
    tmp_path: Path, hook: WebhookServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(HOOK_ENV, hook.url())
    path = _write_config(tmp_path, hook.port)
    result = CliRunner().invoke(app, ["--config", str(path), "check-config"])
    assert result.exit_code == 0, result.output
    rows = dict(config_summary(load_config(path)))
    assert rows["channel lab"] == f"slack, 1 rule, with the run; ${HOOK_ENV} set (hidden)"
    monkeypatch.delenv(HOOK_ENV)
    assert dict(config_summary(load_config(path)))["channel lab"].endswith("NOT SET")
    assert "s3cr3t" not in result.output and str(hook.port) not in result.output


def test_check_config_refuses_a_bad_channel_rule_with_file_key_and_caret(tmp_path: Path) -> None:
    path = _write_config(tmp_path, 9, rules='["agent AND (x"]')
    result = CliRunner().invoke(app, ["--config", str(path), "check-config"])
    assert result.exit_code != 0
    assert isinstance(result.exception, ConfigError)
    assert "channels.0.rules.0" in str(result.exception)


def test_digest_channels_test_posts_a_sample_and_fails_on_a_refusal(
    tmp_path: Path, hook: WebhookServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(HOOK_ENV, hook.url())
    path = _write_config(tmp_path, hook.port)
    ok = CliRunner().invoke(app, ["--config", str(path), "channels", "test", "lab"])
    assert ok.exit_code == 0, ok.output
    assert "sample posted" in ok.output and "s3cr3t" not in ok.output
    [post] = hook.posts
    body = post.json
    assert "&lt;for testing&gt;" in json.dumps(body) and "blocks" in body
    hook.script(Reply(403, "invalid_token"))
    refused = CliRunner().invoke(app, ["--config", str(path), "channels", "test", "lab"])
    assert refused.exit_code != 0
    assert "403 invalid_token" in str(refused.exception) and "s3cr3t" not in str(refused.exception)
    unknown = CliRunner().invoke(app, ["--config", str(path), "channels", "test", "nope"])
    assert isinstance(unknown.exception, ConfigError) and "no channel named 'nope'" in str(unknown.exception)
