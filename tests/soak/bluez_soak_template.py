"""python-dbusmock template for the soak (tests/benches/soak.rs): the BLE benchmark's
template (modules/ble/benches/bluez_bench_template.py: BTHome, Ruuvi RAWv2 and pvvx
advertisements) driven by the wall clock, so a BlueZ killed and started again carries on
where the schedule is instead of starting over.

Parameters (JSON, `-p`): {"n": devices, "rate": advertisements/s in all, "epoch": unix
time of slot 0, "stop": unix time after which nothing is emitted, "log": file}.

Slot k is due at epoch + k / rate and is advertisement number k // n + 1 of device k % n,
so every slot is a distinct reading and the soak can tell from a received reading when it
was emitted. On load the adapter hci0 and the n devices are added (as bluetoothd reloads
them), each holding its latest due reading; then the due slots are emitted as
PropertiesChanged signals. Every emitted slot range is appended to the log as "lo hi".
"""
import math
import os
import sys
import time

import dbus
import dbus.lowlevel
from gi.repository import GLib

_BENCHES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "modules", "ble", "benches")
sys.path.insert(0, _BENCHES)
from bluez_bench_template import *  # noqa: F401,F403,E402 - the benchmark's template
from bluez_bench_template import _address, _advert  # noqa: E402
from bluez_bench_template import load as _load  # noqa: E402
from dbusmock import mockobject  # noqa: E402
from dbusmock.templates import bluez5  # noqa: E402

DEVICE_IFACE = "org.bluez.Device1"


def _signal(mock, path, name, value, rssi):
    """One advertisement: a PropertiesChanged on the mock's own connection."""
    msg = dbus.lowlevel.SignalMessage(path, dbus.PROPERTIES_IFACE, "PropertiesChanged")
    msg.append(DEVICE_IFACE, {name: value, "RSSI": dbus.Int16(rssi, variant_level=1)},
               dbus.Array([], signature="s"), signature="sa{sv}as")
    mock.connection.send_message(msg)


def load(mock, parameters):
    _load(mock, parameters)
    n, rate = int(parameters["n"]), float(parameters["rate"])
    epoch, stop = float(parameters["epoch"]), float(parameters["stop"])
    log = open(parameters["log"], "a", encoding="ascii")
    state = {"next": None, "paths": []}

    def setup():
        # After load: the mock's root object exists only once the template is loaded.
        bluez5.AddAdapter(mock, "hci0", "host")
        now_k = math.floor((time.time() - epoch) * rate)
        seeds = []
        for i in range(n):
            # The latest due slot of device i (slot i - n, reading 0, before the first).
            k = now_k - (now_k - i) % n if now_k >= i else i - n
            path = bluez5.AddDevice(mock, "hci0", _address(i), f"s{i}")
            name, value = _advert(i, k // n + 1)
            props = mockobject.objects[path].props[DEVICE_IFACE]
            props[name] = value
            props["RSSI"] = dbus.Int16(-60)
            state["paths"].append(path)
            seeds.append(k)
            # bluetoothd announces a reloaded device with its cached data; AddDevice
            # announced it empty, so the seed goes out as the device's advertisement.
            _signal(mock, path, name, value, -60)
        for k in seeds:
            log.write(f"{k} {k}\n")
        log.flush()
        state["next"] = max(now_k + 1, 0)
        GLib.timeout_add(20, tick)
        return False

    def tick():
        paths = state["paths"]
        t = min(time.time(), stop)
        due = math.floor((t - epoch) * rate)
        lo = state["next"]
        for k in range(lo, due + 1):
            i, step = k % n, k // n + 1
            name, value = _advert(i, step)
            rssi = -60 - step % 20
            props = mockobject.objects[paths[i]].props[DEVICE_IFACE]
            props[name] = value
            props["RSSI"] = dbus.Int16(rssi)
            _signal(mock, paths[i], name, value, rssi)
        if due >= lo:
            log.write(f"{lo} {due}\n")
            log.flush()
            state["next"] = due + 1
        return time.time() < stop

    GLib.idle_add(setup)
