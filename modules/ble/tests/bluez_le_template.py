"""python-dbusmock template: BlueZ (bluez5 template) plus a convenient way to add BLE
devices with advertisement data of the right D-Bus types, and to change it later.

  AddLEDevice(adapter s, address s, name s, mfg a{qay}, svc a{say}, rssi n) -> path
  UpdateAdvert(adapter s, address s, mfg a{qay}, svc a{say}, rssi n)

Manufacturer data is a{qv} and service data a{sv} with variants holding ay (the stock
template's empty defaults have the wrong type and btleplug silently ignores them).
An advertisement's changes go out in one PropertiesChanged signal, as bluetoothd sends them.
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
    """Like bluetoothd, one PropertiesChanged carries everything one advertisement changed."""
    changed = {}
    if len(mfg):
        changed["ManufacturerData"] = dbus.Dictionary(
            {dbus.UInt16(k): dbus.Array(v, signature="y", variant_level=1) for k, v in mfg.items()}, signature="qv")
    if len(svc):
        changed["ServiceData"] = dbus.Dictionary(
            {dbus.String(k): dbus.Array(v, signature="y", variant_level=1) for k, v in svc.items()}, signature="sv")
        changed["UUIDs"] = dbus.Array(list(svc.keys()), signature="s")
    changed["RSSI"] = dbus.Int16(rssi)
    dev.props[DEVICE_IFACE].update(changed)
    dev.EmitSignal(dbus.PROPERTIES_IFACE, "PropertiesChanged", "sa{sv}as", [DEVICE_IFACE, changed, []])


@dbus.service.method(bluez5.BLUEZ_MOCK_IFACE, in_signature="sssa{qay}a{say}n", out_signature="s")
def AddLEDevice(self, adapter, address, name, mfg, svc, rssi):
    path = bluez5.AddDevice(self, adapter, address, name)
    _set_advert(mockobject.objects[path], mfg, svc, rssi)
    return path


@dbus.service.method(bluez5.BLUEZ_MOCK_IFACE, in_signature="ssa{qay}a{say}n", out_signature="")
def UpdateAdvert(self, adapter, address, mfg, svc, rssi):
    _set_advert(mockobject.objects[_path(adapter, address)], mfg, svc, rssi)


GATT_SERVICE_IFACE = "org.bluez.GattService1"
GATT_CHRC_IFACE = "org.bluez.GattCharacteristic1"


def _connect(device):
    """BlueZ sets Connected, then ServicesResolved once discovery is done (btleplug waits for it)."""
    device.UpdateProperties(DEVICE_IFACE, {"Connected": dbus.Boolean(True)})
    device.UpdateProperties(DEVICE_IFACE, {"ServicesResolved": dbus.Boolean(True)})


def _disconnect(device):
    device.UpdateProperties(DEVICE_IFACE, {"ServicesResolved": dbus.Boolean(False), "Connected": dbus.Boolean(False)})
    for path, obj in list(mockobject.objects.items()):
        if path.startswith(device.path + "/") and GATT_CHRC_IFACE in obj.props:
            obj.props[GATT_CHRC_IFACE]["Notifying"] = dbus.Boolean(False)


def _device_of(chrc):
    return mockobject.objects[str(chrc.props[GATT_CHRC_IFACE]["Service"]).rsplit("/", 1)[0]]


def _read(chrc, _options):
    if not _device_of(chrc).props[DEVICE_IFACE]["Connected"]:
        raise dbus.exceptions.DBusException("Not connected", name="org.bluez.Error.NotConnected")
    return chrc.props[GATT_CHRC_IFACE]["Value"]


def _write(chrc, value, _options):
    chrc.props[GATT_CHRC_IFACE]["Value"] = dbus.Array(value, signature="y")


def _start_notify(chrc):
    chrc.UpdateProperties(GATT_CHRC_IFACE, {"Notifying": dbus.Boolean(True)})


def _stop_notify(chrc):
    chrc.UpdateProperties(GATT_CHRC_IFACE, {"Notifying": dbus.Boolean(False)})


@dbus.service.method(bluez5.BLUEZ_MOCK_IFACE, in_signature="sqs", out_signature="s")
def AddGattService(self, device_path, handle, uuid):
    dev = mockobject.objects[device_path]
    dev.AddMethods(DEVICE_IFACE, [("Connect", "", "", _connect), ("Disconnect", "", "", _disconnect)])
    path = f"{device_path}/service{handle:04x}"
    # An interface without methods breaks bluez-async's introspection parsing: add a no-op.
    self.AddObject(path, GATT_SERVICE_IFACE, {
        "UUID": dbus.String(uuid), "Primary": dbus.Boolean(True), "Device": dbus.ObjectPath(device_path),
        "Includes": dbus.Array([], signature="o"),
    }, [("MockNoop", "", "", "")])
    return path


@dbus.service.method(bluez5.BLUEZ_MOCK_IFACE, in_signature="sqsasay", out_signature="s")
def AddGattCharacteristic(self, service_path, handle, uuid, flags, value):
    path = f"{service_path}/char{handle:04x}"
    self.AddObject(path, GATT_CHRC_IFACE, {
        "UUID": dbus.String(uuid), "Service": dbus.ObjectPath(service_path),
        "Value": dbus.Array(value, signature="y"), "Notifying": dbus.Boolean(False),
        "Flags": dbus.Array(flags, signature="s"),
    }, [
        ("ReadValue", "a{sv}", "ay", _read),
        ("WriteValue", "aya{sv}", "", _write),
        ("StartNotify", "", "", _start_notify),
        ("StopNotify", "", "", _stop_notify),
    ])
    return path


MONITOR_MANAGER_IFACE = "org.bluez.AdvertisementMonitorManager1"


@dbus.service.method(bluez5.BLUEZ_MOCK_IFACE, in_signature="s", out_signature="")
def AddMonitorManager(self, adapter):
    """BlueZ 5.56+: the adapter offers advertisement monitors (passive scanning).
    RegisterMonitor/UnregisterMonitor are recorded in the call log; the test plays
    BlueZ's part of reading the application's monitors and activating them."""
    obj = mockobject.objects[f"/org/bluez/{adapter}"]
    obj.AddProperties(MONITOR_MANAGER_IFACE, {
        "SupportedMonitorTypes": dbus.Array(["or_patterns"], signature="s"),
        "SupportedFeatures": dbus.Array([], signature="s"),
    })
    obj.AddMethods(MONITOR_MANAGER_IFACE, [
        ("RegisterMonitor", "o", "", ""),
        ("UnregisterMonitor", "o", "", ""),
    ])
