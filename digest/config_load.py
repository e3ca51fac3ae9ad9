"""Configuration files: one TOML file -> a validated, frozen :class:`digest.config.Config`.

Every problem is reported as one line ``config.toml: smtp.port: expected an integer, got 'abc'``.
"""

from __future__ import annotations

import difflib
import os
import secrets
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from digest.config import DEFAULT_CONFIG_NAME, Config
from digest.errors import ConfigError

CONFIG_ENV = "DIGEST_CONFIG"
EXAMPLE_CONFIG = Path(__file__).with_name("config.example.toml")


def default_config_path() -> Path:
    """``$DIGEST_CONFIG``, else ./config.toml."""
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_NAME)


def load_config(path: Path | str | None = None) -> Config:
    """Read and validate the config file; raise ConfigError with one line per problem."""
    path = Path(path) if path is not None else default_config_path()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            [f"{path}: not found (run 'digest init' to write one, or pass --config / set ${CONFIG_ENV})"]
        ) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read ({exc.strerror})"]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not UTF-8 text"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: invalid TOML: {exc}"]) from None
    return parse_config(data, path)


def parse_config(data: Mapping[str, Any], path: Path) -> Config:
    """Validate already-parsed TOML data."""
    if "path" in data:
        raise ConfigError([f"{path}: path: unknown key"])
    try:
        return Config.model_validate({**data, "path": path})
    except ValidationError as exc:
        raise ConfigError([f"{path}: {_describe(err, data)}" for err in exc.errors()]) from None


_EXPECTED = {
    "int_parsing": "expected an integer",
    "int_type": "expected an integer",
    "int_from_float": "expected a whole number",
    "float_parsing": "expected a number",
    "float_type": "expected a number",
    "bool_parsing": "expected true or false",
    "bool_type": "expected true or false",
    "string_type": "expected a string",
    "list_type": "expected a list",
    "model_type": "expected a table",
    "dict_type": "expected a table",
}


def _describe(err: Any, data: Mapping[str, Any]) -> str:
    loc = [str(p) for p in err["loc"]]
    kind = err["type"]
    key = ".".join(loc) if loc else "(top level)"
    if kind == "extra_forbidden":
        return f"{key}: unknown key{_did_you_mean(loc, data)}"
    if kind == "missing":
        return f"{key}: required key is missing"
    if kind in _EXPECTED:
        return f"{key}: {_EXPECTED[kind]}, got {err['input']!r}"
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return f"{key}: expected one of {expected}, got {err['input']!r}"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        return f"{key}: {err['msg'].lower()}, got {err['input']!r}"
    if kind == "too_short":
        return f"{key}: must not be empty"
    if kind == "value_error":
        msg = str(err.get("ctx", {}).get("error", err["msg"]))
        if err["loc"] and str(err["loc"][-1]) == "from_":
            key = ".".join([*loc[:-1], "from"])
        return f"{key}: {msg}"
    return f"{key}: {err['msg']}"


def _did_you_mean(loc: list[str], data: Mapping[str, Any]) -> str:
    model: Any = Config
    for part in loc[:-1]:
        if part.isdigit():
            continue
        field = model.model_fields.get(part)
        if field is None:
            return ""
        ann = field.annotation
        inner = getattr(ann, "__args__", None)
        model = inner[0] if inner and isinstance(inner[0], type) else ann
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return ""
    names = [(f.alias or n) for n, f in model.model_fields.items() if n != "path"]
    close = difflib.get_close_matches(loc[-1], names, n=1)
    return f" (did you mean '{close[0]}'?)" if close else f" (known keys: {', '.join(names)})"


def new_secret_key() -> str:
    """A fresh random ``[security]`` secret key."""
    return secrets.token_urlsafe(48)
