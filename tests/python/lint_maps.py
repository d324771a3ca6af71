"""Lints the bundled Modbus device maps (device-maps/modbus/*.json) beyond their JSON Schema:
the checks a register table transcription needs. Exits non-zero and names file, point and
rule on every failure.

    lint_maps.py [DIR]      # default: device-maps/modbus of this repository

Rules:
  - file name (without .json) == "name"; name, manufacturer, model, source, description non-empty
  - every point has a description; point names are identifiers (they become telemetry fields)
    and not one of RESERVED (names the generated DTDL interface already uses)
  - addresses 0-65535 and address + register span <= 65536
  - register span = width of the type (u16/i16/bit 1, u32/i32/f32 2, u64/i64/f64 4,
    string `length` registers = ceil(characters / 2)); no two points of one table overlap,
    except different bits of the same register
  - bit: only with a `bit` index 0-15 and only on holding/input; bool: only on coil and
    discreteInput, and those tables hold nothing else
  - `length` only (and always) on strings, 1-125 registers
  - byteOrder/wordOrder are big/little; wordOrder only on multi-register types
  - scale finite and non-zero; scalePoint names an i16 point of the same map
  - writable only on coil/holding; min <= max; min/max only on writable points
  - unit from UNITS below (or absent / "" for dimensionless values)
  - README.md's "Bundled device maps" table lists every map (checked for the repository's own
    directory only)
"""
import json
import math
import pathlib
import re
import sys

# Units a map may use, each with why it is needed. One list for every map.
UNITS = {
    "": "dimensionless (power factor, counts, codes)",
    "V": "voltage", "mV": "sensor signals", "kV": "medium-voltage meters",
    "A": "current", "mA": "4-20 mA loops",
    "W": "active power", "kW": "inverters and meters that report kW",
    "VA": "apparent power", "kVA": "apparent power in kVA",
    "var": "reactive power (SI spelling)", "VAr": "reactive power (as the Eastron tables spell it)",
    "kvar": "reactive power in kvar",
    "Wh": "energy counters in Wh", "kWh": "energy counters", "MWh": "large energy counters",
    "varh": "reactive energy", "kvarh": "reactive energy in kvarh", "kVArh": "reactive energy (Eastron spelling)",
    "VAh": "apparent energy", "kVAh": "apparent energy in kVAh",
    "Ah": "battery charge",
    "Hz": "frequency",
    "%": "state of charge, THD, duty, set points", "%RH": "relative humidity",
    "°": "phase angle, wind direction",
    "°C": "temperature", "°F": "temperature (US devices)", "K": "temperature differences",
    "hPa": "barometric pressure", "Pa": "differential pressure", "kPa": "pressure", "bar": "hydraulic pressure",
    "ppm": "gas concentration (CO2)", "ppb": "gas concentration (VOC)", "µg/m³": "particulate matter",
    "lx": "illuminance", "W/m²": "irradiance",
    "m/s": "wind speed", "rpm": "drive and fan speed", "Nm": "drive torque",
    "mm": "precipitation", "m³/h": "flow", "l/min": "flow", "l": "volume",
    "ms": "timings", "s": "durations", "min": "durations", "h": "operating hours", "d": "durations",
    "Ω": "insulation resistance", "kΩ": "insulation resistance",
    "µS/cm": "soil and water conductivity", "mg/kg": "soil nutrients (N, P, K)", "pH": "soil and water pH",
}

# The DTDL interface generated per map (modules/modbus/src/models.rs) adds these contents.
RESERVED = {"health", "read", "write"}

WIDTH = {"bool": 1, "bit": 1, "u16": 1, "i16": 1, "u32": 2, "i32": 2, "f32": 2, "u64": 4, "i64": 4, "f64": 4}
TABLES = {"coil", "discreteInput", "holding", "input"}
BIT_TABLES = {"coil", "discreteInput"}
ORDERS = {"big", "little"}
NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
POINT = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")


def span(p):
    if p.get("type") == "string":
        return p.get("length", 1)
    return WIDTH.get(p.get("type"), 1)


