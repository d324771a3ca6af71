"""Validates every device map in device-maps/<kind>/ against its JSON Schema, and checks
that known-bad maps are rejected. Exits non-zero on any failure."""
import json
import pathlib
import sys

import jsonschema

root = pathlib.Path(__file__).resolve().parents[2] / "device-maps"
failures = 0
for kind in ("modbus", "ble"):
    schema_path = root / "schema" / f"{kind}-device-map.schema.json"
    if not schema_path.exists():
        continue
    schema = json.loads(schema_path.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    files = sorted((root / kind).glob("*.json"))
    for f in files:
        errors = list(validator.iter_errors(json.loads(f.read_text())))
        for e in errors:
            failures += 1
            print(f"{f.relative_to(root)}: {'/'.join(map(str, e.path))}: {e.message}")
    print(f"{kind}: {len(files)} maps checked")
    if kind == "modbus":
        bad = {"name": "bad", "points": {"v": {"table": "coil", "address": 70000, "type": "u16"}}}
        if not list(validator.iter_errors(bad)):
            failures += 1
            print("schema accepted a bad map")
# The configuration schemas (generated from the Rust types) accept the examples and
# refuse broken configurations; an inline map is checked with the map schema.
broken = {
    "modbus": [
        {"devices": {"m": {"map": "x", "connection": {"type": "tcp"}, "pollIntervalMs": "fast"}}},
        {"devices": {"m": {"map": "x", "connection": {"type": "tcp", "host": "h"}, "pollIntervalMs": 5}}},
        {"devices": {"m": {"map": "x", "connection": {"type": "rtu", "port": "/dev/x", "dataBits": 9}}}},
        {"devices": {"m": {"map": {"name": "i", "points": {"v": {"table": "coil", "address": 1, "type": "u16"}}}, "connection": {"type": "simulated"}}}},
        {"devices": {}, "slaveConfigs": {}},
        {"devices": {"m": {"map": "x", "connection": {"type": "rtu", "port": "/dev/x"}, "unitId": 0}}},
    ],
    "ble": [
        {"devices": {"t": {"address": "nope", "map": "bthome-v2"}}},
        {"devices": {"t": {"address": "C0:FF:EE:00:00:01", "map": "bthome-v2", "pollIntervalMs": 5}}},
        {"devices": {"t": {"address": "C0:FF:EE:00:00:01", "map": "bthome-v2", "writable": [{"name": "x"}]}}},
        {"scan": {"mode": "quiet"}},
    ],
}
for kind in ("modbus", "ble"):
    cfg_schema = json.loads((root / "schema" / f"{kind}-config.schema.json").read_text())
    cfg_validator = jsonschema.Draft202012Validator(cfg_schema)
    example = json.loads((root / "examples" / f"{kind}-config.json").read_text())
    for e in cfg_validator.iter_errors(example):
        failures += 1
        print(f"examples/{kind}-config.json: {'/'.join(map(str, e.path))}: {e.message}")
    for doc in broken[kind]:
        if not list(cfg_validator.iter_errors(doc)):
            failures += 1
            print(f"{kind} config schema accepted a broken config: {json.dumps(doc)}")
    print(f"{kind} config schema checked")
sys.exit(1 if failures else 0)
