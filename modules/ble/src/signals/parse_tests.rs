use std::collections::HashMap;

use dbus::arg::{PropMap, RefArg, Variant};
use dbus::{Message, Path};

use super::*;

const DEV: &str = "/org/bluez/hci0/dev_C0_FF_EE_00_00_01";
const BTHOME: &str = "0000fcd2-0000-1000-8000-00805f9b34fb";

fn v(x: impl RefArg + 'static) -> Variant<Box<dyn RefArg>> {
    Variant(Box::new(x))
}

fn mfg(company: u16, bytes: &[u8]) -> Variant<Box<dyn RefArg>> {
    let mut m: HashMap<u16, Variant<Box<dyn RefArg>>> = HashMap::new();
    m.insert(company, v(bytes.to_vec()));
    v(m)
}

fn svc(uuid: &str, bytes: &[u8]) -> Variant<Box<dyn RefArg>> {
    let mut m: HashMap<String, Variant<Box<dyn RefArg>>> = HashMap::new();
    m.insert(uuid.to_owned(), v(bytes.to_vec()));
    v(m)
}

fn changed(path: &str, iface: &str, props: PropMap, invalidated: Vec<String>) -> Message {
    Message::new_signal(path, "org.freedesktop.DBus.Properties", "PropertiesChanged")
        .unwrap()
        .append3(iface, props, invalidated)
}

fn added(path: &str, iface: &str, props: PropMap) -> Message {
    let mut ifaces: HashMap<String, PropMap> = HashMap::new();
    ifaces.insert(iface.to_owned(), props);
    Message::new_signal("/", "org.freedesktop.DBus.ObjectManager", "InterfacesAdded")
        .unwrap()
        .append2(Path::from(path), ifaces)
}

fn props(entries: Vec<(&str, Variant<Box<dyn RefArg>>)>) -> PropMap {
    entries
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
}

#[test]
fn device_added_then_advertisement_changes_then_removed() {
    let mut cache = Cache::default();
    let msg = added(
        DEV,
        DEVICE_IFACE,
        props(vec![
            ("Address", v("C0:FF:EE:00:00:01".to_owned())),
            ("AddressType", v("random".to_owned())),
            ("Name", v("s1".to_owned())),
            ("Alias", v("s1".to_owned())),
            ("RSSI", v(-60_i16)),
            ("ServiceData", svc(BTHOME, &[0x40, 0x02, 0xC4, 0x09])),
            ("UUIDs", v(vec![BTHOME.to_owned()])),
        ]),
    );
    let change = Change {
        reading: true,
        advert: true,
    };
    assert_eq!(cache.apply(&msg), Applied::Device(DEV.into(), change));
    let rec = &cache.devices[DEV];
    assert_eq!(rec.props.address.to_string(), "C0:FF:EE:00:00:01");
    assert_eq!(rec.props.address_type, Some(AddressType::Random));
    assert_eq!(rec.props.local_name.as_deref(), Some("s1"));
    assert_eq!(rec.props.rssi, Some(-60));
    assert_eq!(
        rec.advert().service16(0xFCD2),
        Some(&[0x40, 0x02, 0xC4, 0x09][..])
    );
    assert_eq!(rec.props.services, vec![Uuid::parse_str(BTHOME).unwrap()]);

    // RSSI alone: an advertisement, not a new reading; the name stays cached.
    let msg = changed(DEV, DEVICE_IFACE, props(vec![("RSSI", v(-70_i16))]), vec![]);
    assert_eq!(
        cache.apply(&msg),
        Applied::Device(
            DEV.into(),
            Change {
                reading: false,
                advert: true
            }
        )
    );
    assert_eq!(cache.devices[DEV].props.rssi, Some(-70));
    assert_eq!(cache.devices[DEV].props.local_name.as_deref(), Some("s1"));

    // The same data again is no new reading; different data is.
    let same = changed(
        DEV,
        DEVICE_IFACE,
        props(vec![(
            "ServiceData",
            svc(BTHOME, &[0x40, 0x02, 0xC4, 0x09]),
        )]),
        vec![],
    );
    assert!(matches!(cache.apply(&same), Applied::Device(_, c) if !c.reading && c.advert));
    let ruuvi = changed(
        DEV,
        DEVICE_IFACE,
        props(vec![("ManufacturerData", mfg(0x0499, &[5, 1, 2]))]),
        vec![],
    );
    assert!(matches!(cache.apply(&ruuvi), Applied::Device(_, c) if c.reading));
    assert_eq!(
        cache.devices[DEV].advert().manufacturer(0x0499),
        Some(&[5, 1, 2][..])
    );

    // BlueZ invalidates the RSSI when the device goes out of range.
    let gone = changed(DEV, DEVICE_IFACE, PropMap::new(), vec!["RSSI".into()]);
    cache.apply(&gone);
    assert_eq!(cache.devices[DEV].props.rssi, None);

    let removed = Message::new_signal(
        "/",
        "org.freedesktop.DBus.ObjectManager",
        "InterfacesRemoved",
    )
    .unwrap()
    .append2(Path::from(DEV), vec![DEVICE_IFACE.to_owned()]);
    assert_eq!(cache.apply(&removed), Applied::DeviceRemoved);
    assert!(cache.devices.is_empty());
}

