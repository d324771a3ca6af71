"""Register images of every bundled device map, for tests/tests/modbus_map_library.rs.

For each map (one Modbus unit id per map) this picks test values independently of the
module (seeded per map, so runs repeat), encodes them into registers with Python's struct
module in the map's byte and word order, and computes the engineering values the module
must report from the raw encoding: raw x scale (x 10^sf for SunSpec scale factors) +
offset, NUL-trimmed strings, single bits of registers. The module's decoder is never run.

    map_image.py --spec SPEC.json --expected EXPECTED.json [--maps DIR]

SPEC.json is a tests/python/modbus_server.py spec (every register given as a u16 word).
EXPECTED.json: {"maps": {name: {"unit": id, "points": {point: {"value": v, "kind":
"int|float|bool|string", "tolerance": t, "channel": "telemetry|fact|hidden"}}}}}
"""
import argparse
import json
import math
import pathlib
import random
import string
import struct
import zlib

FORMATS = {"u16": "H", "i16": "h", "u32": "I", "i32": "i", "u64": "Q", "i64": "q", "f32": "f", "f64": "d"}
BITS = {"u16": 16, "i16": 16, "u32": 32, "i32": 32, "u64": 64, "i64": 64}
# Registers between points up to this many are served as zeros, so the module's merged
# reads (which span small gaps) are answered as a real device with a dense table would.
FILL_GAP = 16


def words(raw, byte_order, word_order):
    """Big-endian bytes of a value -> 16-bit register values in the given orders."""
    ws = [raw[i:i + 2] for i in range(0, len(raw), 2)]
    if word_order == "little":
        ws.reverse()
    if byte_order == "little":
        ws = [w[::-1] for w in ws]
    return [int.from_bytes(w, "big") for w in ws]


def pick_raw(rng, kind):
    """A raw test value that exercises the type's range (sign, high word, high bit)."""
    if kind in ("u16", "u32", "u64"):
        n = BITS[kind]
        return rng.choice([rng.randrange(0, 2 ** n), rng.randrange(2 ** (n - 1), 2 ** n), rng.randrange(1, 1000)])
    if kind in ("i16", "i32", "i64"):
        n = BITS[kind]
        return rng.choice([rng.randrange(-(2 ** (n - 1)), 0), rng.randrange(0, 2 ** (n - 1)), -rng.randrange(1, 1000)])
    if kind == "f32":
        v = round(rng.uniform(-50000, 50000), rng.randrange(0, 4))
        return struct.unpack(">f", struct.pack(">f", v))[0]  # exactly representable
    if kind == "f64":
        return round(rng.uniform(-1e9, 1e9), rng.randrange(0, 7))
    raise ValueError(kind)


def image(doc, rng):
    """(tables {table: {address: word or bool}}, expected {point: {...}})."""
    byte_default = doc.get("byteOrder", "big")
    word_default = doc.get("wordOrder", "big")
    points = doc["points"]
    cells = {"coil": {}, "discreteInput": {}, "holding": {}, "input": {}}
    expected = {}
    # Scale-factor points first: their value decides the scaled points' expectations.
    sf_names = {p["scalePoint"] for p in points.values() if "scalePoint" in p}
    sf_value = {}
    for name in sorted(points, key=lambda n: (n not in sf_names, n)):
        p = points[name]
        table, kind, addr = p["table"], p["type"], p["address"]
        bo = p.get("byteOrder", byte_default)
        wo = p.get("wordOrder", word_default)
        channel = "fact" if p.get("staticFact") else ("telemetry" if p.get("publish", True) else "hidden")
        entry = {"channel": channel, "tolerance": 0}
        if kind == "bool":
            v = rng.random() < 0.5
            cells[table][addr] = v
            entry.update(kind="bool", value=v)
        elif kind == "bit":
            v = rng.random() < 0.5
            word = cells[table].get(addr, rng.randrange(0, 65536))
            word = (word | (1 << p["bit"])) if v else (word & ~(1 << p["bit"]))
            cells[table][addr] = word
            entry.update(kind="bool", value=v)
        elif kind == "string":
            n = rng.randrange(1, 2 * p["length"] + 1)
            text = "".join(rng.choice(string.ascii_letters + string.digits + "-.") for _ in range(n))
            raw = text.encode().ljust(2 * p["length"], b"\0")
            # Text in register order; byteOrder swaps the two characters of a register,
            # wordOrder reverses the registers, as for numbers.
            for i, w in enumerate(words(raw, bo, wo)):
                cells[table][addr + i] = w
            entry.update(kind="string", value=text)
        else:
            if name in sf_names:
                raw_value = rng.randrange(-3, 3)
                sf_value[name] = raw_value
            else:
                raw_value = pick_raw(rng, kind)
            raw = struct.pack(">" + FORMATS[kind], raw_value)
            for i, w in enumerate(words(raw, bo, wo)):
                cells[table][addr + i] = w
            scale = p.get("scale", 1)
            if "scalePoint" in p:
                scale *= 10.0 ** sf_value[p["scalePoint"]]
            offset = p.get("offset", 0)
            if scale == 1 and offset == 0:
                entry.update(kind="float" if kind.startswith("f") else "int", value=raw_value)
            else:
                value = raw_value * scale + offset
                entry.update(kind="float", value=value, tolerance=abs(scale) if kind.startswith("f") else abs(scale) / 2)
        expected[name] = entry
    return cells, expected


def spec_tables(cells):
    out = {}
    for table, key in (("coil", "coils"), ("discreteInput", "discrete"), ("holding", "holding"), ("input", "input")):
        c = dict(cells[table])
        if table in ("holding", "input"):
            addrs = sorted(c)
            for a, b in zip(addrs, addrs[1:]):
                if 1 < b - a <= FILL_GAP:
                    for x in range(a + 1, b):
                        c[x] = 0
            out[key] = [{"address": a, "type": "u16", "value": v} for a, v in sorted(c.items())]
        else:
            out[key] = [{"address": a, "value": v} for a, v in sorted(c.items())]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--maps", default=str(pathlib.Path(__file__).resolve().parents[2] / "device-maps" / "modbus"))
    ap.add_argument("--spec", required=True)
    ap.add_argument("--expected", required=True)
    args = ap.parse_args()
    files = sorted(pathlib.Path(args.maps).glob("*.json"))
    if len(files) > 247:
        raise SystemExit("more maps than Modbus unit ids")
    units, maps = {}, {}
    for unit, f in enumerate(files, start=1):
        doc = json.loads(f.read_text(encoding="utf-8"))
        rng = random.Random(zlib.crc32(doc["name"].encode()))
        cells, expected = image(doc, rng)
        units[str(unit)] = spec_tables(cells)
        maps[doc["name"]] = {"unit": unit, "points": expected}
    pathlib.Path(args.spec).write_text(json.dumps({"units": units}))
    pathlib.Path(args.expected).write_text(json.dumps({"maps": maps}, indent=1))
    print(f"{len(maps)} maps, {sum(len(m['points']) for m in maps.values())} points")


if __name__ == "__main__":
    main()
