//! A corpus of malformed configurations, read as files are (`validate FILE`, `--config`):
//! each is rejected with every problem at its exact path, or accepted for the reason
//! given. Types, ranges, nesting, sizes, encodings, arrays, byte order marks.

use serde_json::{Value, json};

use super::parse;

enum Expect {
    /// Rejected; these paths exactly (order does not matter, repeats do).
    Reject(&'static [&'static str]),
    /// Accepted, for this reason.
    Accept(&'static str),
}
use Expect::{Accept, Reject};

fn dev() -> Value {
    json!({"map": "xy-md02", "connection": {"type": "tcp", "host": "h"}})
}

/// One device `m` = the valid device with `patch` merged in (`null` removes a field).
fn with(patch: Value) -> Vec<u8> {
    let mut d = dev();
    merge(&mut d, &patch);
    json!({"devices": {"m": d}}).to_string().into_bytes()
}

/// One device `m` with this connection (replacing the valid one entirely).
fn conn(c: Value) -> Vec<u8> {
    let mut d = dev();
    d["connection"] = c;
    json!({"devices": {"m": d}}).to_string().into_bytes()
}

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                match v {
                    Value::Null => {
                        t.remove(k);
                    }
                    Value::Object(_) if t.get(k).is_some_and(Value::is_object) => {
                        if let Some(inner) = t.get_mut(k) {
                            merge(inner, v);
                        }
                    }
                    _ => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn many_problems_fill(d: &mut Value) {
    merge(
        d,
        &json!({
            "map": 7, "connection": {"type": "rtu", "port": "", "baudRate": 0, "dataBits": 9, "stopBits": 3, "parity": "mark", "frameGapMs": 20000, "extra": 1},
            "unitId": 0, "pollIntervalMs": 5, "timeoutMs": 70000, "maxRegistersPerRead": 0, "maxGapRegisters": 200,
            "points": "all", "enabled": "yes", "report": {"deadband": -1}, "slaveId": 1
        }),
    );
}

fn text(t: &str) -> Vec<u8> {
    t.as_bytes().to_vec()
}

fn cases() -> Vec<(&'static str, Vec<u8>, Expect)> {
    let tcp = |extra: Value| {
        let mut c = json!({"type": "tcp", "host": "h"});
        merge(&mut c, &extra);
        conn(c)
    };
    let rtu = |extra: Value| {
        let mut c = json!({"type": "rtu", "port": "/dev/ttyUSB0"});
        merge(&mut c, &extra);
        conn(c)
    };
    let mut bom = vec![0xEF, 0xBB, 0xBF];
    bom.extend(with(json!({})));
    let mut bom_bad = vec![0xEF, 0xBB, 0xBF];
    bom_bad.extend(with(json!({"timeoutMs": 0})));
    let utf16: Vec<u8> = std::iter::once([0xFF, 0xFE])
        .chain(
            String::from_utf8(with(json!({})))
                .unwrap_or_default()
                .encode_utf16()
                .map(u16::to_le_bytes),
        )
        .flatten()
        .collect();
    let mut latin1 = with(json!({}));
    latin1.splice(2..2, [0xE9]);
    let deep = format!(
        "{{\"devices\": {{\"m\": {{\"points\": {}{}}}}}}}",
        "[".repeat(200),
        "]".repeat(200)
    );
    let long_id = "d".repeat(129);
    let long_path: &'static str = Box::leak(format!("devices.{long_id}").into_boxed_str());
    let long_paths: &'static [&'static str] = Box::leak(vec![long_path].into_boxed_slice());
    let mut many = dev();
    merge(&mut many, &json!({"connection": null}));
    many_problems_fill(&mut many);
    let many_problems = json!({"devices": {"m": many}}).to_string().into_bytes();
    vec![
        // Arrays and other roots.
        ("root-array", text(r#"[{"m":{"map":"eastron-sdm120","connection":{"type":"tcp","host":"127.0.0.1"}}}]"#), Reject(&["."])),
        ("root-empty-array", text("[]"), Reject(&["."])),
        ("root-string", text(r#""devices""#), Reject(&["."])),
        ("root-number", text("42"), Reject(&["."])),
        ("root-null", text("null"), Reject(&["."])),
        ("root-true", text("true"), Reject(&["."])),
        ("devices-array", text(r#"{"devices": []}"#), Reject(&["devices"])),
        ("devices-string", text(r#"{"devices": "m"}"#), Reject(&["devices"])),
        ("maps-array", text(r#"{"maps": [1]}"#), Reject(&["maps"])),
        ("device-array", text(r#"{"devices": {"m": [1, 2]}}"#), Reject(&["devices.m"])),
        ("device-number", text(r#"{"devices": {"m": 5}}"#), Reject(&["devices.m"])),
        ("device-null", text(r#"{"devices": {"m": null}}"#), Reject(&["devices.m"])),
        ("points-object", with(json!({"points": {"temperature": true}})), Reject(&["devices.m.points"])),
        ("points-string", with(json!({"points": "all"})), Reject(&["devices.m.points"])),
        ("points-number-entry", with(json!({"points": ["temperature", 3]})), Reject(&["devices.m.points[1]"])),
        // Syntax and encodings.
        ("empty-file", text(""), Reject(&["."])),
        ("whitespace-only", text("  \n "), Reject(&["."])),
        ("truncated", text(r#"{"devices": {"m": {"map": "xy-md02""#), Reject(&["."])),
        ("trailing-comma", text(r#"{"devices": {},}"#), Reject(&["."])),
        ("comment", text("// site 7\n{\"devices\": {}}"), Reject(&["."])),
        ("single-quotes", text("{'devices': {}}"), Reject(&["."])),
        ("nan-literal", text(r#"{"devices": {"m": {"map": "xy-md02", "connection": {"type": "simulated"}, "pollIntervalMs": NaN}}}"#), Reject(&["."])),
        ("number-out-of-range", text(r#"{"devices": {"m": {"map": "xy-md02", "connection": {"type": "simulated"}, "pollIntervalMs": 1e400}}}"#), Reject(&["."])),
        ("two-documents", text(r#"{"devices": {}} {"devices": {}}"#), Reject(&["."])),
        ("utf8-bom", bom, Accept("a UTF-8 byte order mark is ignored (Windows editors write one)")),
        ("utf8-bom-with-a-problem", bom_bad, Reject(&["devices.m.timeoutMs"])),
        ("utf16", utf16, Reject(&["."])),
        ("latin1-byte", latin1, Reject(&["."])),
        ("nesting-200-deep", deep.into_bytes(), Reject(&["."])),
        ("duplicate-device-key", text(r#"{"devices": {"m": {"map": 1}, "m": {"map": "xy-md02", "connection": {"type": "simulated"}}}}"#), Accept("duplicate keys: the last one wins, as in serde_json and most JSON parsers")),
        // The root's fields.
        ("unknown-root-field", text(r#"{"devices": {}, "slaveConfigs": {}}"#), Reject(&["slaveConfigs"])),
        ("identity-string", text(r#"{"identity": "device"}"#), Reject(&["identity"])),
        // Device ids.
        ("id-with-space", text(r#"{"devices": {"bad id!": {"map": "xy-md02", "connection": {"type": "simulated"}}}}"#), Reject(&["devices.bad id!"])),
        ("id-empty", text(r#"{"devices": {"": {"map": "xy-md02", "connection": {"type": "simulated"}}}}"#), Reject(&["devices."])),
        ("id-129-chars", format!(r#"{{"devices": {{"{long_id}": {{"map": "xy-md02", "connection": {{"type": "simulated"}}}}}}}}"#).into_bytes(), Reject(long_paths)),
        ("id-non-ascii", text(r#"{"devices": {"zähler": {"map": "xy-md02", "connection": {"type": "simulated"}}}}"#), Reject(&["devices.zähler"])),
        // Device fields: presence and types.
        ("map-missing", with(json!({"map": null})), Reject(&["devices.m.map"])),
        ("connection-missing", with(json!({"connection": null})), Reject(&["devices.m.connection"])),
        ("map-number", with(json!({"map": 7})), Reject(&["devices.m.map"])),
        ("map-unknown", with(json!({"map": "no-such-map"})), Reject(&["devices.m.map"])),
        ("map-name-1000-chars", with(json!({"map": "x".repeat(1000)})), Reject(&["devices.m.map", "devices.m.map"])),
        ("map-inline-bad-address", with(json!({"map": {"name": "i", "points": {"v": {"table": "holding", "address": 70000, "type": "u16"}}}})), Reject(&["devices.m.map.points.v.address"])),
        ("unknown-device-field", with(json!({"slaveId": 1})), Reject(&["devices.m.slaveId"])),
        ("issue-example-three-at-once", with(json!({"pollIntervalMs": "x", "timeoutMs": 0, "unitId": 300})), Reject(&["devices.m.pollIntervalMs", "devices.m.timeoutMs", "devices.m.unitId"])),
        ("unit-id-negative", with(json!({"unitId": -1})), Reject(&["devices.m.unitId"])),
        ("unit-id-string", with(json!({"unitId": "1"})), Reject(&["devices.m.unitId"])),
        ("poll-too-fast", with(json!({"pollIntervalMs": 5})), Reject(&["devices.m.pollIntervalMs"])),
        ("poll-too-slow", with(json!({"pollIntervalMs": 1_000_000_000_000u64})), Reject(&["devices.m.pollIntervalMs"])),
        ("poll-negative", with(json!({"pollIntervalMs": -5})), Reject(&["devices.m.pollIntervalMs"])),
        ("poll-float", text(r#"{"devices": {"m": {"map": "xy-md02", "connection": {"type": "simulated"}, "pollIntervalMs": 1e3}}}"#), Reject(&["devices.m.pollIntervalMs"])),
        ("poll-u64-overflow", text(r#"{"devices": {"m": {"map": "xy-md02", "connection": {"type": "simulated"}, "pollIntervalMs": 18446744073709551616}}}"#), Reject(&["devices.m.pollIntervalMs"])),
        ("timeout-too-long", with(json!({"timeoutMs": 60_001})), Reject(&["devices.m.timeoutMs"])),
        ("max-registers-0", with(json!({"maxRegistersPerRead": 0})), Reject(&["devices.m.maxRegistersPerRead"])),
        ("max-registers-126", with(json!({"maxRegistersPerRead": 126})), Reject(&["devices.m.maxRegistersPerRead"])),
        ("max-gap-200", with(json!({"maxGapRegisters": 200})), Reject(&["devices.m.maxGapRegisters"])),
        ("max-gap-over-u16", with(json!({"maxGapRegisters": 70000})), Reject(&["devices.m.maxGapRegisters"])),
        ("points-unknown", with(json!({"points": ["nope"]})), Reject(&["devices.m.points[0]"])),
        ("point-name-200-chars", with(json!({"points": ["p".repeat(200)]})), Reject(&["devices.m.points[0]", "devices.m.points[0]"])),
        ("enabled-string", with(json!({"enabled": "yes"})), Reject(&["devices.m.enabled"])),
        ("disabled-but-wrong", with(json!({"enabled": false, "timeoutMs": 1})), Reject(&["devices.m.timeoutMs"])),
        ("report-array", with(json!({"report": [true]})), Reject(&["devices.m.report"])),
        ("report-three-wrong", with(json!({"report": {"onChange": "yes", "deadband": "x", "maxSilenceMs": -1}})), Reject(&["devices.m.report.onChange", "devices.m.report.deadband", "devices.m.report.maxSilenceMs"])),
        ("report-unknown-field", with(json!({"report": {"everyMs": 5}})), Reject(&["devices.m.report.everyMs"])),
        ("report-negative-deadband", with(json!({"report": {"deadband": -1}})), Reject(&["devices.m.report.deadband"])),
        // Connections.
        ("connection-string", conn(json!("tcp://h:502")), Reject(&["devices.m.connection"])),
        ("connection-no-type", conn(json!({"host": "h"})), Reject(&["devices.m.connection.type"])),
        ("connection-type-number", conn(json!({"type": 1})), Reject(&["devices.m.connection.type"])),
        ("connection-type-unknown", conn(json!({"type": "carrier-pigeon"})), Reject(&["devices.m.connection.type"])),
        ("tcp-no-host", conn(json!({"type": "tcp"})), Reject(&["devices.m.connection.host"])),
        ("tcp-host-empty", tcp(json!({"host": ""})), Reject(&["devices.m.connection.host"])),
        ("tcp-host-254", tcp(json!({"host": "a".repeat(254)})), Reject(&["devices.m.connection.host"])),
        ("tcp-host-1mb", tcp(json!({"host": "a".repeat(1 << 20)})), Reject(&["devices.m.connection.host"])),
        ("tcp-host-space", tcp(json!({"host": "plc 7"})), Reject(&["devices.m.connection.host"])),
        ("tcp-host-number", tcp(json!({"host": 10})), Reject(&["devices.m.connection.host"])),
        ("tcp-host-253", tcp(json!({"host": "a".repeat(253)})), Accept("253 characters is the longest DNS name; resolving it is a runtime error in deviceHealth")),
        ("tcp-host-idn", tcp(json!({"host": "zähler.local"})), Accept("an internationalised name is resolved at connect time; failures show in deviceHealth")),
        ("tcp-port-0", tcp(json!({"port": 0})), Reject(&["devices.m.connection.port"])),
        ("tcp-port-70000", tcp(json!({"port": 70000})), Reject(&["devices.m.connection.port"])),
        ("tcp-port-string", tcp(json!({"port": "502"})), Reject(&["devices.m.connection.port"])),
        ("tcp-port-fraction", tcp(json!({"port": 502.5})), Reject(&["devices.m.connection.port"])),
        ("tcp-unknown-field", tcp(json!({"tls": true})), Reject(&["devices.m.connection.tls"])),
        ("tcp-host-and-port-wrong", tcp(json!({"host": "", "port": -1, "frameGapMs": 20000})), Reject(&["devices.m.connection.host", "devices.m.connection.port", "devices.m.connection.frameGapMs"])),
        ("rtu-over-tcp-no-port", conn(json!({"type": "rtuOverTcp", "host": "gw"})), Reject(&["devices.m.connection.port"])),
        ("rtu-no-port", conn(json!({"type": "rtu"})), Reject(&["devices.m.connection.port"])),
        ("rtu-port-5000-chars", rtu(json!({"port": "/".repeat(5000)})), Reject(&["devices.m.connection.port"])),
        ("rtu-four-wrong", rtu(json!({"baudRate": 0, "dataBits": 9, "stopBits": 3, "parity": "mark"})), Reject(&["devices.m.connection.baudRate", "devices.m.connection.dataBits", "devices.m.connection.stopBits", "devices.m.connection.parity"])),
        ("rtu-unit-0", text(r#"{"devices": {"m": {"map": "xy-md02", "connection": {"type": "rtu", "port": "/dev/ttyUSB0"}, "unitId": 0}}}"#), Reject(&["devices.m.unitId"])),
        ("rtu-host-field", rtu(json!({"host": "h"})), Reject(&["devices.m.connection.host"])),
        ("simulated-extra-field", conn(json!({"type": "simulated", "port": 5})), Reject(&["devices.m.connection.port"])),
        // Many at once.
        ("one-device-many-problems", many_problems, Reject(&[
            "devices.m.map", "devices.m.connection.port", "devices.m.connection.baudRate",
            "devices.m.connection.dataBits", "devices.m.connection.stopBits", "devices.m.connection.parity",
            "devices.m.connection.frameGapMs", "devices.m.connection.extra", "devices.m.points",
            "devices.m.enabled", "devices.m.report.deadband", "devices.m.slaveId", "devices.m.pollIntervalMs",
            "devices.m.timeoutMs", "devices.m.maxRegistersPerRead", "devices.m.maxGapRegisters", "devices.m.unitId",
        ])),
        ("two-devices-one-serial-port", text(r#"{"devices": {
            "a": {"map": "xy-md02", "connection": {"type": "rtu", "port": "/dev/ttyS0", "baudRate": 9600}},
            "b": {"map": "xy-md02", "connection": {"type": "rtu", "port": "/dev/ttyS0", "baudRate": 19200}}}}"#), Reject(&["devices.b.connection"])),
        ("every-device-reported", text(r#"{"devices": {
            "a": {"map": "xy-md02", "connection": {"type": "tcp", "host": ""}},
            "b": {"map": "xy-md02", "connection": {"type": "tcp", "host": "h"}, "timeoutMs": 1},
            "ok": {"map": "xy-md02", "connection": {"type": "simulated"}}}, "surplus": 1}"#),
            Reject(&["devices.a.connection.host", "devices.b.timeoutMs", "surplus"])),
    ]
}

#[test]
fn every_malformed_configuration_is_rejected_with_every_problem_at_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let cases = cases();
    assert!(cases.len() >= 60, "{} cases", cases.len());
    let mut failures = Vec::new();
    for (name, bytes, expect) in cases {
        let file = dir.path().join(format!("{name}.json"));
        std::fs::write(&file, &bytes).unwrap();
        let outcome = bridge_core::runtime::config_source::read_doc(&file)
            .map_err(|e| bridge_core::config::ConfigErrors::one(".", e))
            .and_then(|doc| parse(&doc));
        match (expect, outcome) {
            (Accept(_), Ok(_)) => {}
            (Accept(reason), Err(e)) => {
                failures.push(format!("{name}: should be accepted ({reason}) but: {e}"))
            }
            (Reject(paths), Ok(_)) => {
                failures.push(format!("{name}: accepted, expected {paths:?}"))
            }
            (Reject(paths), Err(e)) => {
                let mut got: Vec<String> = e.0.iter().map(|i| i.path.clone()).collect();
                let mut want: Vec<String> = paths.iter().map(|p| (*p).to_owned()).collect();
                got.sort();
                want.sort();
                if got != want {
                    let detail: Vec<String> =
                        e.0.iter()
                            .map(|i| {
                                let mut s = i.to_string();
                                s.truncate(160);
                                s
                            })
                            .collect();
                    failures.push(format!(
                        "{name}: paths {got:?}, expected {want:?}: {detail:?}"
                    ));
                }
                for issue in &e.0 {
                    if issue.message.is_empty() || issue.message.len() > 2000 {
                        failures.push(format!(
                            "{name}: message of {} bytes at {}",
                            issue.message.len(),
                            issue.path
                        ));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