#[test]
fn a_device_first_heard_by_a_change_takes_its_address_from_the_path() {
    let mut cache = Cache::default();
    let msg = changed(
        DEV,
        DEVICE_IFACE,
        props(vec![("ManufacturerData", mfg(0x0499, &[5]))]),
        vec![],
    );
    assert!(matches!(cache.apply(&msg), Applied::Device(_, c) if c.reading));
    assert_eq!(
        cache.devices[DEV].props.address.to_string(),
        "C0:FF:EE:00:00:01"
    );
    assert_eq!(address_from_path("/org/bluez/hci0"), None);
    assert_eq!(
        address_from_path("/org/bluez/hci0/dev_C0_FF_EE_00_00"),
        None
    );
    assert_eq!(
        address_from_path("/org/bluez/hci0/dev_C0_FF_EE_00_00_01_02"),
        None
    );
}

#[test]
fn adapters_power_and_removal() {
    let mut cache = Cache::default();
    let a = added(
        "/org/bluez/hci0",
        ADAPTER_IFACE,
        props(vec![("Powered", v(true))]),
    );
    assert_eq!(cache.apply(&a), Applied::Adapter);
    assert_eq!(cache.adapters.get("/org/bluez/hci0"), Some(&true));
    let off = changed(
        "/org/bluez/hci0",
        ADAPTER_IFACE,
        props(vec![("Powered", v(false))]),
        vec![],
    );
    assert_eq!(cache.apply(&off), Applied::Adapter);
    assert_eq!(cache.adapters.get("/org/bluez/hci0"), Some(&false));
    let removed = Message::new_signal(
        "/",
        "org.freedesktop.DBus.ObjectManager",
        "InterfacesRemoved",
    )
    .unwrap()
    .append2(
        Path::from("/org/bluez/hci0"),
        vec![ADAPTER_IFACE.to_owned()],
    );
    assert_eq!(cache.apply(&removed), Applied::Adapter);
    assert!(cache.adapters.is_empty());
}

