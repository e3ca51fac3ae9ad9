"""The fault-injecting SMTP server fixture (tests/smtp_server.py) for the mailer tests."""

from smtp_server import smtp_server

__all__ = ["smtp_server"]
