"""The root of every error the project raises on purpose.

It lives in :mod:`schemas`, the package every other one depends on, so each package's own root can
derive from it and ``evtwin`` can turn any of them into one line on stderr in one place
(:func:`streams.cli.main`)::

    EvTwinError
    ├── schemas.SchemaError             contracts, codec, schema registry
    ├── models.errors.ModelError        trained models, the model registry
    ├── models.physics.errors.PhysicsError
    ├── datasets.errors.DatasetError
    ├── training.errors.TrainingError
    ├── connectors.ConnectorError       embedded stack, Kafka admin, database, MQTT
    └── streams.errors.StreamsError     stream apps, sinks, benchmarks, the CLI's usage errors

Every message says what was wrong and, where it can, how to fix it.
"""

from __future__ import annotations


class EvTwinError(Exception):
    """Root of every error raised by the EV battery twin's packages."""


__all__ = ["EvTwinError"]