#[test]
fn seeded_from_get_managed_objects() {
    let mut objects: HashMap<Path<'static>, HashMap<String, PropMap>> = HashMap::new();
    let mut dev: HashMap<String, PropMap> = HashMap::new();
    dev.insert(
        DEVICE_IFACE.into(),
        props(vec![("ManufacturerData", mfg(0x0499, &[5, 9]))]),
    );
    objects.insert(Path::from(DEV), dev);
    let mut adapter: HashMap<String, PropMap> = HashMap::new();
    adapter.insert(ADAPTER_IFACE.into(), props(vec![("Powered", v(true))]));
    objects.insert(Path::from("/org/bluez/hci0"), adapter);
    let mut call = Message::new_method_call(
        "org.bluez",
        "/",
        "org.freedesktop.DBus.ObjectManager",
        "GetManagedObjects",
    )
    .unwrap();
    call.set_serial(1);
    let reply = call.method_return().append1(objects);
    let mut cache = Cache::default();
    cache
        .devices
        .insert("/stale".into(), DeviceRecord::default());
    assert_eq!(cache.seed(&reply), vec![DEV.to_owned()]);
    assert_eq!(cache.devices.len(), 1);
    assert_eq!(
        cache.devices[DEV].props.address.to_string(),
        "C0:FF:EE:00:00:01"
    );
    assert_eq!(cache.adapters.get("/org/bluez/hci0"), Some(&true));
}

#[test]
fn malformed_signals_are_ignored() {
    let mut cache = Cache::default();
    // Wrong types everywhere: a{qv} with a string inside, RSSI as a string.
    let mut bad: HashMap<u16, Variant<Box<dyn RefArg>>> = HashMap::new();
    bad.insert(1, v("no".to_owned()));
    let msg = changed(
        DEV,
        DEVICE_IFACE,
        props(vec![
            ("ManufacturerData", v(bad)),
            ("RSSI", v("loud".to_owned())),
            ("ServiceData", svc("not-a-uuid", &[1])),
        ]),
        vec![],
    );
    assert!(matches!(cache.apply(&msg), Applied::Device(..)));
    let rec = &cache.devices[DEV];
    assert!(rec.props.manufacturer_data.is_empty());
    assert!(rec.props.service_data.is_empty());
    assert_eq!(rec.props.rssi, None);
    let empty =
        Message::new_signal(DEV, "org.freedesktop.DBus.Properties", "PropertiesChanged").unwrap();
    assert_eq!(cache.apply(&empty), Applied::Nothing);
    let other = changed(DEV, "org.bluez.Battery1", PropMap::new(), vec![]);
    assert_eq!(cache.apply(&other), Applied::Nothing);
}

/// A `ManufacturerData` dictionary with several entries, as BlueZ accumulates them.
fn mfg_dict(entries: &[(u16, &[u8])]) -> Variant<Box<dyn RefArg>> {
    let dict: HashMap<u16, Variant<Box<dyn RefArg>>> =
        entries.iter().map(|(c, b)| (*c, v(b.to_vec()))).collect();
    v(dict)
}

fn mfg_changed(entries: &[(u16, &[u8])], rssi: i16) -> Message {
    changed(
        DEV,
        DEVICE_IFACE,
        props(vec![
            ("ManufacturerData", mfg_dict(entries)),
            ("RSSI", v(rssi)),
        ]),
        vec![],
    )
}

fn decode_as(cache: &Cache, format: &str) -> Result<Decoded, crate::adverts::DecodeError> {
    let f = crate::adverts::format(format).unwrap();
    (f.decode)(&cache.devices[DEV].advert(), None)
}

fn named(cache: &mut Cache, name: &str, uuids: &[&str]) {
    let msg = changed(
        DEV,
        DEVICE_IFACE,
        props(vec![
            ("Name", v(name.to_owned())),
            (
                "UUIDs",
                v(uuids.iter().map(|u| (*u).to_owned()).collect::<Vec<_>>()),
            ),
        ]),
        vec![],
    );
    cache.apply(&msg);
}

use crate::adverts::Decoded;

/// ThermoPro TP357 readings (the company id carries the tenths of °C): frames checked with
/// thermopro-ble 1.1.4 (Home Assistant) fed the same accumulated dictionaries.
const TP_21_5: (u16, &[u8]) = (0xD7C2, &[0x00, 45, 0x02, 0x2C]);
const TP_21_6: (u16, &[u8]) = (0xD8C2, &[0x00, 46, 0x02, 0x2C]);
const TP_23_0: (u16, &[u8]) = (0xE6C2, &[0x00, 50, 0x02, 0x2C]);

