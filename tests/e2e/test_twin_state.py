"""The twin's per-battery state on the real broker and real workers: a battery's dataset rows fed
through the stream give the same state, features, predictions and battery fault score and flag as
training computes, to the float — also when the worker is killed halfway and another one restores
the state from the changelog."""

from __future__ import annotations

import signal
import time
import uuid

import numpy as np
import pandas as pd

from connectors import kafka
from connectors.embedded.groups import remove_group_members
from models import state as st
from models.features import (
    features_from_columns,
    features_from_frame,
    frame_timestamps_ms,
    record_columns,
)
from models.scorer import Scorer
from schemas.codec import AvroCodec
from streams.runtime.codecs import codec_for
from streams.state.estimator import TwinEstimator
from streams.topics import PREDICTIONS, TELEMETRY
from tests.support.topic_reader import read_topic

OLD_READINGS_OK = {"EVTWIN_MAX_EVENT_AGE_S": str(50 * 365 * 86400.0)}  # the dataset starts in 2020
OUTPUTS = ("rul_p10", "rul_cycles", "rul_p90", "failure_probability", "anomaly_score")


def _dataset(prefix: str, batteries: int = 3, rows: int = 160) -> pd.DataFrame:
    """The first ``rows`` readings of a few generated batteries (one with a fault), renamed."""
    from tests.support.small_model import small_data

    frame = small_data().frame
    faulty = frame.loc[frame["fault"] != "none", "battery_id"].iloc[:1].tolist()
    names = list(dict.fromkeys(faulty + frame["battery_id"].unique().tolist()))[:batteries]
    parts = [frame[frame["battery_id"] == b].iloc[:rows] for b in names]
    out = pd.concat(parts, ignore_index=True)
    out["battery_id"] = prefix + out["battery_id"].astype(str)
    return out


def _records(frame: pd.DataFrame) -> list[dict]:
    ts = frame_timestamps_ms(frame)
    return [
        {"event_id": str(uuid.uuid4()), "battery_id": r.battery_id, "timestamp": int(t), "seq": i,
         "soc": float(r.SoC), "soh": float(r.SoH), "voltage": float(r.Battery_Voltage),
         "current": float(r.Battery_Current), "temperature": float(r.Battery_Temperature),
         "charge_cycles": int(r.Charge_Cycles), "power_consumption": float(r.Power_Consumption),
         "ambient_temperature": float(r.Ambient_Temperature), "cell_voltage_min": float(r.Cell_Voltage_Min),
         "cell_voltage_max": float(r.Cell_Voltage_Max), "service_days": float(r.Service_Days), "mode": r.Mode}
        for i, (r, t) in enumerate(zip(frame.itertuples(), ts, strict=True))
    ]


def _produce(bootstrap: str, records: list[dict]) -> None:
    codec, producer = AvroCodec("telemetry"), kafka.producer(bootstrap)
    for rec in records:
        producer.produce(TELEMETRY, codec.encode(rec), rec["battery_id"].encode())
    assert producer.flush(30) == 0


def _predictions(ep, prefix: str, event_ids: set[str], timeout: float = 120) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    """The last prediction of each of ``event_ids``."""
    codec = codec_for(PREDICTIONS, ep)
    seen: dict[str, dict] = {}

    def done(found: list) -> bool:
        p = codec.decode(found[-1].value())
        seen[p["event_id"]] = p
        return event_ids <= set(seen)

    read_topic(ep.kafka_bootstrap_servers, PREDICTIONS, lambda m: (m.key() or b"").startswith(prefix.encode()),
               10**9, timeout, done)
    return seen


def _changelog_states(ep, app_id: str, prefix: str) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    """The newest state of every battery ``prefix…`` on the twin changelog."""
    est = TwinEstimator("unused")
    out: dict[str, np.ndarray] = {}
    for m in read_topic(ep.kafka_bootstrap_servers, f"{app_id}-twin-changelog",
                        lambda m: (m.key() or b"").startswith(prefix.encode()), 10**9, timeout=8):
        out[m.key().decode()] = np.array(est.states.decode(m.value()))
    return out


