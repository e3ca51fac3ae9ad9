"""The Dockerfile and docker-compose.yml, checked without a Docker engine: they parse, and every command,
route, path, port and variable they name exists in the code and the example config."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import typer.main
import yaml
from operate_helpers import serve_config, start_serve

from digest.cli import app as cli_app
from digest.config import Config, WebConfig
from digest.config_load import CONFIG_ENV, EXAMPLE_CONFIG, load_config

ROOT = Path(__file__).resolve().parents[2]


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    joined = re.sub(
        r"\\\n", " ", "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#"))
    )
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def instructions(name: str) -> list[str]:
    return [rest for word, rest in dockerfile() if word == name]


def cli_commands() -> set[str]:
    return set(typer.main.get_command(cli_app).commands)  # type: ignore[attr-defined]


def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def example() -> Config:
    return load_config(EXAMPLE_CONFIG)


def test_the_image_is_multi_stage_slim_non_root_and_runs_digest_serve() -> None:
    stages = instructions("FROM")
    assert stages[0] == "python:3.11-slim AS builder" and stages[-1] == "python:3.11-slim"
    assert len(stages) == 2
    (user,) = instructions("USER")
    assert user not in ("root", "0")
    (cmd,) = instructions("CMD")
    argv = json.loads(cmd)
    assert argv[0] == "digest" and argv[1:] == ["serve"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["digest"] == "digest.cli:main", "the CMD's executable is the package's console script"
    assert set(argv[1:]) <= cli_commands()


def test_the_image_s_paths_ports_and_variables_match_the_code() -> None:
    assert instructions("VOLUME") == ['["/data"]']
    assert instructions("EXPOSE") == [str(WebConfig().port)]
    env = " ".join(instructions("ENV"))
    assert f"{CONFIG_ENV}=/data/config.toml" in env
    for copy in instructions("COPY"):
        parts = copy.split()
        if parts[0].startswith("--from"):
            continue
        for source in parts[:-1]:
            assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
    (install,) = [r for r in instructions("RUN") if "pip install" in r]
    assert "--constraint constraints.txt" in install
    ignored = [
        ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln.strip() and ln[0] != "#"
    ]
    for needed in ("pyproject.toml", "constraints.txt", "README.md", "digest"):
        assert needed not in ignored
    assert ".venv" in ignored and ".env" in ignored, "no virtualenv or secrets in the build context"


def test_the_healthcheck_command_passes_against_a_running_serve_and_fails_without_one(
    tmp_path: Path, hf: Any, smtp_server: Any
) -> None:
    (check,) = instructions("HEALTHCHECK")
    argv = json.loads(check.partition("CMD ")[2])
    assert argv[0] == "python" and argv[1] == "-c"
    assert "/healthz" in argv[2]
    command = [sys.executable, *argv[1:]]
    server = smtp_server()
    config = serve_config(
        tmp_path,
        hf_url=hf.base_url,
        smtp_port=server.port,
        db_url=f"sqlite:///{tmp_path / 'd.db'}",
        schedule={"catch_up": False},
    )
    proc = start_serve(config, tmp_path / "serve.log")
    try:
        url = f"http://127.0.0.1:{proc.port()}/healthz"
        env = {**os.environ, "DIGEST_HEALTHCHECK_URL": url}
        assert subprocess.run(command, env=env, timeout=20, capture_output=True).returncode == 0
        assert proc.stop()[0] == 0
    finally:
        proc.kill()
    down = subprocess.run(command, env=env, timeout=20, capture_output=True)
    assert down.returncode != 0, "a stopped server fails the check"


def test_the_compose_file_runs_serve_with_postgres_and_secrets_from_the_env_file() -> None:
    data = compose()
    services = data["services"]
    assert services["db"]["image"] == "postgres:16"
    app = services["app"]
    assert app["build"] == "."
    assert app["command"][0] == "digest" and set(app["command"][1:]) <= cli_commands()
    assert app["command"] == json.loads(instructions("CMD")[0])
    assert app["depends_on"]["db"]["condition"] == "service_healthy"
    env = app["environment"]
    config = example()
    # The variable names the example config reads its secrets from.
    assert config.security.secret_key_env in env and config.smtp.password_env in env
    assert env[CONFIG_ENV] == "/data/config.toml"
    assert "PGPASSWORD" in env, "the database password reaches psycopg (libpq) from the environment"
    for name, value in env.items():
        if name in (config.security.secret_key_env, config.smtp.password_env, "PGPASSWORD"):
            assert str(value).startswith("${"), f"{name}: secrets come from .env, not the compose file"
    mounts = [v.split(":") for v in app["volumes"]]
    assert ["./config.toml", "/data/config.toml", "ro"] in mounts
    assert any(m[1] == "/data" for m in mounts)
    published = [p.rsplit(":", 1)[-1] for p in app["ports"]]
    assert str(WebConfig().port) in published
    assert all(p.startswith("127.0.0.1:") for p in app["ports"]), "behind a TLS reverse proxy"
    assert set(data["volumes"]) >= {"pgdata", "digest-data"}
    db_env = services["db"]["environment"]
    assert db_env["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD")


def test_the_compose_file_s_database_url_example_is_a_valid_config(tmp_path: Path) -> None:
    comments = (ROOT / "docker-compose.yml").read_text()
    url = re.search(r'url = "(postgresql\+psycopg://[^"]+)"', comments)
    assert url, "the compose file shows the database URL to put in config.toml"
    path = tmp_path / "config.toml"
    path.write_text(f'[database]\nurl = "{url.group(1)}"\n[web]\nhost = "0.0.0.0"\n')
    assert load_config(path).database.url == url.group(1)
    services = compose()["services"]
    assert "@db:5432/" in url.group(1) and "db" in services
    assert shlex.split(services["db"]["healthcheck"]["test"][1])[0] == "pg_isready"
