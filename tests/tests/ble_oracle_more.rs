//! The ThermoPro, SensorPush, BlueMaestro, Mopeka, Victron, Aranet and Tilt decoders of
//! bridge-ble against the parsers their users run: Home Assistant's libraries from PyPI
//! (thermopro-ble, sensorpush-ble, bluemaestro-ble, mopeka-iot-ble, victron-ble, aranet4,
//! tilt-ble) and Theengs decoder where it knows the model. `ble_oracle_more.py` builds the
//! payloads (the libraries' own test vectors and random plausible readings, Victron ones
//! encrypted with known keys) and the values each oracle decodes from them; every case
//! goes through our decoders here and every field is compared within the oracle's
//! rounding. Prints the agreement table.

#![allow(clippy::unwrap_used, clippy::print_stdout)] // test: a panic is the failure report

use std::collections::{BTreeMap, HashMap};
use std::process::Command;
use std::time::{Duration, Instant};

use bridge_ble::adverts::{
    Advert, DecodeFn, Decoded, decode_aranet, decode_bluemaestro, decode_mopeka, decode_sensorpush,
    decode_thermopro, decode_tilt, decode_victron,
};
use bridge_e2e::{peer_python, repo_root};
use serde_json::Value;

fn decoder(format: &str) -> DecodeFn {
    match format {
        "thermopro" => decode_thermopro,
        "sensorpush" => decode_sensorpush,
        "bluemaestro" => decode_bluemaestro,
        "mopeka" => decode_mopeka,
        "victron" => decode_victron,
        "aranet" => decode_aranet,
        "tilt" => decode_tilt,
        other => panic!("unknown format {other}"),
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Runs the case generator (with a deadline) and returns its cases.
fn cases() -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cases.json");
    let mut child = Command::new(peer_python())
        .arg(repo_root().join("tests/python/ble_oracle_more.py"))
        .arg(&out)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("ble_oracle_more.py timed out");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "ble_oracle_more.py failed: {status}");
    serde_json::from_slice::<Value>(&std::fs::read(&out).unwrap())
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[derive(Default)]
struct Tally {
    payloads: usize,
    fields: usize,
    mismatches: Vec<String>,
}

/// Compares the oracle's fields with ours: numbers within `tolerance`, the rest exactly,
/// `null` = the field must be absent (not available).
fn compare(
    ours: &Decoded,
    theirs: &serde_json::Map<String, Value>,
    tolerance: &dyn Fn(&str) -> f64,
    what: &str,
    tally: &mut Tally,
) {
    for (field, expected) in theirs {
        tally.fields += 1;
        let mine = ours.values.get(field);
        let same = match (mine, expected) {
            (None, Value::Null) => true,
            (Some(a), b) if a.is_number() && b.is_number() => {
                let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
                (a - b).abs() <= tolerance(field) + 1e-9
            }
            (Some(a), b) => a == b,
            (None, _) => false,
        };
        if !same {
            tally
                .mismatches
                .push(format!("{what}: {field} ours {mine:?} theirs {expected}"));
        }
    }
}

#[test]
fn more_advert_decoders_match_their_reference_parsers() {
    let cases = cases();
    let mut oracle: BTreeMap<String, Tally> = BTreeMap::new();
    let mut theengs: BTreeMap<String, Tally> = BTreeMap::new();
    let mut skipped = Vec::new();
    let mut emitted: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    let service_data = HashMap::new();
    for (i, case) in cases.iter().enumerate() {
        let format = case["format"].as_str().unwrap();
        let what = format!(
            "case {i} ({format}, {}, {})",
            case["source"].as_str().unwrap(),
            case["manufacturer"]
        );
        let manufacturer: HashMap<u16, Vec<u8>> = case["manufacturer"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.parse().unwrap(), hex(v.as_str().unwrap())))
            .collect();
        // Parsed into the advert's UUID type (inferred: the tests need no uuid crate).
        let services: Vec<_> = case["services"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().parse().unwrap())
            .collect();
        let address = hex(&case["address"].as_str().unwrap().replace(':', ""));
        let name = case["name"].as_str().filter(|n| !n.is_empty());
        let ad = Advert {
            address: address.try_into().unwrap(),
            local_name: name,
            manufacturer_data: &manufacturer,
            service_data: &service_data,
            services: &services,
        };
        let key = case["key"].as_str().map(hex);
        let result = decoder(format)(&ad, key.as_deref());
        let tally = oracle.entry(format.to_owned()).or_default();
        tally.payloads += 1;
        skipped.extend(case["skipped"].as_array().unwrap().iter().cloned());
        if let Some(error) = case["error"].as_str() {
            tally.fields += 1;
            if !format!("{result:?}").starts_with(&format!("Err({error}")) {
                tally
                    .mismatches
                    .push(format!("{what}: expected {error}, got {result:?}"));
            }
            continue;
        }
        let expected = match case["expected"].as_object() {
            Some(e) => e,
            None => {
                // The oracle refuses these bytes: so must we (no garbage values).
                tally.fields += 1;
                if let Ok(d) = &result {
                    tally
                        .mismatches
                        .push(format!("{what}: oracle refuses, ours {:?}", d.values));
                }
                continue;
            }
        };
        let ours = match result {
            Ok(d) => d,
            Err(e) => {
                tally.mismatches.push(format!("{what}: ours failed: {e}"));
                continue;
            }
        };
        emitted
            .entry(format.to_owned())
            .or_default()
            .extend(ours.values.keys().cloned());
        let tol = case["tolerance"].as_object().unwrap().clone();
        let tolerance = |f: &str| tol.get(f).and_then(Value::as_f64).unwrap_or(0.0);
        compare(&ours, expected, &tolerance, &what, tally);
        if let Some(id) = case["packetId"].as_u64() {
            tally.fields += 1;
            if ours.packet_id != Some(u32::try_from(id).unwrap()) {
                tally.mismatches.push(format!(
                    "{what}: packet id ours {:?} theirs {id}",
                    ours.packet_id
                ));
            }
        }
        if let Some(t) = case["theengs"].as_object() {
            let tally = theengs.entry(format.to_owned()).or_default();
            tally.payloads += 1;
            // Theengs does not round (ours keeps the sensor's resolution, ≤ 0.005 off).
            let own = case["theengsTolerance"].as_object().unwrap().clone();
            let loose = |f: &str| {
                own.get(f)
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0)
                    .max(tolerance(f))
                    .max(0.0051)
            };
            compare(&ours, t, &loose, &format!("{what} [Theengs]"), tally);
        }
    }
    println!(
        "\nformat       | payloads | fields | mismatches || Theengs payloads | fields | mismatches"
    );
    println!(
        "-------------|----------|--------|------------||------------------|--------|-----------"
    );
    for (format, t) in &oracle {
        let th = theengs.get(format);
        println!(
            "{format:<12} | {:>8} | {:>6} | {:>10} || {:>16} | {:>6} | {:>10}",
            t.payloads,
            t.fields,
            t.mismatches.len(),
            th.map_or(0, |x| x.payloads),
            th.map_or(0, |x| x.fields),
            th.map_or(0, |x| x.mismatches.len()),
        );
    }
    for note in &skipped {
        println!("not compared: {note}");
    }
    let all: Vec<&String> = oracle
        .values()
        .chain(theengs.values())
        .flat_map(|t| &t.mismatches)
        .collect();
    for m in all.iter().take(40) {
        println!("MISMATCH {m}");
    }
    assert!(
        all.is_empty(),
        "{} mismatches (first ones above)",
        all.len()
    );
    for (format, t) in &oracle {
        assert!(t.payloads >= 100, "{format}: only {} payloads", t.payloads);
    }
    // Every field a decoder emitted is documented (type, unit) in its map document.
    for (format, fields) in &emitted {
        let path = repo_root().join(format!("device-maps/ble/{format}.json"));
        let map: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        for field in fields {
            assert!(
                map["fields"].get(field).is_some(),
                "{format}: field {field} is not in {}",
                path.display()
            );
        }
    }
}
