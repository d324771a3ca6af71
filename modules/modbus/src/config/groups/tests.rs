use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::config::{Connection, parse};

fn paths(doc: Value) -> Vec<(String, String)> {
    parse(&doc)
        .unwrap_err()
        .0
        .into_iter()
        .map(|i| (i.path, i.message))
        .collect()
}

#[test]
fn hosts_and_unit_ids_expand_with_the_pattern() {
    let cfg = parse(&json!({"groups": {"meters": {
        "map": "eastron-sdm120",
        "connection": {"type": "tcp", "port": 1502},
        "hosts": ["10.0.0.1", "10.0.0.254-10.0.1.1", "plc.local"],
        "unitIds": [1, "3-4"],
        "idPattern": "meter-{host}-{unitId}",
        "pollIntervalMs": 5000
    }}}))
    .unwrap();
    assert_eq!(cfg.devices.len(), 6 * 3);
    let d = &cfg.devices["meter-10-0-0-255-3"];
    assert_eq!(d.unit_id, 3);
    assert_eq!(d.poll_interval.as_millis(), 5000);
    assert!(
        matches!(&d.connection, Connection::Tcp { host, port: 1502, .. } if host == "10.0.0.255")
    );
    assert!(cfg.devices.contains_key("meter-10-0-1-1-4"));
    assert!(cfg.devices.contains_key("meter-plc-local-1"));
    // Every member shares the one map.
    let first = &cfg.devices["meter-10-0-0-1-1"].map;
    assert!(cfg.devices.values().all(|d| Arc::ptr_eq(&d.map, first)));
}

#[test]
fn counters_and_rtu_unit_ranges() {
    let cfg = parse(&json!({
        "groups": {"line-a": {
            "map": "xy-md02",
            "connection": {"type": "rtu", "port": "/dev/ttyUSB0", "baudRate": 19200},
            "unitIds": "1-32",
            "idPattern": "{group}-th-{n:03}"
        }},
        "devices": {"other": {"map": "xy-md02", "connection": {"type": "tcp", "host": "h"}}}
    }))
    .unwrap();
    assert_eq!(cfg.devices.len(), 33);
    assert_eq!(cfg.devices["line-a-th-001"].unit_id, 1);
    assert_eq!(cfg.devices["line-a-th-032"].unit_id, 32);
}

#[test]
fn identical_inline_maps_are_parsed_once_and_shared() {
    let inline =
        json!({"name": "m", "points": {"v": {"table": "holding", "address": 0, "type": "u16"}}});
    let other =
        json!({"name": "m2", "points": {"v": {"table": "input", "address": 0, "type": "u16"}}});
    let cfg = parse(&json!({
        "devices": {
            "a": {"map": inline, "connection": {"type": "tcp", "host": "h1"}},
            "b": {"map": inline, "connection": {"type": "tcp", "host": "h2"}},
            "c": {"map": other, "connection": {"type": "tcp", "host": "h3"}}
        },
        "groups": {"g": {"map": inline, "connection": {"type": "tcp"}, "hosts": "10.1.1.1-3", "idPattern": "g{n}"}}
    }))
    .unwrap();
    let a = &cfg.devices["a"].map;
    assert!(Arc::ptr_eq(a, &cfg.devices["b"].map));
    assert!(Arc::ptr_eq(a, &cfg.devices["g3"].map));
    assert!(!Arc::ptr_eq(a, &cfg.devices["c"].map));
    assert_eq!(cfg.devices["c"].map.name, "m2");
}

#[test]
fn mistakes_are_reported_once_at_the_group() {
    let p = paths(json!({"groups": {
        "no-pattern": {"map": "xy-md02", "connection": {"type": "tcp"}, "hosts": ["h"]},
        "dup": {"map": "xy-md02", "connection": {"type": "tcp"}, "hosts": ["a", "b"], "idPattern": "same"},
        "bad-range": {"map": "xy-md02", "connection": {"type": "tcp"}, "hosts": ["h", "10.0.0.9-10.0.0.1"], "idPattern": "r{n}"},
        "bad-units": {"map": "xy-md02", "connection": {"type": "tcp", "host": "h"}, "unitIds": "5-300", "idPattern": "u{unitId}"},
        "hosts-on-rtu": {"map": "xy-md02", "connection": {"type": "rtu", "port": "/dev/x"}, "hosts": ["h"], "idPattern": "z{n}"},
        "placeholder": {"map": "xy-md02", "connection": {"type": "tcp"}, "hosts": ["h"], "idPattern": "{serial}"}
    }}));
    let at: Vec<&str> = p.iter().map(|(p, _)| p.as_str()).collect();
    for want in [
        "groups.no-pattern.idPattern",
        "groups.dup.idPattern",
        "groups.bad-range.hosts[1]",
        "groups.bad-units.unitIds",
        "groups.hosts-on-rtu.hosts",
        "groups.placeholder.idPattern",
    ] {
        assert!(at.contains(&want), "{want} missing in {p:?}");
    }
}

