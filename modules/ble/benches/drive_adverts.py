"""Adds N BTHome devices to the BlueZ mock and changes their advertisements every
second for S seconds (run with /usr/bin/python3 and DBUS_SYSTEM_BUS_ADDRESS set)."""
import sys
import time

import dbus

n, seconds = int(sys.argv[1]), float(sys.argv[2])
bus = dbus.SystemBus()
mock = dbus.Interface(bus.get_object("org.bluez", "/"), "org.bluez.Mock")
mock.AddAdapter("hci0", "host")
uuid = "0000fcd2-0000-1000-8000-00805f9b34fb"
addrs = [f"C0:FF:EE:{i >> 16 & 255:02X}:{i >> 8 & 255:02X}:{i & 255:02X}" for i in range(n)]


def payload(i, t):
    temp = 2000 + (i * 7 + t) % 500
    return dbus.Array([0x40, 0x02, temp & 255, temp >> 8, 0x01, 50 + i % 50], signature="y")


for i, a in enumerate(addrs):
    mock.AddLEDevice("hci0", a, f"s{i}", dbus.Dictionary({}, signature="qay"), dbus.Dictionary({uuid: payload(i, 0)}, signature="say"), dbus.Int16(-60))
print("ready", flush=True)
start = time.time()
t = 1
while time.time() - start < seconds:
    for i, a in enumerate(addrs):
        mock.UpdateAdvert("hci0", a, dbus.Dictionary({}, signature="qay"), dbus.Dictionary({uuid: payload(i, t)}, signature="say"), dbus.Int16(-60 - i % 20))
    t += 1
    time.sleep(max(0.0, start + t - time.time()))
print("done", flush=True)
