"""The e-mail notifier: alert changes as plain-text mail over SMTP.

``EVTWIN_SMTP_URL`` (``smtp://user:password@host:port``) names the server and the login;
``EVTWIN_SMTP_TLS`` is ``starttls`` (the connection must upgrade, the certificate is verified
against the system's CAs or ``EVTWIN_SMTP_CA_FILE``), ``ssl`` (TLS from the first byte) or ``none``
(a loopback relay). Each write opens one connection for its messages. A 4xx reply or a server that
does not answer is retried with backoff (421 waits as a 429 does); a 5xx reply is a permanent
failure (dead-lettered). Run it as ``evtwin sink --kind email``.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from typing import ClassVar
from urllib.parse import unquote, urlsplit

from connectors.endpoints import Endpoints
from streams.errors import SinkError
from streams.settings import Settings
from streams.sinks.notify import (
    Message,
    Notifier,
    PermanentDeliveryError,
    RetryLaterError,
    Route,
    TemporaryDeliveryError,
)


class EmailSink(Notifier):
    """Mails alert changes to ``EVTWIN_EMAIL_TO``."""

    name: ClassVar[str] = "email"

    def __init__(self, settings: Settings, endpoints: Endpoints) -> None:
        if settings.smtp_url is None:
            raise SinkError("no SMTP server: set EVTWIN_SMTP_URL (smtp://user:password@host:port)")
        self.recipients = [r.strip() for r in settings.email_to.split(",") if r.strip()]
        if not self.recipients:
            raise SinkError("no recipients: set EVTWIN_EMAIL_TO (comma-separated addresses)")
        super().__init__(settings, endpoints,
                         Route.parse(settings.email_min_severity, settings.email_rules))
        url = urlsplit(settings.smtp_url.get_secret_value())
        if url.scheme not in ("smtp", "smtps") or not url.hostname:
            raise SinkError("EVTWIN_SMTP_URL must look like smtp://[user:password@]host:port")
        self.tls = "ssl" if url.scheme == "smtps" else settings.smtp_tls
        self.host, self.port = url.hostname, url.port or (465 if self.tls == "ssl" else 587)
        self.user = unquote(url.username) if url.username else None
        self.password = unquote(url.password) if url.password else None
        self.sender = settings.email_from
        self.context = ssl.create_default_context(
            cafile=str(settings.smtp_ca_file) if settings.smtp_ca_file else None)

    def mail(self, message: Message) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = self.sender
        mail["To"] = ", ".join(self.recipients)
        mail["Subject"] = message.subject
        mail["X-Evtwin-Alerts"] = ",".join(f"{a['alert_id']}:{a['status']}" for a in message.alerts)
        mail.set_content(message.body + "\n")
        return mail

    def _connect(self) -> smtplib.SMTP:
        if self.tls == "ssl":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout_s,
                                                  context=self.context)
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
            if self.tls == "starttls":
                smtp.starttls(context=self.context)
        if self.user:
            smtp.login(self.user, self.password or "")
        return smtp

    def send(self, message: Message) -> None:
        try:
            smtp = self._connect()
            try:
                smtp.send_message(self.mail(message))
            finally:
                try:
                    smtp.quit()
                except (smtplib.SMTPException, OSError):
                    smtp.close()
        except smtplib.SMTPResponseException as exc:
            what = f"SMTP server answered {exc.smtp_code} {exc.smtp_error!r}"
            if exc.smtp_code == 421:
                raise RetryLaterError(30.0, what) from exc
            if exc.smtp_code >= 500:
                raise PermanentDeliveryError(what) from exc
            raise TemporaryDeliveryError(what) from exc
        except smtplib.SMTPRecipientsRefused as exc:
            raise PermanentDeliveryError(f"SMTP server refused the recipients: {exc.recipients}") from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise PermanentDeliveryError(f"SMTP server does not offer {exc}; see EVTWIN_SMTP_TLS") from exc
        except (smtplib.SMTPException, OSError) as exc:  # refused, reset, timed out, TLS failures
            raise TemporaryDeliveryError(f"SMTP server unreachable: {exc}") from exc


__all__ = ["EmailSink"]
