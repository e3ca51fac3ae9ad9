"""One connected, secured (STARTTLS or implicit TLS, certificates always verified) and authenticated SMTP
connection, or the reason there is none: ``ConnectFailed`` (try again later) or ``DeliveryError`` (a setting
is wrong: TLS, AUTH)."""

from __future__ import annotations

import asyncio
import socket
import ssl

import aiosmtplib
from aiosmtplib import (
    SMTPAuthenticationError,
    SMTPConnectError,
    SMTPException,
    SMTPResponseException,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)

from digest.errors import DeliveryError
from digest.mailer.outcome import SmtpSettings


class ConnectFailed(Exception):
    """A new connection could not be made (network, timeout, greeting refused)."""


class Connector:
    """Opens connections to one server; counts them (tests and the benchmark check the pool reuses them)."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self.local_hostname = settings.local_hostname
        self.connections_opened = 0
        self._tls_context: ssl.SSLContext | None = None

    async def connect(self) -> aiosmtplib.SMTP:
        """A connected, secured and authenticated connection, or ConnectFailed / DeliveryError."""
        s = self.settings
        if self.local_hostname is None:
            self.local_hostname = await asyncio.to_thread(socket.getfqdn)
        secure = s.security != "none"
        smtp = aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            local_hostname=self.local_hostname,
            timeout=s.timeout_s,
            use_tls=s.security == "tls",
            start_tls=False,
            tls_context=self._tls() if secure else None,
        )
        try:
            try:
                await smtp.connect()
            except ssl.SSLError as exc:
                raise self._tls_failed(exc) from None
            except (SMTPConnectError, SMTPTimeoutError, SMTPServerDisconnected, OSError) as exc:
                raise ConnectFailed(f"cannot connect to smtp {s.address}: {exc}") from None
            except SMTPResponseException as exc:
                raise ConnectFailed(
                    f"cannot connect to smtp {s.address}: greeting {exc.code} {exc.message}"
                ) from None
            self.connections_opened += 1
            try:
                await smtp.ehlo()
                if s.security == "starttls":
                    if not smtp.supports_extension("starttls"):
                        raise DeliveryError(
                            f"smtp server {s.address} does not offer STARTTLS, and security = 'starttls' never "
                            "sends in clear (use security = 'tls' for an implicit-TLS port like 465, or fix the relay)"
                        )
                    try:
                        await smtp.starttls()
                    except ssl.SSLError as exc:
                        raise self._tls_failed(exc) from None
                    await smtp.ehlo()
                if s.username:
                    await self._login(smtp)
            except (SMTPServerDisconnected, SMTPTimeoutError, OSError) as exc:
                raise ConnectFailed(f"cannot connect to smtp {s.address}: {exc}") from None
            except SMTPResponseException as exc:
                raise ConnectFailed(f"cannot connect to smtp {s.address}: {exc.code} {exc.message}") from None
        except BaseException:
            smtp.close()
            raise
        return smtp

    async def _login(self, smtp: aiosmtplib.SMTP) -> None:
        s = self.settings
        assert s.username is not None
        if not smtp.supports_extension("auth"):
            raise DeliveryError(
                f"smtp server {s.address} does not offer AUTH but smtp.username is set "
                "(remove the username, or check the port and security setting)"
            )
        try:
            await smtp.login(s.username, s.password or "")
        except SMTPAuthenticationError as exc:
            raise DeliveryError(
                f"smtp server {s.address} refused the login for {s.username!r}: {exc.code} {exc.message} "
                "(check smtp.username and the password named by smtp.password_env)",
                permanent=True,
                code=exc.code,
            ) from None
        except SMTPException as exc:
            if isinstance(exc, SMTPServerDisconnected | SMTPTimeoutError):
                raise
            raise DeliveryError(f"smtp server {s.address}: AUTH failed: {exc}", permanent=True) from None

    def _tls_failed(self, exc: ssl.SSLError) -> DeliveryError:
        s = self.settings
        hint = (
            f"is smtp.ca_file ({s.ca_file}) the CA that signed the relay's certificate?"
            if s.ca_file
            else "for a private relay, set smtp.ca_file to the CA that signed its certificate"
        )
        return DeliveryError(f"TLS with smtp server {s.address} failed: {exc} ({hint})", permanent=True)

    def _tls(self) -> ssl.SSLContext:
        if self._tls_context is None:
            ca_file = self.settings.ca_file
            try:
                # Certificates are always verified; a private CA is added, never a way to skip checks.
                self._tls_context = ssl.create_default_context(cafile=ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise DeliveryError(f"cannot read smtp.ca_file {ca_file}: {exc}") from None
        return self._tls_context
