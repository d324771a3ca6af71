"""A pymodbus (pinned 3.16.1) server for the Modbus end-to-end tests.

Serves several unit ids over TCP, RTU or ASCII (a serial port, e.g. one end of a socat pty
pair) from a JSON spec. Values are typed and encoded here with Python's struct module,
independently of the module's own codec:

    {"units": {"1": {"holding": [{"address": 0, "type": "f32", "value": 21.5, "order": "CDAB"}, ...],
                     "input": [...], "coils": [{"address": 0, "value": true}], "discrete": [...]}},
     "silent": [7],                                  # unit ids that never answer
     "stall": {"unit": 1, "address": 99, "seconds": 0.8},   # delay the first reply to this read
     "requestLog": "/tmp/x.log",                    # append "unit function address" per request
     "identity": {"VendorName": "Eastron", ...}}    # FC43/14 device identification (all units)

Registers not listed are undefined: reading them gives exception 2 (illegal data address).
Prints "ready" once listening.
"""
import argparse
import asyncio
import json
import logging
import struct
import time

from pymodbus import FramerType, pymodbus_apply_logging_config
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

FORMATS = {"u16": ">H", "i16": ">h", "u32": ">I", "i32": ">i", "u64": ">Q", "i64": ">q", "f32": ">f", "f64": ">d"}


def registers(entry):
    """Big-endian bytes of the value, then the requested byte/word order (ABCD style)."""
    kind = entry["type"]
    if kind == "string":
        raw = entry["value"].encode().ljust(entry["length"] * 2, b"\0")
    else:
        raw = struct.pack(FORMATS[kind], entry["value"])
    words = [raw[i:i + 2] for i in range(0, len(raw), 2)]
    order = entry.get("order", "ABCD")
    if order in ("CDAB", "DCBA"):  # little-endian word order
        words.reverse()
    if order in ("BADC", "DCBA"):  # little-endian byte order
        words = [w[::-1] for w in words]
    return [int.from_bytes(w, "big") for w in words]


def blocks(entries, bits=False):
    """Contiguous SimData blocks from typed entries."""
    cells = {}
    for e in entries:
        vals = [bool(e["value"])] if bits else registers(e)
        for i, v in enumerate(vals):
            cells[e["address"] + i] = v
    out, run = [], []
    for addr in sorted(cells):
        if run and addr != run[-1][0] + 1:
            out.append(run)
            run = []
        run.append((addr, cells[addr]))
    if run:
        out.append(run)
    kind = DataType.BITS if bits else DataType.REGISTERS
    if not out:  # pymodbus needs every table non-empty: park one cell far away
        out = [[(65000, False if bits else 0)]]
    return [SimData(r[0][0], values=[v for _, v in r], datatype=kind) for r in out]


def device(unit, spec):
    return SimDevice(id=int(unit), simdata=(
        blocks(spec.get("coils", []), True),
        blocks(spec.get("discrete", []), True),
        blocks(spec.get("holding", [])),
        blocks(spec.get("input", [])),
    ))


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["tcp", "rtu", "ascii"], required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--device")
    ap.add_argument("--spec", required=True)
    args = ap.parse_args()
    pymodbus_apply_logging_config(logging.CRITICAL)
    spec = json.load(open(args.spec))
    devices = [device(u, s) for u, s in spec["units"].items()]
    silent = set(spec.get("silent", []))
    stall = spec.get("stall")
    state = {"stalled": False, "last": None}
    request_log = spec.get("requestLog")
    rtu = args.mode == "rtu"
    ascii_mode = args.mode == "ascii"

    def trace_packet(sending, data):
        if ascii_mode:  # ':' + hex(unit, PDU, LRC) + CR LF
            try:
                raw = bytes.fromhex(bytes(data).strip()[1:].decode())
            except ValueError:
                raw = b""
            data_unit, data_pdu = (raw[0] if raw else None), raw[1:-1]
        unit = data_unit if ascii_mode else data[0] if rtu else (data[6] if len(data) > 6 else None)
        pdu = data_pdu if ascii_mode else data[1:] if rtu else data[7:]
        if not sending:
            state["last"] = (unit, pdu[0] if pdu else None, int.from_bytes(pdu[1:3], "big") if len(pdu) >= 3 else None)
            if request_log:
                with open(request_log, "a") as f:
                    f.write("%s %s %s\n" % state["last"])
            return data
        if unit in silent:
            return b""
        if stall and not state["stalled"] and state["last"] == (stall["unit"], 3, stall["address"]):
            state["stalled"] = True
            time.sleep(stall["seconds"])  # blocks the server, as a hung device would
        return data

    identity = None
    if spec.get("identity"):
        from pymodbus import ModbusDeviceIdentification
        identity = ModbusDeviceIdentification(info_name=spec["identity"])
    if rtu:
        server = ModbusSerialServer(devices, framer=FramerType.RTU, port=args.device, baudrate=9600, trace_packet=trace_packet,
                                    identity=identity)
    elif ascii_mode:
        # 8N1: a pty carries bytes and emulates no parity, and pyserial's second
        # reconfiguration of a pty for 7E1 fails with EINVAL. ASCII frames are 7-bit text.
        server = ModbusSerialServer(devices, framer=FramerType.ASCII, port=args.device, baudrate=9600,
                                    trace_packet=trace_packet, identity=identity)
    else:
        server = ModbusTcpServer(devices, address=("127.0.0.1", args.port), trace_packet=trace_packet,
                                 identity=identity)
    task = asyncio.create_task(server.serve_forever())
    await asyncio.sleep(0.3)
    print("ready", flush=True)
    await task


if __name__ == "__main__":
    asyncio.run(main())
