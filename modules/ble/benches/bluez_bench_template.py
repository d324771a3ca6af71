"""python-dbusmock template for the bridge-ble benchmark: the test template
(tests/bluez_le_template.py) plus an advertisement emitter that runs inside the mock, so
the advertisements leave as fast as BlueZ's signals would, without a D-Bus method call
per advertisement from a driver process.

  AddSensors(adapter s, n u) -> u             n devices: BTHome, Ruuvi RAWv2, pvvx in turn
  RunAdverts(adapter s, n u, rate d, seconds d)  rate advertisements/s, round robin, each
                                                 one a new reading (its temperature steps)
  AdvertStats() -> (emitted u, elapsed d)

Signals are built with dbus-python's low-level API and sent on the mock's own connection
(the owner of org.bluez); dbusmock's EmitSignal would log each one.
"""
import os
import sys
import time

import dbus
import dbus.lowlevel
from gi.repository import GLib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from bluez_le_template import *  # noqa: F401,F403,E402 - the test template
from bluez_le_template import load as _load  # noqa: E402
from dbusmock import mockobject  # noqa: E402
from dbusmock.templates import bluez5  # noqa: E402

BTHOME = "0000fcd2-0000-1000-8000-00805f9b34fb"
ENV = "0000181a-0000-1000-8000-00805f9b34fb"
RUUVI = [0x05, 0x12, 0xFC, 0x53, 0x94, 0xC3, 0x7C, 0x00, 0x04, 0xFF, 0xFC, 0x04, 0x0C, 0xAC, 0x36, 0x42,
         0x00, 0xCD, 0xCB, 0xB8, 0x33, 0x4C, 0x88, 0x4F]
STATE = {"emitted": 0, "start": None, "end": None}


def load(mock, parameters):
    _load(mock, parameters)


def _address(i):
    return f"C0:FF:EE:{i >> 16 & 255:02X}:{i >> 8 & 255:02X}:{i & 255:02X}"


def _advert(i, step):
    """(property name, value) of device i's advertisement number `step`: the temperature
    is 10.00 °C + step/100 (BTHome, pvvx) or + step * 0.005 (Ruuvi), so every step is a
    new reading."""
    kind = i % 3
    if kind == 0:
        t = 1000 + step
        data = dbus.Array([0x40, 0x02, t & 255, t >> 8 & 255, 0x03, 0x88, 0x13], signature="y", variant_level=1)
        return "ServiceData", dbus.Dictionary({BTHOME: data}, signature="sv")
    if kind == 1:
        raw = list(RUUVI)
        t = 2000 + step  # 0.005 °C units, big-endian
        raw[1], raw[2] = t >> 8 & 255, t & 255
        data = dbus.Array(raw, signature="y", variant_level=1)
        return "ManufacturerData", dbus.Dictionary({dbus.UInt16(0x0499): data}, signature="qv")
    mac = [int(b, 16) for b in _address(i).split(":")][::-1]
    t = 1000 + step
    raw = mac + [t & 255, t >> 8 & 255, 0xD7, 0x11, 0x86, 0x0B, 80, step & 255, 5]
    data = dbus.Array(raw, signature="y", variant_level=1)
    return "ServiceData", dbus.Dictionary({ENV: data}, signature="sv")


@dbus.service.method(bluez5.BLUEZ_MOCK_IFACE, in_signature="su", out_signature="u")
def AddSensors(self, adapter, n):
    for i in range(n):
        path = bluez5.AddDevice(self, adapter, _address(i), f"s{i}")
        name, value = _advert(i, 0)
        mockobject.objects[path].props["org.bluez.Device1"][name] = value
        mockobject.objects[path].props["org.bluez.Device1"]["RSSI"] = dbus.Int16(-60)
    return n


@dbus.service.method(bluez5.BLUEZ_MOCK_IFACE, in_signature="sudd", out_signature="")
def RunAdverts(self, adapter, n, rate, seconds):
    conn = self.connection
    paths = [f"/org/bluez/{adapter}/dev_{_address(i).replace(':', '_')}" for i in range(n)]
    STATE.update(emitted=0, start=time.monotonic(), end=None)

    def tick():
        now = time.monotonic()
        elapsed = now - STATE["start"]
        due = min(int(rate * min(elapsed, seconds)), int(rate * seconds))
        while STATE["emitted"] < due:
            k = STATE["emitted"]
            i, step = k % n, 1 + k // n
            name, value = _advert(i, step)
            # The mock's state follows, so a GetAll (btleplug) sees the same advertisement.
            props = mockobject.objects[paths[i]].props["org.bluez.Device1"]
            props[name] = value
            props["RSSI"] = dbus.Int16(-60 - step % 20)
            msg = dbus.lowlevel.SignalMessage(paths[i], "org.freedesktop.DBus.Properties", "PropertiesChanged")
            msg.append("org.bluez.Device1", {name: value, "RSSI": dbus.Int16(-60 - step % 20, variant_level=1)},
                       dbus.Array([], signature="s"), signature="sa{sv}as")
            conn.send_message(msg)
            STATE["emitted"] = k + 1
        if elapsed >= seconds:
            STATE["end"] = now
            return False
        return True

    GLib.timeout_add(5, tick)


@dbus.service.method(bluez5.BLUEZ_MOCK_IFACE, in_signature="", out_signature="ud")
def AdvertStats(self):
    end = STATE["end"] or time.monotonic()
    return STATE["emitted"], end - (STATE["start"] or end)
