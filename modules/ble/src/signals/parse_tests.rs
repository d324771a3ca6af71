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
