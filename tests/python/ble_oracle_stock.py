"""Decodes stock-firmware advertisements with the parsers their users trust, for comparison
with ours: Home Assistant's xiaomi-ble, govee-ble, inkbird-ble, qingping-ble and
thermobeacon-ble, PySwitchbot's parse_advertisement_data, and the Theengs decoder.

Input: a JSON file of cases
  [{"format", "mac", "name", "mfg": {"<company id>": hex}, "svc": {"<16-bit uuid hex>": hex},
    "services": [uuid...], "key": hex?, "encrypt": {"frctrl", "product", "counter",
    "ext": hex, "plain": hex}?}]
"encrypt" asks for a MiBeacon frame encrypted here with cryptography's AESCCM (the service
data 0xFE95 is then that frame): v4/v5, or legacy v2/v3 (version <= 3 in "frctrl") with
a 12-byte "key" widened as xiaomi-ble widens it.
Output: a JSON array of {"frame": hex|null, "ha": {field: value}, "theengs": {field: value}|null}
with field names already translated to ours."""
import json
import sys
import time

from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from cryptography.hazmat.primitives.ciphers.aead import AESCCM
from govee_ble import GoveeBluetoothDeviceData
from inkbird_ble import INKBIRDBluetoothDeviceData
from qingping_ble import QingpingBluetoothDeviceData
from switchbot.adv_parser import parse_advertisement_data
from TheengsDecoder import decodeBLE
from thermobeacon_ble import ThermoBeaconBluetoothDeviceData
from xiaomi_ble import XiaomiBluetoothDeviceData


class Info:
    """The attributes the parsers read from a Home Assistant BluetoothServiceInfo."""

    def __init__(self, mac, name, service_data, manufacturer_data, service_uuids):
        self.name = name
        self.address = mac
        self.rssi = -60
        self.manufacturer_data = manufacturer_data
        self.service_data = service_data
        self.service_uuids = service_uuids
        self.source = "local"
        self.time = time.monotonic()
        self.tx_power = None
        self.connectable = False
        self.raw = None
        self.device = None
        self.advertisement = None


def uuid16(x):
    return f"0000{x:04x}-0000-1000-8000-00805f9b34fb"


def mibeacon_frame(mac, enc, key):
    """A MiBeacon v4/v5 frame: header, AES-CCM ciphertext, extension counter, 4-byte MIC.
    Legacy (v2/v3): header, ciphertext, extension counter, the first byte of a 16-byte MIC
    under a 13-byte nonce (frame control, product id, counter, extension counter, five
    bytes of the reversed MAC), as xiaomi-ble's YLKG07YL test frames are built."""
    mac_rev = bytes.fromhex(mac.replace(":", ""))[::-1]
    header = enc["frctrl"].to_bytes(2, "little") + enc["product"].to_bytes(2, "little") + bytes([enc["counter"]])
    if enc["frctrl"] & 0x10:
        header += mac_rev
    ext = bytes.fromhex(enc["ext"])
    if enc["frctrl"] >> 12 <= 3:
        wide = key[:6] + bytes.fromhex("8d3d3c97") + key[6:]
        nonce = header[:5] + ext + mac_rev[:5]
        sealed = AESCCM(wide, tag_length=16).encrypt(nonce, bytes.fromhex(enc["plain"]), b"\x11")
        return header + sealed[:-16] + ext + sealed[-16:-15]
    nonce = mac_rev + header[2:5] + ext
    sealed = AESCCM(key, tag_length=4).encrypt(nonce, bytes.fromhex(enc["plain"]), b"\x11")
    return header + sealed[:-4] + ext + sealed[-4:]


# HA entity keys (sensors, then binary sensors) → our field names, per format.
SENSORS = {
    "temperature": "temperature", "humidity": "humidity", "battery": "battery",
    "illuminance": "illuminance", "moisture": "moisture", "conductivity": "conductivity",
    "formaldehyde": "formaldehyde", "pressure": "pressure", "carbon_dioxide": "co2",
    "pm25": "pm25", "pm10": "pm10", "voc_index": "vocIndex", "sound_pressure": "noise",
    "voltage": "batteryVoltage",
}
BINARY = {
    "opening": "opening", "motion": "motion", "light": "light", "smoke": "smoke",
    "moisture": "moist", "door_left_open": "doorLeftOpen", "battery": "batteryLow",
    "power": "powerOn", "door": "doorOpen", "occupancy": "button",
}
# Xiaomi's battery voltage is an estimate from the percentage, not a reading.
SKIP = {"xiaomi": {"batteryVoltage"}, "qingping": {"doorLeftOpen"}}


