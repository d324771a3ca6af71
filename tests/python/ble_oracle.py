"""Decodes advertisements with independent parsers (bthome-ble, ruuvitag-ble, the
decoders Home Assistant uses, and bleparser from ble_monitor) for comparison with ours.
Input: a JSON file of cases [{"format": "bthome"|"ruuvi"|"pvvx"|"atc1441"|"ibeacon",
"mac": "AA:BB:..", "hex": "..."}]; output: a JSON array with each parser's values."""
import json
import sys
import time

from bthome_ble import BTHomeBluetoothDeviceData
from bleparser import BleParser
from ruuvitag_ble import RuuvitagBluetoothDeviceData


class Info:
    """The attributes the parsers read from a Home Assistant BluetoothServiceInfo."""

    def __init__(self, mac, service_data=None, manufacturer_data=None):
        self.name = "test"
        self.address = mac
        self.rssi = -60
        self.manufacturer_data = manufacturer_data or {}
        self.service_data = service_data or {}
        self.service_uuids = list(self.service_data)
        self.source = "local"
        self.time = time.monotonic()
        self.tx_power = None
        self.connectable = False
        self.raw = None
        self.device = None
        self.advertisement = None


def uuid16(x):
    return f"0000{x:04x}-0000-1000-8000-00805f9b34fb"


def plain(v):
    return v if isinstance(v, (int, float, str, bool)) or v is None else str(v)


out = []
for case in json.load(open(sys.argv[1])):
    data = bytes.fromhex(case["hex"])
    mac = bytes.fromhex(case["mac"].replace(":", ""))
    if case["format"] in ("pvvx", "atc1441"):
        # bleparser (the ble_monitor parser) takes whole AD structures: length, 0x16, UUID.
        ad = bytes([len(data) + 3, 0x16, 0x1A, 0x18]) + data
        sensor, _ = BleParser().parse_advertisement(mac, -60, None, None, "", [ad], [])
        out.append({k: plain(v) for k, v in (sensor or {}).items()})
        continue
    if case["format"] == "ibeacon":
        # Manufacturer data AD structure: length, 0xFF, Apple's company id, payload.
        ad = bytes([len(data) + 3, 0xFF, 0x4C, 0x00]) + data
        sensor, _ = BleParser().parse_advertisement(mac, -60, None, None, "", [], [ad])
        out.append({k: plain(v) for k, v in (sensor or {}).items() if k != "tracker_id"})
        continue
    if case["format"] == "bthome":
        update = BTHomeBluetoothDeviceData().update(Info(case["mac"], service_data={uuid16(0xFCD2): data}))
        values = {str(getattr(k, "key", k)): plain(v.native_value) for k, v in update.entity_values.items()}
    else:
        update = RuuvitagBluetoothDeviceData().update(Info(case["mac"], manufacturer_data={0x0499: data}))
        values = {str(getattr(k.key, "value", k.key)): plain(v.native_value) for k, v in update.entity_values.items()}
    values.pop("signal_strength", None)
    values.pop("packet_id", None)
    out.append(values)
print(json.dumps(out))