#[test]
fn accumulated_manufacturer_data_decodes_only_the_entries_that_changed() {
    let mut cache = Cache::default();
    named(&mut cache, "TP357 (2142)", &[]);
    // First sight, one entry: that is the reading.
    let first = mfg_changed(&[TP_21_5], -60);
    assert!(matches!(cache.apply(&first), Applied::Device(_, c) if c.reading));
    let out = decode_as(&cache, "thermopro").unwrap();
    assert_eq!(out.values["temperature"], 21.5);
    assert_eq!(out.values["humidity"], 45);
    // BlueZ keeps the old company id and adds the new one: only the new one is decoded.
    let second = mfg_changed(&[TP_21_5, TP_21_6], -61);
    assert!(matches!(cache.apply(&second), Applied::Device(_, c) if c.reading));
    assert_eq!(cache.devices[DEV].bluez_manufacturer.len(), 2);
    assert_eq!(
        cache.devices[DEV]
            .props
            .manufacturer_data
            .keys()
            .collect::<Vec<_>>(),
        vec![&0xD8C2]
    );
    let out = decode_as(&cache, "thermopro").unwrap();
    assert_eq!(out.values["temperature"], 21.6);
    assert_eq!(out.values["humidity"], 46);
    // The same dictionary again (an RSSI update): no new reading, the stale entry stays
    // out of what is decoded.
    let again = mfg_changed(&[TP_21_5, TP_21_6], -70);
    assert!(matches!(cache.apply(&again), Applied::Device(_, c) if !c.reading && c.advert));
    assert_eq!(
        decode_as(&cache, "thermopro").unwrap().values["temperature"],
        21.6
    );
    // A third reading among two stale ones.
    let third = mfg_changed(&[TP_21_5, TP_21_6, TP_23_0], -62);
    assert!(matches!(cache.apply(&third), Applied::Device(_, c) if c.reading));
    let out = decode_as(&cache, "thermopro").unwrap();
    assert_eq!(out.values["temperature"], 23.0);
    assert_eq!(out.values["humidity"], 50);
    // A stale entry's bytes changing is a new reading of that company id.
    let stale_changed: (u16, &[u8]) = (0xD7C2, &[0x00, 47, 0x02, 0x2C]);
    let fourth = mfg_changed(&[stale_changed, TP_21_6, TP_23_0], -62);
    assert!(matches!(cache.apply(&fourth), Applied::Device(_, c) if c.reading));
    let out = decode_as(&cache, "thermopro").unwrap();
    assert_eq!(out.values["temperature"], 21.5);
    assert_eq!(out.values["humidity"], 47);
}

#[test]
fn several_entries_at_first_sight_wait_for_the_next_advertisement() {
    // Seeded (GetManagedObjects / InterfacesAdded) with entries BlueZ accumulated: which
    // one is newest is unknown, so nothing is decoded until one changes (as Home
    // Assistant's `changed_manufacturer_data`).
    let mut cache = Cache::default();
    let msg = added(
        DEV,
        DEVICE_IFACE,
        props(vec![
            ("Name", v("TP357 (2142)".to_owned())),
            ("ManufacturerData", mfg_dict(&[TP_21_5, TP_21_6])),
        ]),
    );
    cache.apply(&msg);
    assert!(cache.devices[DEV].props.manufacturer_data.is_empty());
    assert!(decode_as(&cache, "thermopro").is_err());
    let next = mfg_changed(&[TP_21_5, TP_21_6, TP_23_0], -60);
    assert!(matches!(cache.apply(&next), Applied::Device(_, c) if c.reading));
    assert_eq!(
        decode_as(&cache, "thermopro").unwrap().values["temperature"],
        23.0
    );
    // BlueZ dropped entries (its cache was cleared): they are gone from ours too, and a
    // dictionary with nothing new is no reading.
    let fewer = mfg_changed(&[TP_23_0], -60);
    assert!(matches!(cache.apply(&fewer), Applied::Device(_, c) if !c.reading));
    assert_eq!(cache.devices[DEV].bluez_manufacturer.len(), 1);
    assert_eq!(
        decode_as(&cache, "thermopro").unwrap().values["temperature"],
        23.0
    );
    // Invalidated: nothing left to decode, and the next entry is a first sight again.
    let gone = changed(
        DEV,
        DEVICE_IFACE,
        PropMap::new(),
        vec!["ManufacturerData".into()],
    );
    assert!(matches!(cache.apply(&gone), Applied::Device(_, c) if c.reading));
    assert!(cache.devices[DEV].bluez_manufacturer.is_empty());
    assert!(decode_as(&cache, "thermopro").is_err());
    let back = mfg_changed(&[TP_21_6], -60);
    cache.apply(&back);
    assert_eq!(
        decode_as(&cache, "thermopro").unwrap().values["temperature"],
        21.6
    );
}

