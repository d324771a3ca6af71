//! Pure parse of BlueZ's object signals into a per-device cache: `PropertiesChanged` on
//! `org.bluez.Device1` / `org.bluez.Adapter1`, the object manager's `InterfacesAdded` /
//! `InterfacesRemoved`, and the `GetManagedObjects` reply that seeds the cache. The
//! arguments are walked in place (no boxed `PropMap`), so one signal costs a few
//! allocations for the values that changed.
//!
//! Property names and types: BlueZ `doc/org.bluez.Device.rst` and `org.bluez.Adapter.rst`.

use std::collections::{BTreeMap, HashMap};

use btleplug::api::{AddressType, BDAddr, PeripheralProperties};
use dbus::Message;
use dbus::arg::{ArgType, Iter};
use uuid::Uuid;

use crate::adverts::Advert;

/// BlueZ's device interface.
pub const DEVICE_IFACE: &str = "org.bluez.Device1";
/// BlueZ's adapter interface.
pub const ADAPTER_IFACE: &str = "org.bluez.Adapter1";
/// Most devices cached (phones rotating random addresses); BlueZ removes stale ones
/// itself, this bounds memory if it does not.
pub const MAX_DEVICES: usize = 16_384;

/// What BlueZ says about one device: the last advertisement's content plus the
/// properties that rarely change (name, address type), kept between signals.
#[derive(Debug, Clone, Default)]
pub struct DeviceRecord {
    /// In btleplug's shape, so the decoders and the telemetry body take it unchanged.
    pub props: PeripheralProperties,
    /// BlueZ's `Alias` (the name, or one the user gave, or the address).
    pub alias: Option<String>,
}

impl DeviceRecord {
    /// The advertisement as the decoders take it.
    pub fn advert(&self) -> Advert<'_> {
        Advert {
            address: self.props.address.into_inner(),
            local_name: self.props.local_name.as_deref(),
            manufacturer_data: &self.props.manufacturer_data,
            service_data: &self.props.service_data,
            services: &self.props.services,
        }
    }
}

/// What a signal changed on a device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Change {
    /// Manufacturer or service data changed: a new reading.
    pub reading: bool,
    /// Anything an advertisement carries arrived (data, RSSI, TX power, name).
    pub advert: bool,
}

/// The effect of one signal on the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Not about anything we follow.
    Nothing,
    /// A device's properties changed (or it appeared).
    Device(String, Change),
    /// A device is gone.
    DeviceRemoved,
    /// The set of adapters or an adapter's power changed.
    Adapter,
}

/// Devices and adapters as BlueZ last described them.
#[derive(Debug, Default)]
pub struct Cache {
    /// By object path.
    pub devices: HashMap<String, DeviceRecord>,
    /// Adapters by object path: powered or not.
    pub adapters: BTreeMap<String, bool>,
}

