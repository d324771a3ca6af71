//! The fuzz targets: each takes bytes, must never panic, and returns a signature of the
//! outcome (which branch: accepted, which error) that the runner uses as cheap feedback.

use std::hash::{Hash, Hasher};

use serde_json::Value;

/// Input shape: JSON inputs get structure-aware mutations too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A JSON document.
    Json,
    /// Bytes.
    Bytes,
}

/// One target.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Name (also the corpus directory).
    pub name: &'static str,
    /// Input shape.
    pub shape: Shape,
    /// Largest input.
    pub max_len: usize,
    /// Runs one input; the outcome's signature.
    pub run: fn(&[u8]) -> u64,
}

fn sig(parts: impl Hash) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
}

/// The first word of each error (the kind, not the varying details).
fn error_kinds(errors: &bridge_core::config::ConfigErrors) -> u64 {
    let text = errors.to_string();
    let kinds: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split(':').next())
        .map(|p| p.trim_start_matches(|c: char| !c.is_alphabetic()))
        .take(8)
        .collect();
    sig(kinds)
}

fn modbus_config(data: &[u8]) -> u64 {
    let Ok(doc) = serde_json::from_slice::<Value>(data) else {
        return 1;
    };
    match bridge_modbus::config::parse(&doc) {
        Ok(c) => sig(("ok", c.devices.len())),
        Err(e) => error_kinds(&e),
    }
}

fn modbus_map(data: &[u8]) -> u64 {
    let Ok(doc) = serde_json::from_slice::<Value>(data) else {
        return 1;
    };
    match bridge_modbus::map::parse_map(&doc, "maps.fuzz") {
        Ok(m) => sig(("ok", m.points.len())),
        Err(e) => error_kinds(&e),
    }
}

fn ble_config(data: &[u8]) -> u64 {
    let Ok(doc) = serde_json::from_slice::<Value>(data) else {
        return 1;
    };
    match bridge_ble::config::parse(&doc) {
        Ok(_) => 2,
        Err(e) => error_kinds(&e),
    }
}

fn modbus_frames(data: &[u8]) -> u64 {
    use bridge_modbus::bus::{Op, pdu, rtu, tcp};
    use bridge_modbus::map::Table;
    let [kind, unit, a, c, rest @ ..] = data else {
        return 0;
    };
    let (address, count) = (u16::from(*a), u16::from(*c) % 130);
    let table = [
        Table::Coil,
        Table::DiscreteInput,
        Table::Holding,
        Table::Input,
    ][usize::from(kind & 3)];
    let op = match kind >> 2 & 3 {
        0 => Op::Read(table, address, count.max(1)),
        1 => Op::WriteRegister(address, count),
        2 => Op::WriteCoil(address, count & 1 == 1),
        _ => Op::WriteRegisters(address, vec![count; usize::from(count % 5 + 1)]),
    };
    let frame = tcp::parse_frame(rest);
    let answer = pdu::decode_response(&op, rest);
    let mut buf = rest.to_vec();
    let parsed = rtu::parse_response(*unit, &op, &mut buf);
    if buf.len() > rest.len() {
        panic!("the RTU parser grew its buffer");
    }
    if let Ok(Some(f)) = &frame
        && (f.total > rest.len() || f.pdu.end > rest.len())
    {
        panic!("an MBAP frame beyond the input");
    }
    sig((
        format!("{:?}", frame.map(|f| f.map(|f| f.total))),
        format!("{answer:?}").chars().take(12).collect::<String>(),
        format!("{parsed:?}").chars().take(12).collect::<String>(),
    ))
}

fn ble_adverts(data: &[u8]) -> u64 {
    use bridge_ble::adverts::*;
    let key = [7u8; 16];
    let mac = [1, 2, 3, 4, 5, 6];
    let outcomes = [
        decode_bthome(data, mac, Some(&key)).is_ok(),
        decode_bthome(data, mac, None).is_ok(),
        decode_ruuvi(data).is_ok(),
        decode_pvvx(data).is_ok(),
        decode_ibeacon(data).is_ok(),
        decode_eddystone(data).is_ok(),
    ];
    sig((outcomes, mibeacon(data), data.first().copied()))
}

/// The legacy (v2/v3) MiBeacon key of the `mibeacon-legacy` seed, widened as a 24-digit
/// `bindKey` is.
const MIBEACON_LEGACY_KEY: &str = "b853075158487ca39a5b5ea9";

