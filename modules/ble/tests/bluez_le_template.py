"""python-dbusmock template: BlueZ (bluez5 template) plus a convenient way to add BLE
devices with advertisement data of the right D-Bus types, and to change it later.

  AddLEDevice(adapter s, address s, name s, mfg a{qay}, svc a{say}, rssi n) -> path
  UpdateAdvert(adapter s, address s, mfg a{qay}, svc a{say}, rssi n)

Manufacturer data is a{qv} and service data a{sv} with variants holding ay (the stock
template's empty defaults have the wrong type and btleplug silently ignores them).
Properties are changed through Set so PropertiesChanged is emitted, as BlueZ does.
"""
import dbus

from dbusmock import mockobject
from dbusmock.templates.bluez5 import *  # noqa: F401,F403 - the stock template
from dbusmock.templates import bluez5

DEVICE_IFACE = "org.bluez.Device1"


def load(mock, parameters):
    bluez5.load(mock, parameters)


def _path(adapter, address):
    return f"/org/bluez/{adapter}/dev_{address.replace(':', '_').upper()}"


def _set_advert(dev, mfg, svc, rssi):
    props = dbus.Interface(dev, dbus.PROPERTIES_IFACE)
    if len(mfg):
        dev.Set(DEVICE_IFACE, "ManufacturerData", dbus.Dictionary(
            {dbus.UInt16(k): dbus.Array(v, signature="y", variant_level=1) for k, v in mfg.items()}, signature="qv"))
    if len(svc):
        dev.Set(DEVICE_IFACE, "ServiceData", dbus.Dictionary(
            {dbus.String(k): dbus.Array(v, signature="y", variant_level=1) for k, v in svc.items()}, signature="sv"))
        dev.Set(DEVICE_IFACE, "UUIDs", dbus.Array(list(svc.keys()), signature="s"))
    dev.Set(DEVICE_IFACE, "RSSI", dbus.Int16(rssi))
    del props


@dbus.service.method(bluez5.BLUEZ_MOCK_IFACE, in_signature="sssa{qay}a{say}n", out_signature="s")
def AddLEDevice(self, adapter, address, name, mfg, svc, rssi):
    path = bluez5.AddDevice(self, adapter, address, name)
    _set_advert(mockobject.objects[path], mfg, svc, rssi)
    return path


@dbus.service.method(bluez5.BLUEZ_MOCK_IFACE, in_signature="ssa{qay}a{say}n", out_signature="")
def UpdateAdvert(self, adapter, address, mfg, svc, rssi):
    _set_advert(mockobject.objects[_path(adapter, address)], mfg, svc, rssi)
