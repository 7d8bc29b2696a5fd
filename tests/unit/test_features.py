"""The one feature module: both input paths agree, missing inputs become NaN, and it is fast enough."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from models.features import (
    FEATURE_NAMES,
    MODES,
    features_from_frame,
    features_from_records,
    frame_timestamps_ms,
)
from models.physics.ocv import ocv


def _frame(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """Readings with the dataset's columns (values in realistic ranges, every mode)."""
    rng = np.random.default_rng(seed)
    soc = rng.uniform(5, 100, n)
    current = rng.choice([0.0, 5.0, 60.0, -30.0, -300.0], n) + rng.normal(0, 0.5, n)
    voltage = 96 * ocv(soc / 100) - current * 0.06
    vmin = voltage / 96 - rng.uniform(0, 0.05, n)
    return pd.DataFrame({
        "SoC": soc, "SoH": rng.uniform(80, 100, n), "Battery_Voltage": voltage,
        "Battery_Current": current, "Battery_Temperature": rng.uniform(-5, 45, n),
        "Charge_Cycles": rng.integers(0, 3000, n), "Power_Consumption": voltage * current / 1000,
        "Ambient_Temperature": rng.uniform(-10, 35, n), "Cell_Voltage_Min": vmin,
        "Cell_Voltage_Max": vmin + rng.uniform(0.002, 0.3, n),
        "Service_Days": np.where(rng.random(n) < 0.05, 0.0, rng.uniform(0, 5000, n)),
        "Mode": rng.choice(["PARKED", "DRIVING", "CHARGING_AC", "CHARGING_DC"], n),
    })


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """The same rows as telemetry records (schema field names, Python scalars; the battery and the
    event time when the frame has them, which the battery state reads)."""
    out = [
        {"soc": r.SoC, "soh": r.SoH, "voltage": r.Battery_Voltage, "current": r.Battery_Current,
         "temperature": r.Battery_Temperature, "charge_cycles": int(r.Charge_Cycles),
         "power_consumption": r.Power_Consumption, "ambient_temperature": r.Ambient_Temperature,
         "cell_voltage_min": r.Cell_Voltage_Min, "cell_voltage_max": r.Cell_Voltage_Max,
         "service_days": r.Service_Days, "mode": r.Mode}
        for r in df.itertuples()
    ]
    if "battery_id" in df.columns:
        ts = frame_timestamps_ms(df)
        for rec, battery, t in zip(out, df["battery_id"], ts, strict=True):
            rec["battery_id"], rec["timestamp"] = battery, int(t)
    return out


def test_records_and_frame_give_identical_features() -> None:
    df = _frame()
    a, b = features_from_frame(df), features_from_records(_records(df))
    assert a.dtype == b.dtype == np.float32
    assert a.shape == (len(df), len(FEATURE_NAMES))
    np.testing.assert_array_equal(a, b)


def test_generated_dataset_rows_match_both_paths() -> None:
    from tests.support.small_model import small_data

    frame = small_data().frame.iloc[::50]
    np.testing.assert_array_equal(features_from_frame(frame), features_from_records(_records(frame)))


def test_derived_features_follow_the_physics() -> None:
    df = _frame()
    X = pd.DataFrame(features_from_frame(df), columns=FEATURE_NAMES)
    np.testing.assert_allclose(X["temperature_rise"], df["Battery_Temperature"] - df["Ambient_Temperature"],
                               rtol=1e-5, atol=1e-4)
    spread = (df["Cell_Voltage_Max"] - df["Cell_Voltage_Min"]) * 1000
    np.testing.assert_allclose(X["cell_voltage_spread"], spread, rtol=1e-4, atol=1e-3)
    loaded = df["Battery_Current"].abs() >= 20
    np.testing.assert_allclose(X.loc[loaded, "resistance"], 60.0, atol=2.0)  # built with 60 mOhm
    assert X.loc[~loaded, "resistance"].isna().all()
    age = np.maximum(df["Service_Days"], 1.0)
    np.testing.assert_allclose(X["cycles_per_day"], df["Charge_Cycles"] / age, rtol=1e-5)
    np.testing.assert_allclose(X["fade_rate"], (100 - df["SoH"]) / np.maximum(df["Service_Days"] / 365.25, 1 / 12),
                               rtol=1e-5)
    fade = (100 - df["SoH"]).clip(lower=0.25)
    np.testing.assert_allclose(X["projected_days_left"], age * ((20 / fade) ** (4 / 3) - 1), rtol=1e-4)
    np.testing.assert_allclose(X["projected_cycles_left"], X["projected_days_left"] * X["cycles_per_day"],
                               rtol=1e-4)
    np.testing.assert_allclose(X["sqrt_cycles_left"], df["Charge_Cycles"] * ((20 / fade) ** 2 - 1), rtol=1e-4)
    onehot = X[["mode_parked", "mode_driving", "mode_charging_ac", "mode_charging_dc"]].to_numpy()
    assert (onehot.sum(axis=1) == 1).all()


def test_missing_optional_fields_become_nan_and_unknown_mode() -> None:
    rec = {"soc": 50.0, "soh": 95.0, "voltage": 355.0, "current": 0.0, "temperature": 20.0,
           "charge_cycles": 10, "power_consumption": 0.0, "ambient_temperature": None,
           "cell_voltage_min": None, "cell_voltage_max": None, "mode": "UNKNOWN"}
    bare = {k: v for k, v in rec.items() if v is not None and k != "mode"}
    for row in features_from_records([rec, bare]):
        x = dict(zip(FEATURE_NAMES, row, strict=True))
        for name in ("ambient_temperature", "temperature_rise", "cell_voltage_spread", "resistance",
                     "service_days", "cycles_per_day", "fade_rate", "projected_days_left",
                     "projected_cycles_left"):
            assert np.isnan(x[name]), name
        assert x["mode_parked"] == x["mode_driving"] == x["mode_charging_ac"] == x["mode_charging_dc"] == 0
    assert MODES[0] == "UNKNOWN"
    frame = pd.DataFrame({"SoC": [50.0], "SoH": [95.0], "Battery_Voltage": [355.0], "Battery_Current": [0.0],
                          "Battery_Temperature": [20.0], "Charge_Cycles": [10], "Power_Consumption": [0.0]})
    np.testing.assert_array_equal(features_from_frame(frame), features_from_records([bare]))


def test_missing_required_field_raises() -> None:
    with pytest.raises(KeyError):
        features_from_records([{"soc": 1.0}])


def test_empty_batch() -> None:
    assert features_from_records([]).shape == (0, len(FEATURE_NAMES))
