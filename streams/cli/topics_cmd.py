"""``evtwin topics list | create | produce | consume``: how users produce and consume our topics."""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections.abc import Iterator
from typing import IO, Any

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, TopicPartition
from rich.console import Console
from rich.table import Table

from connectors import KafkaDeliveryError, kafka
from connectors.endpoints import Endpoints, resolve_endpoints
from schemas import DecodeError, EncodeError
from schemas.codec import AvroCodec
from schemas.jsonio import record_from_json, record_to_json
from schemas.registry import SchemaRegistryClient
from streams.cli import CliError
from streams.settings import Settings
from streams.topics import TopicSpec, spec_for, topic_specs


def register(sub: Any, opt: Any) -> None:
    topics = sub.add_parser("topics", help="list, create, produce to and consume from our topics",
                            description="List, create, produce to and consume from our topics.")
    tsub = topics.add_subparsers(dest="topics_command", metavar="ACTION", required=True)

    p = tsub.add_parser("list", help="the spec's topics and what the broker has")
    p.set_defaults(handler=run_list)

    p = tsub.add_parser("create", help="create the spec's topics (idempotent)")
    opt.setting(p, "--partitions", "topic_partitions", "partitions per topic", type=int)
    p.set_defaults(handler=run_create)

    p = tsub.add_parser("produce", help="produce JSON lines as Avro records",
                        description="Read one JSON object per line (file or stdin), encode it as an "
                        "Avro record of the topic's schema and produce it, keyed by --key-field. "
                        "Timestamps may be ISO-8601 or epoch milliseconds; telemetry without "
                        "event_id gets a UUID. Stops at the first bad line: what came before it is "
                        "produced, and the error names the line.")
    p.add_argument("topic", help="one of: " + ", ".join(t.name for t in topic_specs()))
    opt.env(p, "--file", "EVTWIN_PRODUCE_FILE", "JSON-lines file; - for stdin", default="-")
    opt.env(p, "--key-field", "EVTWIN_PRODUCE_KEY_FIELD", "record field used as the message key",
            default="battery_id")
    opt.env(p, "--framing", "EVTWIN_PRODUCE_FRAMING",
            "wire framing: auto (Confluent with a schema registry, else single-object), "
            "single-object or confluent", default="auto")
    p.set_defaults(handler=run_produce)

    p = tsub.add_parser("consume", help="print decoded records as JSON lines",
                        description="Print the topic's records as JSON, one per line. Without "
                        "--follow it stops when it has read what the topic held when it started.")
    p.add_argument("topic", help="one of: " + ", ".join(t.name for t in topic_specs()))
    opt.flag(p, "--from-beginning", "EVTWIN_CONSUME_FROM_BEGINNING",
             "start at the oldest record (default: only records that arrive from now on)")
    opt.flag(p, "--follow", "EVTWIN_CONSUME_FOLLOW", "keep waiting for new records until Ctrl-C")
    opt.env(p, "--limit", "EVTWIN_CONSUME_LIMIT", "stop after this many records; 0 = no limit",
            default=0, type=int)
    opt.flag(p, "--with-meta", "EVTWIN_CONSUME_WITH_META",
             "wrap each record with topic, partition, offset, key and timestamp")
    opt.env(p, "--idle-timeout", "EVTWIN_CONSUME_IDLE_TIMEOUT",
            "without --follow: stop after this many seconds without a record", default=3.0, type=float)
    p.set_defaults(handler=run_consume)


def _spec(name: str, settings: Settings) -> TopicSpec:
    spec = spec_for(name, settings.topic_partitions)
    if spec is None:
        known = ", ".join(t.name for t in topic_specs())
        raise CliError(f"unknown topic {name!r}; our topics are: {known}")
    return spec


def _codec(spec: TopicSpec, endpoints: Endpoints, framing: str = "auto") -> AvroCodec:
    if framing not in ("auto", "single-object", "confluent"):
        raise CliError(f"--framing must be auto, single-object or confluent, not {framing!r}")
    url = endpoints.schema_registry_url
    if framing == "confluent" and not url:
        raise CliError("--framing confluent needs a schema registry: set EVTWIN_SCHEMA_REGISTRY_URL "
                       "or start the stack with --with-schema-registry")
    registry = SchemaRegistryClient(url) if url and framing != "single-object" else None
    return AvroCodec(spec.schema, topic=spec.name, registry=registry)


def _require_topic(endpoints: Endpoints, spec: TopicSpec) -> None:
    if spec.name not in kafka.list_topics(endpoints.kafka_bootstrap_servers):
        raise CliError(f"topic {spec.name} does not exist on {endpoints.kafka_bootstrap_servers}; "
                       "create it with `evtwin topics create`")


