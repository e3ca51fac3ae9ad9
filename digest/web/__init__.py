"""The web app: subscribe, confirm, manage, unsubscribe, health (see :func:`digest.web.app.create_app`)."""

from digest.web.app import MailSender, create_app

__all__ = ["MailSender", "create_app"]