#[test]
fn mistakes_in_the_members_are_reported_once_at_the_group() {
    let p = paths(json!({"groups": {
        "bad-field": {"map": "xy-md02", "connection": {"type": "tcp"}, "hosts": "10.0.0.1-200",
                      "idPattern": "t{n}", "pollIntervalMs": 1},
        "bad-map": {"map": {"name": "x", "points": {"v": {"table": "nope", "address": 0, "type": "u16"}}},
                    "connection": {"type": "tcp"}, "hosts": ["h1", "h2"], "idPattern": "x{n}"},
        "bad-id": {"map": "xy-md02", "connection": {"type": "tcp", "host": "h"}, "unitIds": "1-2", "idPattern": "a b{unitId}"}
    }}));
    let at: Vec<&str> = p.iter().map(|(p, _)| p.as_str()).collect();
    // At the group, once, although 200 / 2 devices share them.
    assert_eq!(
        at.iter()
            .filter(|p| **p == "groups.bad-field.pollIntervalMs")
            .count(),
        1,
        "{p:?}"
    );
    assert!(
        at.iter().any(|p| p.starts_with("groups.bad-map.map")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|(path, m)| path == "groups.bad-id.idPattern" && m.contains("'a b1'")),
        "{p:?}"
    );
}

#[test]
fn group_ids_must_not_collide_with_devices() {
    let p = paths(json!({
        "devices": {"m1": {"map": "xy-md02", "connection": {"type": "tcp", "host": "h"}}},
        "groups": {"g": {"map": "xy-md02", "connection": {"type": "tcp"}, "hosts": ["a", "b"], "idPattern": "m{n}"}}
    }));
    assert!(
        p.iter()
            .any(|(path, m)| path == "groups.g.idPattern" && m.contains("'m1'")),
        "{p:?}"
    );
}

#[test]
fn two_thousand_devices_fit_in_a_few_hundred_bytes() {
    let doc = json!({"groups": {"site": {
        "map": "eastron-sdm120", "connection": {"type": "tcp", "port": 502},
        "hosts": ["10.0.0.1-10.0.7.208"], "idPattern": "meter-{n:04}", "pollIntervalMs": 1000
    }}});
    assert!(doc.to_string().len() < 300);
    let cfg = parse(&doc).unwrap();
    assert_eq!(cfg.devices.len(), 2000);
    assert!(cfg.devices.contains_key("meter-2000"));
}

#[test]
fn ids_that_cannot_be_twin_keys_are_refused_with_a_reason() {
    let p = paths(json!({
        "devices": {"meter.1": {"map": "xy-md02", "connection": {"type": "tcp", "host": "h"}},
                    "ok-1": {"map": "xy-md02", "connection": {"type": "tcp", "host": "h"}}},
        "groups": {"g": {"map": "xy-md02", "connection": {"type": "tcp", "host": "h"}, "unitIds": "1-2", "idPattern": "t#{unitId}"}}
    }));
    assert!(
        p.iter()
            .any(|(path, m)| path == "devices.meter.1" && m.contains("'.'")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|(path, m)| path == "groups.g.idPattern" && m.contains("'#'")),
        "{p:?}"
    );
    assert_eq!(p.len(), 3, "{p:?}");
    // {host} renders dots as dashes, so host-based ids are always valid keys.
    assert!(
        parse(
            &json!({"groups": {"g": {"map": "xy-md02", "connection": {"type": "tcp"},
        "hosts": ["10.0.0.1", "fe80::1"], "idPattern": "m-{host}"}}})
        )
        .is_ok()
    );
}
