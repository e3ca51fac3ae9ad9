"""A private Dovecot IMAP server for the bounce-mailbox tests: Debian's dovecot-imapd with its own config,
sockets, log and maildirs under a temporary folder, plain IMAP on a loopback port, one user."""

from __future__ import annotations

import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DOVECOT = "/usr/sbin/dovecot"
USER = "bounces"
PASSWORD = "bounce-box-password"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateDovecot:
    """``with PrivateDovecot() as imap: ...imap+plain://bounces:...@127.0.0.1:{imap.port}/INBOX...``"""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="digest-dovecot-"))
        self.root.chmod(0o755)  # the unprivileged dovecot processes must reach it
        self.port = _free_port()
        self.conf = self.root / "dovecot.conf"
        self.log = self.root / "dovecot.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"imap+plain://{USER}:{PASSWORD}@127.0.0.1:{self.port}/INBOX"

    def _write_config(self) -> None:
        owner = pwd.getpwnam("dovecot")
        mail = self.root / "mail"
        mail.mkdir()
        shutil.chown(mail, owner.pw_uid, owner.pw_gid)
        (self.root / "users").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
        self.conf.write_text(
            f"""
base_dir = {self.root}/run
state_dir = {self.root}/state
log_path = {self.log}
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{mail}/%u
first_valid_uid = 1
default_internal_user = dovecot
default_login_user = dovenull
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.root}/users
}}
userdb {{
  driver = static
  args = uid={owner.pw_uid} gid={owner.pw_gid} home={mail}/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0666
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""
        )

    def start(self) -> None:
        self._write_config()
        self.process = subprocess.Popen([DOVECOT, "-F", "-c", str(self.conf)], stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(200).startswith(b"* OK"):
                        return
            except OSError:
                time.sleep(0.1)
        err = (
            self.process.stderr.read().decode(errors="replace")
            if self.process.stderr and self.process.poll() is not None
            else ""
        )
        self.stop()
        raise RuntimeError(f"dovecot did not start: {err}\n{self.log_text()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None and self.process.stderr:
            self.process.stderr.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else "(no log)"

    def __enter__(self) -> PrivateDovecot:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