def _expected(model_dir, frame: pd.DataFrame) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:  # type: ignore[no-untyped-def]
    """Training's features of ``frame``, the model's outputs on them, and each battery's final state."""
    from models.features import replay

    X = features_from_frame(frame)
    out = Scorer.load(model_dir).score(X)
    records = _records(frame)
    c, mode = record_columns(records)
    states: dict = {}
    replay(frame["battery_id"].tolist(), c, mode, frame_timestamps_ms(frame), states)
    return X, out, {b: np.array(s) for b, s in states.items()}


def _faults(model_dir, frame: pd.DataFrame, anomaly: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    """Training's fault score and flag of each row, with the thresholds the workers take from the
    model card (their defaults without)."""
    from training.evaluate import fault_scores

    card = Scorer.load(model_dir).card or {}
    return fault_scores(anomaly, frame, float(card.get("fault_score_open", 0.5)),
                        float(card.get("fault_score_clear", 0.3)))


def _assert_same(preds: dict[str, dict], records: list[dict], idx: list[int] | range,
                 out: dict[str, np.ndarray], faults: tuple[np.ndarray, np.ndarray]) -> None:
    keys = {"rul_cycles": "rul_p50"}
    for i in idx:
        p = preds[records[i]["event_id"]]
        got = [p[k] for k in OUTPUTS] + [p["fault_score"], p["fault_flag"]]
        want = [float(out[keys.get(k, k)][i]) for k in OUTPUTS] + [float(faults[0][i]), bool(faults[1][i])]
        assert got == want, (i, records[i]["battery_id"], got, want)


def test_dataset_rows_through_the_stream_give_trainings_features_to_the_float(stack, workers, trained_model) -> None:  # type: ignore[no-untyped-def]
    _, ep = stack
    prefix = f"TWIN{uuid.uuid4().hex[:5]}_"
    frame = _dataset(prefix)
    records = _records(frame)
    X, out, final = _expected(trained_model, frame)
    workers.start(1, **OLD_READINGS_OK)
    _produce(ep.kafka_bootstrap_servers, records)
    preds = _predictions(ep, prefix, {r["event_id"] for r in records})
    assert len(preds) == len(records)
    faults = _faults(trained_model, frame, out["anomaly_score"])
    assert faults[0].max() > 0.0
    _assert_same(preds, records, range(len(records)), out, faults)
    states = _changelog_states(ep, workers.app_id, prefix)
    assert set(states) == set(final)
    for battery, s in final.items():
        np.testing.assert_array_equal(states[battery][:st.F_DAY], s[:st.F_DAY])  # the fault score: after scoring
    # the features of each battery's last reading, from the state the worker wrote, are training's
    last = frame.groupby("battery_id").tail(1).index.to_numpy()
    cols, mode = record_columns([records[i] for i in last])
    got = features_from_columns(cols, mode, np.stack([states[records[i]["battery_id"]] for i in last]))
    np.testing.assert_array_equal(got, X[last])


def test_a_worker_killed_halfway_is_replaced_by_one_that_restores_the_state(stack, workers, trained_model) -> None:  # type: ignore[no-untyped-def]
    _, ep = stack
    prefix = f"TWK{uuid.uuid4().hex[:5]}_"
    frame = _dataset(prefix, batteries=4, rows=120)
    records = _records(frame)
    X, out, final = _expected(trained_model, frame)
    half = len(records) // 2
    order = np.argsort(frame.groupby("battery_id").cumcount().to_numpy(), kind="stable")
    first, second = [int(i) for i in order[:half]], [int(i) for i in order[half:]]
    (worker,) = workers.start(1, **OLD_READINGS_OK)
    _produce(ep.kafka_bootstrap_servers, [records[i] for i in first])
    _predictions(ep, prefix, {records[i]["event_id"] for i in first})
    worker.send_signal(signal.SIGKILL)
    worker.wait(10)
    time.sleep(1.0)
    remove_group_members(ep.kafka_bootstrap_servers, workers.app_id)  # as `evtwin up` does on noida-db
    workers.start(1, **OLD_READINGS_OK)
    _produce(ep.kafka_bootstrap_servers, [records[i] for i in second])
    preds = _predictions(ep, prefix, {r["event_id"] for r in records}, timeout=150)
    _assert_same(preds, records, second, out, _faults(trained_model, frame, out["anomaly_score"]))  # after
    # the restore: as if nothing had happened
    states = _changelog_states(ep, workers.app_id, prefix)
    for battery, s in final.items():
        np.testing.assert_array_equal(states[battery][:st.F_DAY], s[:st.F_DAY])
