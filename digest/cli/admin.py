"""`digest admin-password`: print an argon2 hash of the operator console's password."""

from __future__ import annotations

import sys

from digest.cli.base import app, out
from digest.errors import DigestError

#: The shortest console password ``admin-password`` accepts.
MIN_ADMIN_PASSWORD = 12


@app.command("admin-password")
def admin_password() -> None:
    """Print an argon2 hash of a console password for [admin] password_hash_env.

    The password is typed at a prompt (twice), or read from the first line of stdin when that is not a
    terminal; never from the command line, where other users and the shell history would see it.
    """
    from digest.web.admin.auth import hash_password

    if sys.stdin.isatty():
        import getpass

        password = getpass.getpass("Console password: ")
        if getpass.getpass("Again: ") != password:
            raise DigestError("the two passwords differ; nothing printed")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < MIN_ADMIN_PASSWORD:
        raise DigestError(f"the password is shorter than {MIN_ADMIN_PASSWORD} characters; nothing printed")
    out.print(hash_password(password))
