//! `bridge-ble` (in progress): BLE advertisement decoders for BTHome v2, RuuviTag RAWv2,
//! Xiaomi pvvx/ATC, iBeacon and Eddystone. The btleplug scanning/GATT side and the module
//! binary are not built yet (see the BLE issue).

pub mod adverts;
