"""The web app: subscribe, confirm, manage, unsubscribe, health (see :func:`digest.web.app.create_app`)."""

from digest.web.app import create_app
from digest.web.site import MailSender

__all__ = ["MailSender", "create_app"]
