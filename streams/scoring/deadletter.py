"""Dead letters: a record the pipeline cannot process goes to ``ev.telemetry.dlq.v1`` whole, with
why, where from, and when — in the Avro envelope and in the Kafka headers alike."""

from __future__ import annotations

import time

from schemas.codec import AvroCodec

HEADER_REASON = "evtwin.reason"
HEADER_ERROR_TYPE = "evtwin.error.type"
HEADER_SOURCE_TOPIC = "evtwin.source.topic"
HEADER_SOURCE_PARTITION = "evtwin.source.partition"
HEADER_SOURCE_OFFSET = "evtwin.source.offset"


def dead_letter(
    codec: AvroCodec,
    *,
    reason: str,
    error_type: str,
    source_topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    now_ms: int | None = None,
) -> tuple[bytes, list[tuple[str, bytes]]]:
    """Return the encoded dead-letter value and its headers.

    Args:
        codec: A codec of the ``dead_letter`` schema.
        reason: Why the record was rejected, human readable.
        error_type: ``decode_error`` or ``validation_error`` (or another class of failure).
        source_topic: Where the record came from (a Kafka topic, or ``mqtt:<topic>``).
        partition: Source partition; -1 when the source has none (MQTT).
        offset: Source offset; -1 when the source has none.
        key: The original key bytes.
        value: The original value bytes.
        now_ms: Rejection time, epoch milliseconds; default now.
    """
    failed_at = now_ms if now_ms is not None else int(time.time() * 1000)
    encoded = codec.encode({
        "reason": reason, "error_type": error_type, "source_topic": source_topic,
        "source_partition": partition, "source_offset": offset,
        "original_key": key, "original_value": value, "failed_at": failed_at,
    })
    headers = [
        (HEADER_REASON, reason.encode()),
        (HEADER_ERROR_TYPE, error_type.encode()),
        (HEADER_SOURCE_TOPIC, source_topic.encode()),
        (HEADER_SOURCE_PARTITION, str(partition).encode()),
        (HEADER_SOURCE_OFFSET, str(offset).encode()),
    ]
    return encoded, headers


__all__ = ["dead_letter"]