impl Cache {
    /// Applies one signal from BlueZ; anything malformed is ignored.
    pub fn apply(&mut self, msg: &Message) -> Applied {
        let (Some(iface), Some(member), Some(path)) = (msg.interface(), msg.member(), msg.path())
        else {
            return Applied::Nothing;
        };
        match (&*iface, &*member) {
            ("org.freedesktop.DBus.Properties", "PropertiesChanged") => {
                self.properties_changed(&path, msg.iter_init())
            }
            ("org.freedesktop.DBus.ObjectManager", "InterfacesAdded") => {
                let mut it = msg.iter_init();
                let Some(object) = it.get::<dbus::Path<'_>>() else {
                    return Applied::Nothing;
                };
                it.next();
                self.interfaces_added(&object, &mut it)
            }
            ("org.freedesktop.DBus.ObjectManager", "InterfacesRemoved") => {
                let mut it = msg.iter_init();
                let Some(object) = it.get::<dbus::Path<'_>>() else {
                    return Applied::Nothing;
                };
                it.next();
                let ifaces: Vec<&str> = it.get().unwrap_or_default();
                if ifaces.contains(&DEVICE_IFACE) && self.devices.remove(&*object).is_some() {
                    Applied::DeviceRemoved
                } else if ifaces.contains(&ADAPTER_IFACE)
                    && self.adapters.remove(&*object).is_some()
                {
                    Applied::Adapter
                } else {
                    Applied::Nothing
                }
            }
            _ => Applied::Nothing,
        }
    }

    /// Replaces the cache with a `GetManagedObjects` reply (`a{oa{sa{sv}}}`); the paths of
    /// the devices it holds.
    pub fn seed(&mut self, reply: &Message) -> Vec<String> {
        self.seed_from(&mut reply.iter_init())
    }

    /// [`Cache::seed`] from the reply's arguments.
    pub fn seed_from(&mut self, it: &mut Iter<'_>) -> Vec<String> {
        self.devices.clear();
        self.adapters.clear();
        let mut out = Vec::new();
        let Some(mut objects) = it.recurse(ArgType::Array) else {
            return out;
        };
        while objects.arg_type() == ArgType::DictEntry {
            if let Some(mut entry) = objects.recurse(ArgType::DictEntry)
                && let Some(object) = entry.get::<dbus::Path<'_>>()
            {
                entry.next();
                if let Applied::Device(path, _) = self.interfaces_added(&object, &mut entry) {
                    out.push(path);
                }
            }
            objects.next();
        }
        out
    }

    /// `a{sa{sv}}` of one object.
    fn interfaces_added(&mut self, object: &str, it: &mut Iter<'_>) -> Applied {
        let mut result = Applied::Nothing;
        for_each_entry(it, |iface: &str, mut props| match iface {
            DEVICE_IFACE => {
                if !self.devices.contains_key(object) && self.devices.len() >= MAX_DEVICES {
                    return;
                }
                let record = self.devices.entry(object.to_owned()).or_default();
                let mut change = update_device(record, &mut props);
                if record.props.address == BDAddr::default() {
                    record.props.address = address_from_path(object).unwrap_or_default();
                }
                // A device appearing with data is a reading.
                change.reading |= !record.props.manufacturer_data.is_empty()
                    || !record.props.service_data.is_empty();
                result = Applied::Device(object.to_owned(), change);
            }
            ADAPTER_IFACE => {
                let mut powered = false;
                for_each_entry(&mut props, |name: &str, mut v| {
                    if name == "Powered" {
                        powered = variant(&mut v).and_then(|mut v| v.get()).unwrap_or(false);
                    }
                });
                self.adapters.insert(object.to_owned(), powered);
                if result == Applied::Nothing {
                    result = Applied::Adapter;
                }
            }
            _ => {}
        });
        result
    }

    /// `(s interface, a{sv} changed, as invalidated)` on `path`.
    fn properties_changed(&mut self, path: &str, mut it: Iter<'_>) -> Applied {
        let Some(iface) = it.get::<&str>() else {
            return Applied::Nothing;
        };
        it.next();
        match iface {
            DEVICE_IFACE => {
                if !self.devices.contains_key(path) {
                    // A device we did not see being added (we connected in between):
                    // BlueZ always names its address in the path.
                    let Some(address) = address_from_path(path) else {
                        return Applied::Nothing;
                    };
                    if self.devices.len() >= MAX_DEVICES {
                        return Applied::Nothing;
                    }
                    let mut record = DeviceRecord::default();
                    record.props.address = address;
                    self.devices.insert(path.to_owned(), record);
                }
                let Some(record) = self.devices.get_mut(path) else {
                    return Applied::Nothing;
                };
                let mut change = update_device(record, &mut it);
                it.next();
                let invalidated: Vec<&str> = it.get().unwrap_or_default();
                for name in invalidated {
                    change.reading |= invalidate(record, name);
                }
                Applied::Device(path.to_owned(), change)
            }
            ADAPTER_IFACE => {
                let mut powered = None;
                for_each_entry(&mut it, |name: &str, mut v| {
                    if name == "Powered" {
                        powered = variant(&mut v).and_then(|mut v| v.get::<bool>());
                    }
                });
                match (powered, self.adapters.get_mut(path)) {
                    (Some(p), Some(slot)) => {
                        *slot = p;
                        Applied::Adapter
                    }
                    (Some(p), None) => {
                        self.adapters.insert(path.to_owned(), p);
                        Applied::Adapter
                    }
                    _ => Applied::Nothing,
                }
            }
            _ => Applied::Nothing,
        }
    }
}

