"""The console's login: argon2 password check, a signed session cookie with an idle timeout, CSRF bound to
the session, and failed logins slowed and counted per address and per account in the database."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from itsdangerous import BadSignature, URLSafeSerializer

from digest.config import AdminConfig
from digest.store import audit
from digest.store.db import Engine
from digest.web.security import Csrf

SESSION_COOKIE = "digest_admin"
#: However active, a session ends after this long (the idle timeout usually ends it first).
ABSOLUTE_LIFETIME = timedelta(hours=12)
#: The first failed login waits this long; each further failure in the window doubles it, up to the cap.
FAILURE_DELAY_S = 0.5
MAX_FAILURE_DELAY_S = 8.0
#: argon2 takes tens of milliseconds and 64 MiB per check: a flood of sign-ins from many addresses waits
#: its turn here instead of exhausting the memory of the process.
_checking = threading.BoundedSemaphore(2)
_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    """An argon2id hash of ``password`` for ``[admin] password_hash_env``."""
    return _hasher.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    """True when ``password`` matches the argon2 hash (False for any mismatch or unreadable hash)."""
    try:
        return _hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class Session:
    username: str
    nonce: str  # per login: the CSRF tokens of the session's forms are signatures of it
    issued: int
    seen: int


class Sessions:
    """Signed session cookies: ``{user, nonce, issued, last seen, password tag}``.

    The password tag (a keyed digest of the stored hash) ends every session when the password changes.
    """

    def __init__(self, secret: str, password_hash: str, idle: timedelta) -> None:
        self._serializer = URLSafeSerializer(secret, salt="paper-digest/admin-session")
        self._tag = hmac.new(secret.encode(), password_hash.encode(), hashlib.sha256).hexdigest()[:16]
        self.idle = idle
        self.csrf = Csrf(secret)

    def new(self, username: str, now: datetime) -> Session:
        at = int(now.timestamp())
        return Session(username, secrets.token_urlsafe(18), at, at)

    def dump(self, session: Session, now: datetime) -> str:
        """The cookie value, with ``now`` as the last activity (the idle timeout slides)."""
        payload = [session.username, session.nonce, session.issued, int(now.timestamp()), self._tag]
        return str(self._serializer.dumps(payload))

    def load(self, value: str | None, now: datetime) -> Session | None:
        """The session of a cookie; None when missing, forged, idle too long, too old, or the password changed."""
        if not value or len(value) > 1024:
            return None
        try:
            payload = self._serializer.loads(value)
        except BadSignature:
            return None
        if not isinstance(payload, list) or len(payload) != 5:
            return None
        username, nonce, issued, seen, tag = payload
        if not (isinstance(issued, int) and isinstance(seen, int)) or tag != self._tag:
            return None
        at = now.timestamp()
        if at - seen > self.idle.total_seconds() or at - issued > ABSOLUTE_LIFETIME.total_seconds():
            return None
        return Session(str(username), str(nonce), issued, seen)

    def csrf_token(self, session: Session) -> str:
        return self.csrf.token_for(session.nonce)

    def csrf_ok(self, session: Session, token: str) -> bool:
        return self.csrf.is_valid(session.nonce, token)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    locked_for: float = 0.0  # seconds until a locked-out login may try again
    delay: float = 0.0  # seconds a failed attempt waits before its answer


class LoginGuard:
    """Checks a login against the config, counting failures in the database (every process shares them)."""

    def __init__(self, engine: Engine, admin: AdminConfig, password_hash: str) -> None:
        self.engine = engine
        self.admin = admin
        self.password_hash = password_hash
        # Wrong names are checked against a hash too, so the answer takes as long either way.
        self._decoy = hash_password(secrets.token_urlsafe(16))

    def check(self, ip: str, username: str, password: str, now: datetime) -> Verdict:
        """Verify one attempt (blocking: argon2 takes tens of milliseconds; run it in a thread).

        The attempt is counted first and the counts read after, so a burst of parallel guesses cannot all
        slip under the limit. An attempt refused because of a lockout is not counted.
        """
        admin = self.admin
        window = timedelta(minutes=admin.lockout_minutes)
        attempt = audit.record_login_failure(self.engine, ip=ip, username=username, now=now)
        counts = audit.login_failures(self.engine, ip=ip, username=username, since=now - window)
        if counts.by_ip > admin.max_failures_per_ip or counts.by_account > admin.max_failures_per_account:
            audit.forget_login_failure(self.engine, attempt)
            oldest = counts.oldest or now
            return Verdict(False, locked_for=max(1.0, (oldest + window - now).total_seconds()))
        name_ok = hmac.compare_digest(username.encode(), admin.username.encode())
        with _checking:
            password_ok = verify_password(self.password_hash if name_ok else self._decoy, password)
        if name_ok and password_ok:
            audit.clear_login_failures(self.engine, username=username)
            return Verdict(True)
        earlier = max(counts.by_ip, counts.by_account) - 1
        return Verdict(False, delay=min(MAX_FAILURE_DELAY_S, FAILURE_DELAY_S * 2 ** min(earlier, 8)))
