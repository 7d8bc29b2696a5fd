"""The golden files (tests/golden) and the telemetry record they were made from."""

from __future__ import annotations

from tests.support.paths import REPO

GOLDEN = REPO / "tests" / "golden"

#: The seed's example telemetry record; ``golden/telemetry.single-object.hex`` is its encoding.
TELEMETRY = {
    "event_id": "00000000-0000-4000-8000-000000000001",
    "battery_id": "BATTERY_001",
    "timestamp": 1760956215123,  # 2025-10-20T10:30:15.123Z, the seed's example
    "seq": 7,
    "soc": 85.5,
    "soh": 95.2,
    "voltage": 380.5,
    "current": 105.3,
    "temperature": 32.1,
    "charge_cycles": 150,
    "power_consumption": 40.1,
    "ambient_temperature": 21.0,
    "cell_voltage_min": 3.95,
    "cell_voltage_max": 3.97,
    "service_days": 412.5,
    "mode": "DRIVING",
}
