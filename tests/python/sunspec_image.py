"""SunSpec register images built, and read back, with the SunSpec Alliance's pysunspec2.

    sunspec_image.py build --base 40000      -> {"registers": [...]} starting at the base:
        "SunS", then models 1, 103, 160 (3 modules), 203 (twice), 802, 124 and 705 (2
        curves of 4 points), then the end marker. Values are pseudo-random per type (a
        fixed seed), about one point in five left "not implemented" (pysunspec2 writes the
        type's sentinel), every scale factor implemented.
    sunspec_image.py read --port P [--unit 1] -> {"base": ..., "models": [...],
        "values": {name: cvalue}, "absent": [names]} as pysunspec2's own Modbus TCP client
        decodes the device, named as bridge-modbus names telemetry (m{id}[_{n}] then
        _{group}[_{index}] then _{point}; ID, L, pad and scale factors left out).
"""
import argparse
import json
import random
import re
import struct

import sunspec2.device as device

MODELS = [(1, None), (103, None), (160, 8 + 3 * 20), (203, None), (203, None), (802, None), (124, None), (705, None)]


def raw_for(kind, size, rnd):
    """A raw value of a SunSpec type that is not its "not implemented" sentinel."""
    if kind == "int16":
        return rnd.randint(-30000, 30000)
    if kind in ("uint16", "enum16", "bitfield16"):
        return rnd.randint(0, 65000)
    if kind == "acc16":
        return rnd.randint(1, 65000)
    if kind == "int32":
        return rnd.randint(-2_000_000_000, 2_000_000_000)
    if kind in ("uint32", "enum32", "bitfield32"):
        return rnd.randint(0, 4_000_000_000)
    if kind in ("acc32", "ipaddr"):
        return rnd.randint(1, 4_000_000_000)
    if kind == "int64":
        return rnd.randint(-(2**62), 2**62)
    if kind in ("uint64", "acc64"):
        return rnd.randint(1, 2**63)
    if kind == "float32":
        return struct.unpack(">f", struct.pack(">f", rnd.uniform(-1e5, 1e5)))[0]
    if kind == "float64":
        return rnd.uniform(-1e9, 1e9)
    if kind == "string":
        n = rnd.randint(1, size * 2)
        return "".join(rnd.choice("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789-") for _ in range(n))
    if kind == "eui48":
        return "00:1A:2B:3C:4D:%02X" % rnd.randint(0, 255)
    return None  # ipv6addr, pad: left unimplemented


def fill(group, rnd, top):
    for name, p in group.points.items():
        kind = p.pdef["type"]
        if top and name in ("ID", "L"):
            continue
        if kind in ("count", "pad"):
            continue
        if kind == "sunssf":
            p.value = rnd.randint(-3, 2)
        elif rnd.random() < 0.2:
            p.value = None
        else:
            p.value = raw_for(kind, p.len, rnd)
    for g in group.groups.values():
        for inst in g if isinstance(g, list) else [g]:
            fill(inst, rnd, False)


def build(base):
    rnd = random.Random(13)
    regs = [0x5375, 0x6E53]
    for mid, length in MODELS:
        if mid == 705:
            # Counts from points: 2 curves of 4 points each.
            m = device.Model(model_id=705, data={"NCrv": 2, "NPt": 4})
            m.NCrv.value, m.NPt.value = 2, 4
            for crv in m.Crv:
                crv.ActPt.value = 4
        else:
            m = device.Model(model_id=mid, model_len=length or 0)
        fill(m, rnd, True)
        if mid == 705:
            m.NCrv.value, m.NPt.value = 2, 4
        if mid == 160:
            m.N.value = len(m.module)
        data = m.get_mb()
        regs += [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]
    regs += [0xFFFF, 0]
    return {"base": base, "registers": regs}


def clean(name):
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def collect(group, prefix, top, values, absent):
    for name, p in group.points.items():
        kind = p.pdef["type"]
        if (top and name in ("ID", "L")) or kind in ("pad", "sunssf"):
            continue
        key = prefix + "_" + clean(name)
        v = p.cvalue
        if kind == "ipaddr" and v is not None:
            v = ".".join(str((v >> s) & 0xFF) for s in (24, 16, 8, 0))
        if v is None:
            absent.append(key)
        else:
            values[key] = v
    for gname, g in group.groups.items():
        if isinstance(g, list):
            for i, inst in enumerate(g, 1):
                collect(inst, "%s_%s_%d" % (prefix, clean(gname), i), False, values, absent)
        else:
            collect(g, "%s_%s" % (prefix, clean(gname)), False, values, absent)


def read(port, unit):
    from sunspec2.modbus.client import SunSpecModbusClientDeviceTCP

    d = SunSpecModbusClientDeviceTCP(slave_id=unit, ipaddr="127.0.0.1", ipport=port, timeout=5)
    d.scan()
    values, absent, ids, seen = {}, [], [], {}
    for m in d.model_list:
        ids.append(m.model_id)
        seen[m.model_id] = seen.get(m.model_id, 0) + 1
        n = seen[m.model_id]
        prefix = "m%d" % m.model_id if n == 1 else "m%d_%d" % (m.model_id, n)
        collect(m, prefix, True, values, absent)
    d.close()
    return {"base": d.base_addr, "models": ids, "values": values, "absent": absent}


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--base", type=int, default=40000)
    r = sub.add_parser("read")
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--unit", type=int, default=1)
    args = ap.parse_args()
    out = build(args.base) if args.cmd == "build" else read(args.port, args.unit)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
