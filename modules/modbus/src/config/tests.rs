use super::*;
use serde_json::json;

fn paths(doc: Value) -> Vec<String> {
    parse(&doc)
        .unwrap_err()
        .0
        .into_iter()
        .map(|i| i.path)
        .collect()
}

#[test]
fn the_issue_example_parses() {
    let cfg = parse(&json!({"devices": {
        "meter-1": {"map": "eastron-sdm120", "connection": {"type": "tcp", "host": "10.0.0.5", "port": 502}, "unitId": 1, "pollIntervalMs": 1000, "timeoutMs": 1000},
        "meter-2": {"map": "eastron-sdm630", "connection": {"type": "rtu", "port": "/dev/ttyUSB0", "baudRate": 9600, "parity": "none", "dataBits": 8, "stopBits": 1}, "unitId": 2},
        "inverter": {"map": "sunspec-inverter-103", "connection": {"type": "rtuOverTcp", "host": "gw.local", "port": 4001}, "points": ["acPower"]}
    }}))
    .unwrap();
    assert_eq!(cfg.devices.len(), 3);
    let inv = &cfg.devices["inverter"];
    let names: Vec<&str> = inv
        .wanted
        .iter()
        .map(|&i| inv.map.points[i].name.as_str())
        .collect();
    assert_eq!(names, ["acPower", "acPowerSf"], "scale factors come along");
    assert!(parse(&json!({})).unwrap().devices.is_empty());
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let p = paths(json!({"devices": {
        "a": {"map": "no-such-map", "connection": {"type": "tcp", "host": "h"}},
        "b": {"map": "xy-md02", "connection": {"type": "tcp", "host": "h"}, "pollIntervalMs": "fast"},
        "c": {"map": "xy-md02", "connection": {"type": "rtu", "port": "/dev/x"}, "unitId": 0, "timeoutMs": 5},
        "d": {"map": "xy-md02", "connection": {"type": "carrier-pigeon"}},
        "e": {"map": "xy-md02", "connection": {"type": "tcp", "host": "h"}, "points": ["temperature", "nope"]},
        "bad id!": {"map": "xy-md02", "connection": {"type": "tcp", "host": "h"}},
        "f": {"map": "xy-md02", "connection": {"type": "rtu", "port": "/dev/x", "baudRate": 19200}},
        "g": {"map": {"name": "inline", "points": {"v": {"table": "holding", "address": 70000, "type": "u16"}}}, "connection": {"type": "tcp", "host": "h"}},
        "h": {"map": "xy-md02", "connection": {"type": "tcp", "host": "h"}, "report": {"onChange": true, "deadbandPercent": -1, "minIntervalMs": 9000, "maxSilenceMs": 1000, "pointDeadbands": {"nope": 1}}}
    }, "maps": {"m": {"name": "m", "points": {}}}}));
    for expected in [
        "devices.a.map",
        "devices.b.pollIntervalMs",
        "devices.c.unitId",
        "devices.c.timeoutMs",
        "devices.d.connection.type",
        "devices.e.points[1]",
        "devices.bad id!",
        "devices.f.connection",
        "devices.g.map.points.v.address",
        "maps.m.points",
        "devices.h.report.deadbandPercent",
        "devices.h.report.minIntervalMs",
        "devices.h.report.pointDeadbands.nope",
    ] {
        assert!(
            p.iter().any(|x| x == expected),
            "missing {expected} in {p:?}"
        );
    }
}

#[test]
fn unknown_fields_and_wrong_shapes_are_rejected() {
    assert_eq!(
        paths(json!({"devices": {}, "slaveConfigs": {}})),
        ["slaveConfigs"]
    );
    assert_eq!(paths(json!({"devices": []})), ["devices"]);
    let e = parse(&json!({"devices": {"a": {"map": "xy-md02", "connection": {"type": "tcp", "host": "h", "tls": true}}}})).unwrap_err();
    assert_eq!(e.0[0].path, "devices.a.connection.tls");
    assert!(e.0[0].message.contains("`tls`"), "{}", e.0[0].message);
    assert_eq!(paths(json!("devices")), ["."]);
}
