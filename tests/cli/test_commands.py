"""The command line as an operator uses it: real subprocesses, real files, exit codes and one-line errors."""

from __future__ import annotations

import email
import json
from pathlib import Path
from typing import Any

from cli_helpers import HF_DAY, digest, point_at, subscribe_ada
from smtp_server import FaultySmtpServer

from digest.demo.snapshot_server import SnapshotServer


def test_init_writes_a_commented_config_a_private_secret_and_the_database(workspace: Path) -> None:
    text = (workspace / "config.toml").read_text()
    assert text.count("#") > 40, "the written config keeps the example's comments"
    key = workspace / "data" / "secret_key"
    assert key.stat().st_mode & 0o777 == 0o600
    assert len(key.read_text().strip()) >= 32
    assert (workspace / "data" / "digest.db").exists()
    again = digest("init", cwd=workspace)
    assert again.returncode == 0 and "kept existing" in again.stdout
    assert key.read_text().strip() and "secret" not in text.split("secret_key_file")[0][-5:]


def test_check_config_masks_secrets(workspace: Path) -> None:
    secret = (workspace / "data" / "secret_key").read_text().strip()
    result = digest("check-config", cwd=workspace)
    assert result.returncode == 0, result.stderr
    assert "config OK" in result.stdout
    assert secret not in result.stdout and "hidden" in result.stdout


def test_a_broken_config_is_one_line_and_exit_1(workspace: Path) -> None:
    (workspace / "config.toml").write_text('[smtp]\nport = "abc"\n')
    result = digest("check-config", cwd=workspace)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: config.toml: smtp.port: expected an integer, got 'abc'"
    assert "Traceback" not in result.stderr


def test_config_comes_from_the_option_then_the_environment(workspace: Path, tmp_path_factory: Any) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    by_option = digest("--config", str(workspace / "config.toml"), "check-config", cwd=elsewhere)
    assert by_option.returncode == 0, by_option.stderr
    by_env = digest("check-config", cwd=elsewhere, env={"DIGEST_CONFIG": str(workspace / "config.toml")})
    assert by_env.returncode == 0, by_env.stderr
    missing = digest("check-config", cwd=elsewhere)
    assert missing.returncode == 1 and "run 'digest init'" in missing.stderr


def test_verbose_shows_the_traceback_of_an_operator_error(workspace: Path) -> None:
    (workspace / "config.toml").write_text("[smtp]\nport = 'abc'\n")
    result = digest("-v", "check-config", cwd=workspace)
    assert result.returncode == 1 and "Traceback" in result.stderr


def test_every_command_has_help_from_its_docstring(tmp_path: Path) -> None:
    top = digest("--help", cwd=tmp_path)
    assert top.returncode == 0
    for command in (
        "init",
        "check-config",
        "fetch",
        "match",
        "subscribe",
        "unsubscribe",
        "subscribers",
        "preview",
        "run",
        "serve",
        "demo",
    ):
        assert command in top.stdout
        result = digest(command, "--help", cwd=tmp_path)
        assert result.returncode == 0, (command, result.stderr)
        assert len(result.stdout.strip().splitlines()) > 3


def test_fetch_json_prints_the_paper_fields(workspace: Path, hf: SnapshotServer) -> None:
    point_at(workspace, hf.base_url)
    result = digest("fetch", "--date", "2026-08-21", "--json", cwd=workspace)
    assert result.returncode == 0, result.stderr
    papers = json.loads(result.stdout)
    assert len(papers) == 17
    assert set(papers[0]) >= {
        "id",
        "title",
        "summary",
        "authors",
        "upvotes",
        "num_comments",
        "published_at",
        "daily_date",
        "ai_summary",
        "ai_keywords",
        "github_repo",
        "github_stars",
        "project_page",
        "thumbnail_url",
        "organization",
        "url",
        "arxiv_url",
        "pdf_url",
    }


def test_a_broken_source_is_one_line_and_exit_1(workspace: Path, hf: SnapshotServer) -> None:
    point_at(workspace, hf.base_url)
    hf.add_day(__import__("datetime").date(2026, 8, 22), [{"bad": 1}] * 3)
    result = digest("fetch", "--date", "2026-08-22", cwd=workspace)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "2026-08-22" in last and "Traceback" not in result.stderr


