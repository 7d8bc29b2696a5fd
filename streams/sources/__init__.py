"""Where telemetry comes from: the fleet simulator and the MQTT ingest bridge."""
