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
# The module configuration schema accepts the example and refuses a broken config.
cfg_schema = json.loads((root / "schema" / "modbus-config.schema.json").read_text())
cfg_validator = jsonschema.Draft202012Validator(cfg_schema)
example = json.loads((root / "examples" / "modbus-config.json").read_text())
for e in cfg_validator.iter_errors(example):
    failures += 1
    print(f"examples/modbus-config.json: {'/'.join(map(str, e.path))}: {e.message}")
broken = {"devices": {"m": {"map": "x", "connection": {"type": "tcp"}, "pollIntervalMs": "fast"}}}
if not list(cfg_validator.iter_errors(broken)):
    failures += 1
    print("config schema accepted a broken config")
print("modbus config schema checked")
sys.exit(1 if failures else 0)