def test_match_json_from_a_file(tmp_path: Path, hf_fixtures: Path) -> None:
    file = hf_fixtures / "api_daily_papers_date-2026-08-21.json"
    result = digest("match", "title:agent*", "--papers", str(file), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    matches = json.loads(result.stdout)
    assert {m["id"] for m in matches} >= {"2608.19880"}
    assert all(m["why"] and "title" in m["why"][0] for m in matches)


def test_a_bad_rule_exits_1_with_the_caret_message(tmp_path: Path, hf_fixtures: Path) -> None:
    file = hf_fixtures / "api_daily_papers_date-2026-08-21.json"
    result = digest("match", "(diffusion OR flow", "--papers", str(file), cwd=tmp_path)
    assert result.returncode == 1
    assert (
        "unclosed parenthesis" in result.stderr and "^" in result.stderr and "Traceback" not in result.stderr
    )


def test_admin_subscribe_list_preview_and_unsubscribe(workspace: Path, hf: SnapshotServer) -> None:
    point_at(workspace, hf.base_url)
    assert digest("fetch", "--date", "2026-08-21", cwd=workspace).returncode == 0
    added = digest(
        "subscribe", "ada@example.org", "--rule", "agent*", "--name", "Ada", "--confirmed", cwd=workspace
    )
    assert added.returncode == 0, added.stderr
    bad = digest("subscribe", "ada@example.org", "--rule", "title:(", "--confirmed", cwd=workspace)
    assert bad.returncode == 1 and "^" in bad.stderr
    hostile = digest(
        "subscribe", "x@example.org\r\nBcc: y@example.org", "--rule", "a", "--confirmed", cwd=workspace
    )
    assert hostile.returncode == 1
    listed = json.loads(digest("subscribers", "--json", cwd=workspace).stdout)
    assert listed == [
        {
            "email": "ada@example.org",
            "status": "active",
            "rules": ["agent*"],
            "cadence": "daily",
            "last_digest_at": None,
            "hard_bounces": 0,
            "last_failure": None,
        }
    ]
    out = workspace / "preview"
    shown = digest("preview", "ada@example.org", "--date", "2026-08-21", "--out", str(out), cwd=workspace)
    assert shown.returncode == 0, shown.stderr
    eml = next(out.glob("*.eml"))
    msg = email.message_from_bytes(eml.read_bytes())
    assert msg["To"] == "ada@example.org" and msg["List-Unsubscribe"]
    assert next(out.glob("*.html")).read_text().count("<") > 50
    gone = digest("unsubscribe", "ada@example.org", cwd=workspace)
    assert gone.returncode == 0
    assert json.loads(digest("subscribers", "--json", cwd=workspace).stdout)[0]["status"] == "unsubscribed"


def test_run_sends_and_exits_0_then_a_rerun_sends_nothing(workspace: Path, mailing: FaultySmtpServer) -> None:
    server = mailing
    subscribe_ada(workspace)
    first = digest("run", "--date", "2026-08-21", cwd=workspace)
    assert first.returncode == 0, first.stderr
    assert "sent" in first.stdout and len(server.messages) == 1
    second = digest("run", "--date", "2026-08-21", cwd=workspace)
    assert second.returncode == 0 and len(server.messages) == 1


def test_dry_run_writes_eml_files_and_records_nothing(workspace: Path, mailing: FaultySmtpServer) -> None:
    server = mailing
    subscribe_ada(workspace)
    out = workspace / "dry"
    result = digest("run", "--date", "2026-08-21", "--dry-run", "--out", str(out), cwd=workspace)
    assert result.returncode == 0, result.stderr
    assert len(list(out.rglob("*.eml"))) == 1 and server.messages == []
    real = digest("run", "--date", "2026-08-21", cwd=workspace)
    assert real.returncode == 0 and len(server.messages) == 1, "a dry run marks nothing as delivered"


def test_run_with_the_smtp_server_down_exits_1_with_one_line(
    workspace: Path, mailing: FaultySmtpServer
) -> None:
    server = mailing
    server.stop()
    subscribe_ada(workspace)
    result = digest("run", "--date", "2026-08-21", cwd=workspace)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "error" in result.stderr


def test_check_config_quotes_a_bad_subscriber_rule_with_its_key(workspace: Path) -> None:
    path = workspace / "config.toml"
    path.write_text(
        path.read_text() + '\n[[subscribers]]\nemail = "a@example.org"\nrules = ["ok", "titel:agents"]\n'
    )
    result = digest("check-config", cwd=workspace)
    assert result.returncode == 1
    assert "config.toml: subscribers.0.rules.1: unknown field 'titel'" in result.stderr
    assert "^" in result.stderr and "Traceback" not in result.stderr


def test_scraped_titles_are_printed_as_text_not_markup(workspace: Path, hf: SnapshotServer) -> None:
    point_at(workspace, hf.base_url)
    item = json.loads(HF_DAY.read_text())[0]
    item["title"] = item["paper"]["title"] = "Odd [/i] title [bold]kept"
    day = __import__("datetime").date(2026, 8, 23)
    hf.add_day(day, [item])
    result = digest("fetch", "--date", day.isoformat(), cwd=workspace)
    assert result.returncode == 0, result.stderr
    assert "Odd [/i] title [bold]kept" in " ".join(result.stdout.split())


def test_subscribe_without_confirmed_mails_a_confirmation_and_a_failed_mail_can_be_retried_at_once(
    workspace: Path, mailing: FaultySmtpServer
) -> None:
    server = mailing
    server.script("RCPT", "451 4.3.0 try later")
    failed = digest("subscribe", "ada@example.org", "--rule", "agent*", cwd=workspace)
    assert failed.returncode == 1 and "confirmation mail was refused" in failed.stderr
    retried = digest("subscribe", "ada@example.org", "--rule", "agent*", "--rule", "diffusion", cwd=workspace)
    assert retried.returncode == 0, retried.stderr
    (mail,) = [m for m in server.messages if "ada@example.org" in m.recipients]
    assert (
        "/confirm/" in mail.data.decode("ascii", "replace")
        or "confirm" in str(mail.message["Subject"]).lower()
    )
    listed = json.loads(digest("subscribers", "--json", cwd=workspace).stdout)
    assert listed[0]["status"] == "pending" and listed[0]["rules"] == ["agent*", "diffusion"]
    confirmed = digest("subscribe", "ada@example.org", "--rule", "agent*", "--confirmed", cwd=workspace)
    assert confirmed.returncode == 0
    assert json.loads(digest("subscribers", "--json", cwd=workspace).stdout)[0]["status"] == "active"
    assert digest("unsubscribe", "ada@example.org", cwd=workspace).returncode == 0
    again = digest("subscribe", "ada@example.org", "--rule", "agent*", "--confirmed", cwd=workspace)
    assert again.returncode == 1 and "only they can subscribe again" in again.stderr
