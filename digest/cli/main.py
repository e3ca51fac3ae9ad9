"""The console-script entry point: the errors-to-exit-code boundary.

A DigestError prints one clear line and exits 1; anything else is a bug and keeps its traceback.
`-v` shows tracebacks for DigestErrors too. A mistyped command or option is one line and exit 2.
"""

from __future__ import annotations

import logging
import sys

import typer

from digest.cleaning import visible_lines
from digest.cli.base import app, err, state
from digest.errors import DigestError


def main() -> None:
    """Console-script entry point: the DigestError -> one line + exit 1 boundary."""
    try:
        code = app(standalone_mode=False)
    except DigestError as exc:
        if state.verbose:
            logging.getLogger("digest").exception("failed")
        lines = visible_lines(exc) if str(exc) else [type(exc).__name__]  # may quote outside text
        err.print(f"error: {lines[0]}", markup=False)
        for line in lines[1:]:
            err.print(line, markup=False)
        sys.exit(1)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except typer.TyperException as exc:
        # A mistyped command or option. Typer raises the click exceptions it vendors (subclasses of
        # TyperException, not of the click package's ClickException): one line, exit 2 for usage errors.
        sys.exit(_usage_error(exc))
    sys.exit(code if isinstance(code, int) else 0)


def _usage_error(exc: typer.TyperException) -> int:
    """Print a command-line error as one line; its exit code (2 for a usage error)."""
    message = exc.format_message().strip()
    if "\n" in message:  # `digest` alone: the help text (no_args_is_help)
        err.print(message, markup=False)
        return int(exc.exit_code)
    ctx = getattr(exc, "ctx", None)
    hint = f" Try '{ctx.command_path} --help'." if ctx is not None else ""
    end = "" if message.endswith((".", "?", "!")) else "."
    err.print(f"error: {message}{end}{hint}", markup=False)
    return int(exc.exit_code)
