//! Pure parse of BlueZ's object signals into a per-device cache: `PropertiesChanged` on
//! `org.bluez.Device1` / `org.bluez.Adapter1`, the object manager's `InterfacesAdded` /
//! `InterfacesRemoved`, and the `GetManagedObjects` reply that seeds the cache. The
//! arguments are walked in place (no boxed `PropMap`), so one signal costs a few
//! allocations for the values that changed.
//!
//! Property names and types: BlueZ `doc/org.bluez.Device.rst` and `org.bluez.Adapter.rst`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

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
    /// The object path, shared with the forwarding queue (no copy per advertisement).
    pub path: Arc<str>,
    /// In btleplug's shape, so the decoders and the telemetry body take it unchanged.
    /// Its `manufacturer_data` holds only the entries the latest change of BlueZ's
    /// `ManufacturerData` brought ([`DeviceRecord::bluez_manufacturer`]).
    pub props: PeripheralProperties,
    /// BlueZ's `Alias` (the name, or one the user gave, or the address).
    pub alias: Option<String>,
    /// BlueZ's `ManufacturerData` as BlueZ has it: every company id the device ever
    /// advertised with its latest bytes. BlueZ accumulates them, so devices that put
    /// part of the reading in the company id (ThermoPro, SensorPush) leave a stale entry
    /// per reading; this copy is what a change is compared against.
    pub bluez_manufacturer: HashMap<u16, Vec<u8>>,
    /// Company ids new or changed in the latest `ManufacturerData`, in signal order
    /// (kept to reuse its allocation).
    fresh: Vec<u16>,
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
    /// A device's properties changed (or it appeared): its path and what changed.
    Device(Arc<str>, Change),
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
                    out.push(path.to_string());
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
                let record =
                    self.devices
                        .entry(object.to_owned())
                        .or_insert_with(|| DeviceRecord {
                            path: object.into(),
                            ..DeviceRecord::default()
                        });
                let mut change = update_device(record, &mut props);
                if record.props.address == BDAddr::default() {
                    record.props.address = address_from_path(object).unwrap_or_default();
                }
                // A device appearing with data is a reading.
                change.reading |= !record.props.manufacturer_data.is_empty()
                    || !record.props.service_data.is_empty();
                result = Applied::Device(record.path.clone(), change);
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
                    let mut record = DeviceRecord {
                        path: path.into(),
                        ..DeviceRecord::default()
                    };
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
                Applied::Device(record.path.clone(), change)
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
        "ManufacturerData" => {
            record.bluez_manufacturer.clear();
            return !std::mem::take(&mut p.manufacturer_data).is_empty();
        }
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
                change.advert = true;
                change.reading |= manufacturer_data(record, value);
            }
            "ServiceData" => {
                change.advert = true;
                change.reading |= service_data(&mut record.props.service_data, value);
            }
            _ => {}
        }
    });
    change
}

/// Applies BlueZ's `ManufacturerData` (`a{qv}`, every company id the device has used):
/// compared in place with the previous one, so an unchanged advertisement allocates
/// nothing and a changed one reuses the buffers. What the decoders see
/// (`props.manufacturer_data`) is what changed, as Home Assistant's
/// `changed_manufacturer_data` (PyPI `bluetooth-sensor-state-data`) does: the entries new
/// or changed since the previous value; on first sight the only entry, or nothing when
/// several are there (which is newest is unknown; the next advertisement tells). Stale
/// entries are thus never decoded again. True when an entry is new or changed.
fn manufacturer_data(record: &mut DeviceRecord, value: Iter<'_>) -> bool {
    let first = record.bluez_manufacturer.is_empty();
    let all = &mut record.bluez_manufacturer;
    let fresh = &mut record.fresh;
    fresh.clear();
    let mut entries = 0;
    let mut walk = value;
    for_each_entry(&mut walk, |company: u16, mut v| {
        let Some(bytes) = variant(&mut v).and_then(|mut b| b.get::<&[u8]>()) else {
            return;
        };
        entries += 1;
        match all.get_mut(&company) {
            Some(old) if old.as_slice() == bytes => {}
            Some(old) => {
                old.clear();
                old.extend_from_slice(bytes);
                fresh.push(company);
            }
            None => {
                all.insert(company, bytes.to_vec());
                fresh.push(company);
            }
        }
    });
    if entries < all.len() {
        // Entries BlueZ no longer has (its cache was cleared): keep the signal's only.
        let mut present = Vec::with_capacity(entries);
        let mut walk = value;
        for_each_entry(&mut walk, |company: u16, _| present.push(company));
        all.retain(|company, _| present.contains(company));
    }
    let decoded = &mut record.props.manufacturer_data;
    if first && all.len() > 1 {
        decoded.clear();
    } else if fresh.is_empty() {
        // Nothing new: the entries to decode stay, less any BlueZ dropped.
        decoded.retain(|company, _| all.contains_key(company));
    } else if decoded.len() == fresh.len() && fresh.iter().all(|c| decoded.contains_key(c)) {
        // The usual case (one company id, new bytes): copied into the existing buffers.
        for (company, bytes) in decoded.iter_mut() {
            if let Some(new) = all.get(company) {
                bytes.clone_from(new);
            }
        }
    } else {
        decoded.clear();
        for company in fresh.iter() {
            if let Some(new) = all.get(company) {
                decoded.insert(*company, new.clone());
            }
        }
    }
    !fresh.is_empty()
}

/// Applies BlueZ's `ServiceData` (`a{sv}`) in place: unchanged data allocates nothing,
/// changed data reuses the buffers. True when the data changed.
fn service_data(data: &mut HashMap<Uuid, Vec<u8>>, value: Iter<'_>) -> bool {
    let mut changed = false;
    let mut entries = 0;
    let mut walk = value;
    for_each_entry(&mut walk, |uuid: &str, mut v| {
        let (Ok(u), Some(bytes)) = (
            Uuid::parse_str(uuid),
            variant(&mut v).and_then(|mut b| b.get::<&[u8]>()),
        ) else {
            return;
        };
        entries += 1;
        match data.get_mut(&u) {
            Some(old) if old.as_slice() == bytes => {}
            Some(old) => {
                old.clear();
                old.extend_from_slice(bytes);
                changed = true;
            }
            None => {
                data.insert(u, bytes.to_vec());
                changed = true;
            }
        }
    });
    if entries < data.len() {
        let mut present = Vec::with_capacity(entries);
        let mut walk = value;
        for_each_entry(&mut walk, |uuid: &str, _| {
            if let Ok(u) = Uuid::parse_str(uuid) {
                present.push(u);
            }
        });
        data.retain(|u, _| present.contains(u));
        changed = true;
    }
    changed
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
