"""Sinks: one small contract (:class:`streams.sinks.base.Sink`), the database sink and the MQTT
bridge on it, and the one Faust app that runs any set of sinks (:mod:`streams.sinks.app`)."""