def run_list(args: argparse.Namespace, settings: Settings) -> int:
    endpoints = resolve_endpoints(settings)
    present = kafka.list_topics(endpoints.kafka_bootstrap_servers)
    table = Table(title=f"Topics on {endpoints.kafka_bootstrap_servers}", title_justify="left")
    for col in ("topic", "partitions", "spec", "schema", "carries"):
        table.add_column(col)
    specs = topic_specs(settings.topic_partitions)
    for spec in specs:
        have = present.get(spec.name)
        table.add_row(spec.name, str(have.partitions) if have else "missing",
                      str(spec.partitions), spec.schema, spec.doc)
    for name in sorted(set(present) - {s.name for s in specs}):
        table.add_row(name, str(present[name].partitions), "—", "—", "not ours")
    Console().print(table)
    return 0


def run_create(args: argparse.Namespace, settings: Settings) -> int:
    endpoints = resolve_endpoints(settings)
    created = kafka.ensure_topics(endpoints.kafka_bootstrap_servers,
                                  topic_specs(settings.topic_partitions),
                                  settings.topic_replication_factor)
    print(f"created: {', '.join(created) if created else 'nothing (all topics exist)'}")
    return 0


def _lines(path: str) -> Iterator[tuple[int, str]]:
    stream: IO[str] = sys.stdin if path == "-" else _open(path)
    with stream:
        for number, line in enumerate(stream, 1):
            if line.strip():
                yield number, line


def _open(path: str) -> IO[str]:
    try:
        return open(path, encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None


def run_produce(args: argparse.Namespace, settings: Settings) -> int:
    spec = _spec(args.topic, settings)
    endpoints = resolve_endpoints(settings)
    codec = _codec(spec, endpoints, args.framing)
    _require_topic(endpoints, spec)
    producer = kafka.checked_producer(endpoints.kafka_bootstrap_servers)
    failure: str | None = None
    count = 0
    try:
        for number, line in _lines(args.file):
            try:
                record = record_from_json(spec.schema, json.loads(line))
                value = codec.encode(record)
            except json.JSONDecodeError as exc:
                raise CliError(f"line {number}: invalid JSON ({exc.msg} at column {exc.colno}); "
                               f"{count} record(s) before it were produced") from None
            except EncodeError as exc:
                raise CliError(f"line {number}: {exc}; {count} record(s) before it were produced") from None
            key = record.get(args.key_field)
            producer.produce(spec.name, value=value, key=None if key is None else str(key).encode())
            producer.poll(0)
            count += 1
    finally:
        try:
            producer.flush_delivered(30)
        except KafkaDeliveryError as exc:
            failure = str(exc)
    if failure is not None:
        raise CliError(f"delivery failed: {failure}")
    print(f"produced {count} record(s) to {spec.name} ({codec.framing} framing)", file=sys.stderr)
    return 0


def run_consume(args: argparse.Namespace, settings: Settings) -> int:
    spec = _spec(args.topic, settings)
    endpoints = resolve_endpoints(settings)
    codec = _codec(spec, endpoints)
    _require_topic(endpoints, spec)
    consumer = kafka.consumer(endpoints.kafka_bootstrap_servers, f"evtwin-cli-{uuid.uuid4().hex[:8]}")
    try:
        return _consume(consumer, spec, codec, args)
    finally:
        consumer.close()


def _consume(consumer: Any, spec: TopicSpec, codec: AvroCodec, args: argparse.Namespace) -> int:
    meta = consumer.list_topics(spec.name, timeout=10).topics[spec.name]
    start = OFFSET_BEGINNING if args.from_beginning else OFFSET_END
    partitions = [TopicPartition(spec.name, p, start) for p in meta.partitions]
    # What the topic held at start: reading up to these marks ends a run without --follow.
    pending = {}
    for tp in partitions:
        low, high = consumer.get_watermark_offsets(tp, timeout=10)
        if args.from_beginning and high > low:
            pending[tp.partition] = high
    consumer.assign(partitions)
    printed, bad, last = 0, 0, time.monotonic()
    while not args.limit or printed < args.limit:
        msg = consumer.poll(0.2)
        if msg is None:
            idle = time.monotonic() - last
            if not args.follow and ((not pending and idle > 0.5) or idle > args.idle_timeout):
                break
            continue
        if msg.error():
            raise CliError(f"consume failed: {msg.error().str()}")
        last = time.monotonic()
        if pending.get(msg.partition(), -1) <= msg.offset() + 1:
            pending.pop(msg.partition(), None)
        try:
            record = record_to_json(spec.schema, codec.decode(msg.value()))
        except DecodeError as exc:
            bad += 1
            print(f"evtwin: partition {msg.partition()} offset {msg.offset()}: {exc}", file=sys.stderr)
            continue
        if args.with_meta:
            key = msg.key()
            record = {"topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset(),
                      "key": key.decode(errors="replace") if key is not None else None,
                      "timestamp": msg.timestamp()[1], "value": record}
        print(json.dumps(record), flush=False)
        printed += 1
    sys.stdout.flush()
    print(f"consumed {printed} record(s) from {spec.name}"
          + (f"; {bad} could not be decoded" if bad else ""), file=sys.stderr)
    return 0


__all__ = ["register"]