def lint(path):
    """Problems of one map file, as strings."""
    problems = []
    err = problems.append
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return [f"not valid JSON: {e}"]
    if not isinstance(doc, dict):
        return ["not a JSON object"]
    if doc.get("name") != path.stem:
        err(f"name {doc.get('name')!r} differs from the file name {path.stem!r}")
    if not NAME.match(str(doc.get("name", ""))):
        err("name must be lower-case letters, digits and '-'")
    for field in ("manufacturer", "model", "source", "description"):
        if not str(doc.get(field, "")).strip():
            err(f"{field} is missing or empty")
    for field in ("byteOrder", "wordOrder"):
        if field in doc and doc[field] not in ORDERS:
            err(f"{field} must be big or little")
    points = doc.get("points")
    if not isinstance(points, dict) or not points:
        return problems + ["points is missing or empty"]
    spans = []
    for name, p in points.items():
        at = f"points.{name}"
        if not POINT.match(name) or name.endswith("_"):
            err(f"{at}: not a valid point name")
        if name in RESERVED:
            err(f"{at}: reserved name (the generated DTDL interface has its own '{name}')")
        if not isinstance(p, dict):
            err(f"{at}: not an object")
            continue
        table, kind, address = p.get("table"), p.get("type"), p.get("address")
        if table not in TABLES:
            err(f"{at}: unknown table {table!r}")
            continue
        if kind not in WIDTH and kind != "string":
            err(f"{at}: unknown type {kind!r}")
            continue
        if not isinstance(address, int) or isinstance(address, bool) or not 0 <= address <= 65535:
            err(f"{at}: address {address!r} is not an integer 0-65535")
            continue
        width = span(p)
        if address + width > 65536:
            err(f"{at}: spans past address 65535 ({address} + {width} registers)")
        if not str(p.get("description", "")).strip():
            err(f"{at}: no description")
        if (kind == "bool") != (table in BIT_TABLES):
            err(f"{at}: type {kind} on table {table} (bool is for coil/discreteInput only, and they hold only bool)")
        if kind == "bit":
            b = p.get("bit")
            if not isinstance(b, int) or isinstance(b, bool) or not 0 <= b <= 15:
                err(f"{at}: a bit point needs bit 0-15, got {b!r}")
        elif "bit" in p:
            err(f"{at}: bit is only for type bit")
        if kind == "string":
            length = p.get("length")
            if not isinstance(length, int) or not 1 <= length <= 125:
                err(f"{at}: a string needs length 1-125 registers, got {length!r}")
        elif "length" in p:
            err(f"{at}: length is only for type string")
        for field in ("byteOrder", "wordOrder"):
            if field in p and p[field] not in ORDERS:
                err(f"{at}: {field} must be big or little")
        if "wordOrder" in p and kind in ("bool", "bit", "u16", "i16"):
            err(f"{at}: wordOrder on a one-register type")
        if "scale" in p:
            s = p["scale"]
            if not isinstance(s, (int, float)) or isinstance(s, bool) or s == 0 or not math.isfinite(s):
                err(f"{at}: scale must be a finite non-zero number")
        if "scalePoint" in p:
            sp = points.get(p["scalePoint"])
            if not isinstance(sp, dict) or sp.get("type") != "i16":
                err(f"{at}: scalePoint {p['scalePoint']!r} is not an i16 point of this map")
        unit = p.get("unit", "")
        if unit not in UNITS:
            err(f"{at}: unit {unit!r} is not in the known list (tests/python/lint_maps.py UNITS)")
        if p.get("writable") and table not in ("coil", "holding"):
            err(f"{at}: only coils and holding registers are writable")
        if ("min" in p or "max" in p) and not p.get("writable"):
            err(f"{at}: min/max limit writes, but the point is not writable")
        if "min" in p and "max" in p and p["min"] > p["max"]:
            err(f"{at}: min > max")
        if kind in ("bool", "bit", "string") and ("scale" in p or "offset" in p):
            err(f"{at}: scale/offset on a {kind} point")
        spans.append((table, address, address + width, name, kind, p.get("bit")))
    spans.sort()
    for i, a in enumerate(spans):
        for b in spans[i + 1:]:
            if b[0] != a[0] or b[1] >= a[2]:
                break
            if a[4] == "bit" and b[4] == "bit" and a[1] == b[1] and a[5] != b[5]:
                continue
            err(f"points.{b[3]}: overlaps points.{a[3]} ({a[0]} {a[1]}..{a[2] - 1})")
    return problems


def main():
    root = pathlib.Path(__file__).resolve().parents[2] / "device-maps" / "modbus"
    folder = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else root
    files = sorted(folder.glob("*.json"))
    failures = 0
    for f in files:
        for problem in lint(f):
            failures += 1
            print(f"{f.name}: {problem}")
    if not files:
        failures += 1
        print(f"no maps in {folder}")
    if folder.resolve() == root.resolve():
        readme = (root.parents[1] / "README.md").read_text(encoding="utf-8")
        listed = set(re.findall(r"^\| `([a-z0-9-]+)` \|", readme, re.MULTILINE))
        for f in files:
            if f.stem not in listed:
                failures += 1
                print(f"{f.name}: not listed in README.md (section Device maps, table of bundled maps)")
    print(f"lint: {len(files)} maps, {sum(len(json.loads(f.read_text()).get('points', {})) for f in files)} points, {failures} problems")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
