"""Connections to the outside world: the embedded stack (broker, PostgreSQL, MQTT, schema
registry), Kafka clients and topic administration.

Exceptions::

    ConnectorError              root of this package
    ├── ServiceStartError       an embedded service did not start (port in use, binary missing, …)
    ├── StackNotRunningError    no stack is running and no service URL is set
    ├── KafkaAdminError         the broker refused a topic operation
    ├── KafkaDeliveryError      produced records did not reach the broker
    └── KafkaSecurityError      the Kafka TLS/SASL settings cannot work together
"""

from __future__ import annotations

from schemas.errors import EvTwinError


class ConnectorError(EvTwinError):
    """Root of every error raised by :mod:`connectors`."""


class ServiceStartError(ConnectorError):
    """An embedded service could not start; the message is one line that says why and what to do."""


class StackNotRunningError(ConnectorError):
    """A command needs a service, none is configured and no embedded stack is running."""


class KafkaAdminError(ConnectorError):
    """The broker refused or failed a topic operation."""


class KafkaDeliveryError(ConnectorError):
    """Records produced were refused by the broker or not delivered in time."""


class KafkaSecurityError(ConnectorError):
    """The Kafka connection's security settings are incomplete or contradict each other."""


__all__ = ["ConnectorError", "KafkaAdminError", "KafkaDeliveryError", "KafkaSecurityError", "ServiceStartError", "StackNotRunningError"]
