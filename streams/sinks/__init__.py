"""Sinks: one small contract (:class:`streams.sinks.base.Sink`), the database sink and the MQTT
bridge on it, and the one Faust app that runs any set of sinks (:mod:`streams.sinks.app`)."""

SINK_KINDS: dict[str, str] = {
    "database": "streams.sinks.database:DatabaseSink",
    "mqtt": "streams.sinks.mqtt:MqttSink",
    "groundtruth": "streams.sinks.groundtruth:GroundTruthSink",
    "email": "streams.sinks.email:EmailSink",
    "webhook": "streams.sinks.webhook:WebhookSink",
    "export": "streams.sinks.export:ExportSink",
    "accuracy": "streams.sinks.accuracy:AccuracySink",
}
"""Sink kinds ``evtwin sink --kind`` knows: name -> ``module:class`` (imported on use). A new sink
is one class on :class:`streams.sinks.base.Sink` and one line here."""