#[test]
fn sensorpush_readings_in_the_company_id_are_decoded_newest_only() {
    // SensorPush HT.w: page byte 0x04 then a packed integer whose low byte is the company
    // id's high byte. Values checked with sensorpush-ble 1.9.0 fed the same dictionaries.
    let r1: (u16, &[u8]) = (0x6804, &[23, 208, 70]);
    let r2: (u16, &[u8]) = (0xA404, &[89, 44, 73]);
    let r3: (u16, &[u8]) = (0xF404, &[122, 90, 74]);
    let mut cache = Cache::default();
    named(&mut cache, "SensorPush HT.w 0CA1", &[]);
    let mut dict = Vec::new();
    for (entry, (t, h)) in
        [r1, r2, r3]
            .into_iter()
            .zip([(21.5, 45.0), (21.75, 46.5), (22.0, 47.25)])
    {
        dict.push(entry);
        let msg = mfg_changed(&dict, -60);
        assert!(matches!(cache.apply(&msg), Applied::Device(_, c) if c.reading));
        let out = decode_as(&cache, "sensorpush").unwrap();
        assert_eq!(out.values["temperature"], t, "{dict:?}");
        assert_eq!(out.values["humidity"], h, "{dict:?}");
    }
}

#[test]
fn unchanged_service_data_is_compared_in_place() {
    let mut cache = Cache::default();
    let a = changed(
        DEV,
        DEVICE_IFACE,
        props(vec![(
            "ServiceData",
            svc(BTHOME, &[0x40, 0x02, 0xC4, 0x09]),
        )]),
        vec![],
    );
    assert!(matches!(cache.apply(&a), Applied::Device(_, c) if c.reading));
    let buf = cache.devices[DEV]
        .props
        .service_data
        .values()
        .next()
        .unwrap()
        .as_ptr();
    let b = changed(
        DEV,
        DEVICE_IFACE,
        props(vec![(
            "ServiceData",
            svc(BTHOME, &[0x40, 0x02, 0xC5, 0x09]),
        )]),
        vec![],
    );
    assert!(matches!(cache.apply(&b), Applied::Device(_, c) if c.reading));
    let rec = &cache.devices[DEV];
    assert_eq!(
        rec.advert().service16(0xFCD2),
        Some(&[0x40, 0x02, 0xC5, 0x09][..])
    );
    assert_eq!(
        rec.props.service_data.values().next().unwrap().as_ptr(),
        buf,
        "the bytes are copied into the buffer already there"
    );
    // Another UUID replaces the first (BlueZ's dictionary no longer has it).
    let c = changed(
        DEV,
        DEVICE_IFACE,
        props(vec![("ServiceData", svc(common_env(), &[1, 2]))]),
        vec![],
    );
    assert!(matches!(cache.apply(&c), Applied::Device(_, c) if c.reading));
    assert_eq!(cache.devices[DEV].props.service_data.len(), 1);
    assert_eq!(
        cache.devices[DEV].advert().service16(0x181A),
        Some(&[1, 2][..])
    );
}

fn common_env() -> &'static str {
    "0000181a-0000-1000-8000-00805f9b34fb"
}