def ha_values(fmt, update):
    out = {}
    for k, v in update.entity_values.items():
        key = k.key
        if key.startswith("temperature_probe_"):
            out["temperatureProbe" + key.rsplit("_", 1)[1]] = v.native_value
        elif key.startswith("temperature_alarm_probe_"):
            out["alarmProbe" + key.rsplit("_", 1)[1]] = v.native_value
        elif key in SENSORS:
            out[SENSORS[key]] = v.native_value
    for k, v in update.binary_entity_values.items():
        if k.key in BINARY:
            out[BINARY[k.key]] = v.native_value
    for s in SKIP.get(fmt, ()):
        out.pop(s, None)
    return {k: v for k, v in out.items() if isinstance(v, (int, float, bool))}


SWITCHBOT = {
    "temperature": "temperature", "humidity": "humidity", "battery": "battery",
    "fahrenheit": "fahrenheit", "co2": "co2", "contact_open": "contactOpen",
    "contact_timeout": "contactTimeout", "motion_detected": "motion", "is_light": "light",
    "button_count": "buttonCount", "tested": "tested", "led": "led", "iot": "iot",
    "sense_distance": "senseDistance", "light_intensity": "lightIntensity", "isOn": "on",
    "wifi_rssi": "wifiRssi", "power": "power",
}

THEENGS = {"tempc": "temperature", "hum": "humidity", "batt": "battery", "lux": "illuminance",
           "moi": "moisture", "fer": "conductivity", "tempc1": "temperatureProbe1",
           "tempc2": "temperatureProbe2", "tempc3": "temperatureProbe3", "tempc4": "temperatureProbe4"}


def theengs(case, svc, mfg):
    msg = {"id": case["mac"]}
    if case.get("name"):
        msg["name"] = case["name"]
    if mfg:
        cid, data = next(iter(mfg.items()))
        msg["manufacturerdata"] = cid.to_bytes(2, "little").hex() + data.hex()
    if svc:
        short, data = next(iter(svc.items()))
        msg["servicedata"] = data.hex()
        msg["servicedatauuid"] = "0x" + short
    res = decodeBLE(json.dumps(msg))
    if not res:
        return None
    res = json.loads(res)
    return {THEENGS[k]: v for k, v in res.items() if k in THEENGS}


out = []
for case in json.load(open(sys.argv[1])):
    fmt = case["format"].split("-")[0]
    key = bytes.fromhex(case["key"]) if case.get("key") else None
    parse_key = bytes.fromhex(case["decryptKey"]) if case.get("decryptKey") else key
    svc = {k: bytes.fromhex(v) for k, v in case.get("svc", {}).items()}
    frame = None
    if "encrypt" in case:
        frame = mibeacon_frame(case["mac"], case["encrypt"], key)
        svc["fe95"] = frame
    mfg = {int(k): bytes.fromhex(v) for k, v in case.get("mfg", {}).items()}
    info = Info(case["mac"], case.get("name") or "", {uuid16(int(k, 16)): v for k, v in svc.items()},
                mfg, case.get("services", []))
    if fmt == "switchbot":
        adv = AdvertisementData(case.get("name"), mfg, info.service_data, info.service_uuids, None, -60, ())
        parsed = parse_advertisement_data(BLEDevice(case["mac"], case.get("name"), None), adv)
        data = (parsed.data.get("data") or {}) if parsed else {}
        ha = {SWITCHBOT[k]: v for k, v in data.items() if k in SWITCHBOT and v is not None}
    else:
        parser = {
            "xiaomi": lambda: XiaomiBluetoothDeviceData(bindkey=parse_key),
            "govee": GoveeBluetoothDeviceData,
            "inkbird": INKBIRDBluetoothDeviceData,
            "qingping": QingpingBluetoothDeviceData,
            "thermobeacon": ThermoBeaconBluetoothDeviceData,
        }[fmt]()
        try:
            ha = ha_values(fmt, parser.update(info))
        except (IndexError, ValueError, KeyError):
            # A malformed test vector the parser itself refuses (its tests expect that).
            ha = {}
    te = None if "encrypt" in case else theengs(case, svc, mfg)
    out.append({"frame": frame.hex() if frame else None, "ha": ha, "theengs": te})
print(json.dumps(out))