/// MiBeacon service data from the seeds' address (a frame's MAC must be the sender's) with
/// the seeds' legacy key, the v4/v5 key of the `mibeacon-v5` seed, and none: each
/// outcome (1 + number of fields when decoded, 20 encrypted, 21 decryption failed, 0
/// refused), so frames that decrypt count as new behaviour.
pub fn mibeacon(data: &[u8]) -> [u8; 3] {
    use bridge_ble::adverts::{Advert, DecodeError, uuid16, xiaomi};
    let svc = std::collections::HashMap::from([(uuid16(xiaomi::MIBEACON_UUID16), data.to_vec())]);
    let mfg = std::collections::HashMap::new();
    let ad = Advert {
        address: [0xF8, 0x24, 0x41, 0xC5, 0x98, 0x8B],
        local_name: None,
        manufacturer_data: &mfg,
        service_data: &svc,
        services: &[],
    };
    let legacy = bridge_ble::keys::parse_hex(MIBEACON_LEGACY_KEY).unwrap_or_default();
    let outcome = |key: Option<&[u8]>| match xiaomi::decode(&ad, key) {
        Ok(d) => 1 + d.values.len().min(8) as u8,
        Err(DecodeError::Encrypted) => 20,
        Err(DecodeError::Decrypt) => 21,
        Err(_) => 0,
    };
    [
        outcome(Some(&legacy)),
        outcome(Some(&[7u8; 16])),
        outcome(None),
    ]
}

fn hub_topics_twin(data: &[u8]) -> u64 {
    use bridge_core::hub::{topics, twin};
    let text = String::from_utf8_lossy(data);
    let (topic, body) = text.split_once('\n').unwrap_or((&text, ""));
    let incoming = topics::parse_incoming(topic);
    let bag = topics::decode_bag(topic);
    let re = topics::encode_bag(
        &bag.iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect::<Vec<_>>(),
    );
    if topics::decode_bag(&re) != bag {
        panic!("a property bag does not survive encode(decode(x)): {topic:?}");
    }
    let mut twin_sig = 0;
    if let Ok(doc) = serde_json::from_str::<Value>(body) {
        let mut d = twin::Desired::from_twin(&doc).unwrap_or_default();
        let v = twin::version_of(&doc);
        let applied = d.apply_patch(&doc, v);
        let _ = twin::strip_metadata(&doc);
        let mut target = doc.clone();
        twin::merge_patch(&mut target, &doc);
        twin_sig = sig((applied, v.is_some(), d.doc.is_object()));
    }
    sig((
        format!("{incoming:?}").chars().take(10).collect::<String>(),
        bag.len().min(4),
        twin_sig,
    ))
}

fn workload_http(data: &[u8]) -> u64 {
    match bridge_core::fuzz_entry::workload_http_response(data) {
        Ok(status) => sig(("ok", status / 100)),
        Err(e) => sig(e.split(' ').take(3).collect::<Vec<_>>()),
    }
}

fn spool_segment(data: &[u8]) -> u64 {
    let watermark = u64::from(data.first().copied().unwrap_or(0) & 3);
    let (kept, corrupt, next) = bridge_core::fuzz_entry::spool_segment(data, watermark);
    if next < watermark {
        panic!("recovery moved the sequence backwards");
    }
    sig((kept.min(4), corrupt.min(2)))
}

/// Every target.
pub const TARGETS: [Target; 8] = [
    Target {
        name: "modbus-config",
        shape: Shape::Json,
        max_len: 16 * 1024,
        run: modbus_config,
    },
    Target {
        name: "modbus-map",
        shape: Shape::Json,
        max_len: 16 * 1024,
        run: modbus_map,
    },
    Target {
        name: "ble-config",
        shape: Shape::Json,
        max_len: 16 * 1024,
        run: ble_config,
    },
    Target {
        name: "modbus-frames",
        shape: Shape::Bytes,
        max_len: 600,
        run: modbus_frames,
    },
    Target {
        name: "ble-adverts",
        shape: Shape::Bytes,
        max_len: 64,
        run: ble_adverts,
    },
    Target {
        name: "hub-topics-twin",
        shape: Shape::Bytes,
        max_len: 2048,
        run: hub_topics_twin,
    },
    Target {
        name: "workload-http",
        shape: Shape::Bytes,
        max_len: 2048,
        run: workload_http,
    },
    Target {
        name: "spool-segment",
        shape: Shape::Bytes,
        max_len: 4096,
        run: spool_segment,
    },
];
