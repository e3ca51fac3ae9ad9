"""A private Postfix instance for the bounce tests: Debian's postfix with its own config_directory, queue
and log under a temporary folder, listening on loopback ports only; nothing system-wide is touched.

It plays two parts in one instance:
- the relay our service sends through (``relay_port``): it accepts every recipient at RCPT, as most
  relays do, and delivers later;
- the subscribers' mail server (``destination_port``, a second smtpd with its own recipient table):
  ``alice`` is accepted (and discarded), ``full`` gets ``452 4.2.2 Mailbox full``, anyone else
  ``550 5.1.1 User unknown``. The relay turns those refusals into real DSNs (deferred mail is bounced at
  once: ``maximal_queue_lifetime = 0``) and delivers them to the bounce domain over LMTP.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
USERS_DOMAIN = "users.example.net"
BOUNCE_DOMAIN = "lists.example.org"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivatePostfix:
    """``with PrivatePostfix(tmp, lmtp_port=...) as mta: ...send to 127.0.0.1:mta.relay_port...``"""

    def __init__(self, *, lmtp_port: int) -> None:
        # Its own folder under /tmp, not pytest's tmp_path: Postfix's unprivileged daemons must be able to
        # reach the queue, and pytest's folders are private to root.
        self.root = Path(tempfile.mkdtemp(prefix="digest-postfix-"))
        self.root.chmod(0o755)
        self.conf = self.root / "etc"
        self.queue = self.root / "queue"
        self.data = self.root / "data"
        self.log = self.root / "maillog"
        self.lmtp_port = lmtp_port
        self.relay_port = free_port()
        self.destination_port = free_port()

    def _write_config(self) -> None:
        for d in (self.conf, self.queue, self.data):
            d.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.data, "postfix")
        (self.conf / "transport").write_text(
            f"{USERS_DOMAIN} smtp:[127.0.0.1]:{self.destination_port}\n"
            # As the README tells operators: the bounce address alone, VERP forms found by recipient_delimiter.
            f"bounces@{BOUNCE_DOMAIN} lmtp:inet:127.0.0.1:{self.lmtp_port}\n"
        )
        (self.conf / "users").write_text(
            f"alice@{USERS_DOMAIN} OK\n"
            f"full@{USERS_DOMAIN} 452 4.2.2 Mailbox full\n"
            f"{USERS_DOMAIN} 550 5.1.1 User unknown in local recipient table\n"
        )
        fast = "1s"
        (self.conf / "main.cf").write_text(
            "\n".join(
                [
                    "compatibility_level = 3.6",
                    f"queue_directory = {self.queue}",
                    f"data_directory = {self.data}",
                    "mail_owner = postfix",
                    "setgid_group = postdrop",
                    "myhostname = relay.digest.test",
                    "mydomain = digest.test",
                    "myorigin = $myhostname",
                    "mydestination =",
                    "recipient_delimiter = +",
                    "inet_interfaces = 127.0.0.1",
                    "inet_protocols = ipv4",
                    "mynetworks = 127.0.0.0/8",
                    f"relay_domains = {USERS_DOMAIN}, {BOUNCE_DOMAIN}",
                    f"transport_maps = texthash:{self.conf}/transport",
                    "smtpd_relay_restrictions = permit_mynetworks, reject",
                    "smtp_dns_support_level = disabled",
                    "lmtp_dns_support_level = disabled",
                    "smtp_host_lookup = native",
                    "lmtp_host_lookup = native",
                    "alias_maps =",
                    "alias_database =",
                    "local_recipient_maps =",
                    "biff = no",
                    f"maillog_file_prefixes = {self.root}",
                    f"maillog_file = {self.log}",
                    "maximal_queue_lifetime = 0",
                    "bounce_queue_lifetime = 0",
                    f"queue_run_delay = {fast}",
                    f"minimal_backoff_time = {fast}",
                    f"maximal_backoff_time = {fast}",
                    "smtp_tls_security_level = none",
                    "smtpd_tls_security_level = none",
                    "",
                ]
            )
        )
        services = [
            f"127.0.0.1:{self.relay_port} inet n - n - - smtpd",
            # The subscribers' server: its own name (else the relay sees "mail loops back to myself"),
            # its recipient table, and whatever it accepts goes nowhere.
            f"127.0.0.1:{self.destination_port} inet n - n - - smtpd",
            "  -o myhostname=mx.users.example.net",
            f"  -o smtpd_recipient_restrictions=check_recipient_access,texthash:{self.conf}/users,reject",
            "  -o content_filter=discard:",
            "pickup unix n - n 60 1 pickup",
            "cleanup unix n - n - 0 cleanup",
            "qmgr unix n - n 300 1 qmgr",
            "rewrite unix - - n - - trivial-rewrite",
            "bounce unix - - n - 0 bounce",
            "defer unix - - n - 0 bounce",
            "trace unix - - n - 0 bounce",
            "verify unix - - n - 1 verify",
            "flush unix n - n 1000? 0 flush",
            "proxymap unix - - n - - proxymap",
            "smtp unix - - n - - smtp",
            "showq unix n - n - - showq",
            "error unix - - n - - error",
            "retry unix - - n - - error",
            "discard unix - - n - - discard",
            "lmtp unix - - n - - lmtp",
            "anvil unix - - n - 1 anvil",
            "scache unix - - n - 1 scache",
            "postlog unix-dgram n - n - 1 postlogd",
        ]
        (self.conf / "master.cf").write_text("\n".join(services) + "\n")

    def start(self) -> None:
        self._write_config()
        self._postfix("set-permissions")
        self._postfix("start")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.relay_port), timeout=1) as s:
                    if s.recv(100).startswith(b"220"):
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"postfix did not start; log:\n{self.log_text()}")

    def stop(self) -> None:
        subprocess.run([POSTFIX, "-c", str(self.conf), "stop"], capture_output=True, timeout=30, check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    def _postfix(self, command: str) -> None:
        done = subprocess.run(
            [POSTFIX, "-c", str(self.conf), command], capture_output=True, text=True, timeout=60, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"postfix {command} failed: {done.stderr}{done.stdout}\n{self.log_text()}")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else "(no log)"

    def __enter__(self) -> PrivatePostfix:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