/// `/org/bluez/hci0/dev_C0_FF_EE_00_00_01` → `C0:FF:EE:00:00:01`.
pub fn address_from_path(path: &str) -> Option<BDAddr> {
    let (_, tail) = path.rsplit_once("/dev_")?;
    let mut out = [0u8; 6];
    let mut parts = tail.split('_');
    for b in &mut out {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(BDAddr::from(out))
}

/// A property BlueZ no longer has (`invalidated_properties`); true when advertisement
/// data went away.
fn invalidate(record: &mut DeviceRecord, name: &str) -> bool {
    let p = &mut record.props;
    match name {
        "RSSI" => p.rssi = None,
        "TxPower" => p.tx_power_level = None,
        "Name" => p.local_name = None,
        "Alias" => record.alias = None,
        "ManufacturerData" => return !std::mem::take(&mut p.manufacturer_data).is_empty(),
        "ServiceData" => return !std::mem::take(&mut p.service_data).is_empty(),
        _ => {}
    }
    false
}

/// Applies an `a{sv}` of `org.bluez.Device1` properties.
fn update_device(record: &mut DeviceRecord, it: &mut Iter<'_>) -> Change {
    let mut change = Change::default();
    for_each_entry(it, |name: &str, mut v| {
        let Some(mut value) = variant(&mut v) else {
            return;
        };
        let p = &mut record.props;
        match name {
            "Address" => {
                if let Some(a) = value
                    .get::<&str>()
                    .and_then(|s| BDAddr::from_str_delim(s).ok())
                {
                    p.address = a;
                }
            }
            "AddressType" => {
                p.address_type = match value.get::<&str>() {
                    Some("random") => Some(AddressType::Random),
                    Some("public") => Some(AddressType::Public),
                    _ => None,
                };
            }
            "Name" => {
                if let Some(n) = value.get::<&str>()
                    && p.local_name.as_deref() != Some(n)
                {
                    p.local_name = Some(n.to_owned());
                    change.advert = true;
                }
            }
            "Alias" => {
                if let Some(n) = value.get::<&str>()
                    && record.alias.as_deref() != Some(n)
                {
                    record.alias = Some(n.to_owned());
                }
            }
            "RSSI" => {
                p.rssi = value.get::<i16>().or(p.rssi);
                change.advert = true;
            }
            "TxPower" => {
                p.tx_power_level = value.get::<i16>().or(p.tx_power_level);
                change.advert = true;
            }
            "Class" => p.class = value.get::<u32>(),
            "UUIDs" => {
                let uuids: Vec<Uuid> = value
                    .get::<Vec<&str>>()
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|s| Uuid::parse_str(s).ok())
                    .collect();
                p.services = uuids;
            }
            "ManufacturerData" => {
                let mut data = HashMap::new();
                for_each_entry(&mut value, |company: u16, mut v| {
                    if let Some(bytes) = variant(&mut v).and_then(|mut b| b.get::<&[u8]>()) {
                        data.insert(company, bytes.to_vec());
                    }
                });
                change.advert = true;
                if data != p.manufacturer_data {
                    p.manufacturer_data = data;
                    change.reading = true;
                }
            }
            "ServiceData" => {
                let mut data = HashMap::new();
                for_each_entry(&mut value, |uuid: &str, mut v| {
                    if let (Ok(u), Some(bytes)) = (
                        Uuid::parse_str(uuid),
                        variant(&mut v).and_then(|mut b| b.get::<&[u8]>()),
                    ) {
                        data.insert(u, bytes.to_vec());
                    }
                });
                change.advert = true;
                if data != p.service_data {
                    p.service_data = data;
                    change.reading = true;
                }
            }
            _ => {}
        }
    });
    change
}

/// The content of a variant.
fn variant<'a>(it: &mut Iter<'a>) -> Option<Iter<'a>> {
    it.recurse(ArgType::Variant)
}

/// Calls `f(key, value iterator)` for every entry of the dictionary `it` points at.
fn for_each_entry<'a, K: dbus::arg::Get<'a>>(it: &mut Iter<'a>, mut f: impl FnMut(K, Iter<'a>)) {
    let Some(mut entries) = it.recurse(ArgType::Array) else {
        return;
    };
    while entries.arg_type() == ArgType::DictEntry {
        if let Some(mut entry) = entries.recurse(ArgType::DictEntry)
            && let Some(key) = entry.get::<K>()
        {
            entry.next();
            f(key, entry);
        }
        if !entries.next() {
            break;
        }
    }
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
