use super::*;
use serde_json::json;

fn paths(e: &ConfigErrors) -> Vec<String> {
    e.0.iter().map(|i| i.path.clone()).collect()
}

#[test]
fn every_bundled_map_is_valid() {
    for name in bundled_names() {
        let map = bundled(name).unwrap_or_else(|| panic!("{name} missing"));
        let map = map.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(map.name, name);
        assert!(!map.points.is_empty());
    }
    assert!(bundled_names().len() >= 4);
}

#[test]
fn rejects_bad_points_with_paths() {
    let doc = json!({"name": "bad", "points": {
        "a": {"table": "holding", "address": 65535, "type": "u32"},
        "b": {"table": "coil", "address": 0, "type": "u16"},
        "c": {"table": "input", "address": 3, "type": "bit"},
        "d": {"table": "input", "address": 10, "type": "string"},
        "e": {"table": "input", "address": 20, "type": "u16", "writable": true},
        "f": {"table": "holding", "address": 30, "type": "f32", "scale": 0},
        "g": {"table": "holding", "address": 31, "type": "u16"},
        "h": {"table": "holding", "address": 40, "type": "i16", "scalePoint": "nope"},
        "9x": {"table": "holding", "address": 50, "type": "u16"}
    }});
    let e = parse_map(&doc, "maps.bad").unwrap_err();
    let p = paths(&e);
    for expected in [
        "maps.bad.points.a.address",
        "maps.bad.points.b.type",
        "maps.bad.points.c.bit",
        "maps.bad.points.d.length",
        "maps.bad.points.e.writable",
        "maps.bad.points.f.scale",
        "maps.bad.points.g.address",
        "maps.bad.points.h.scalePoint",
        "maps.bad.points.9x",
    ] {
        assert!(
            p.iter().any(|x| x == expected),
            "missing {expected} in {p:?}"
        );
    }
}

#[test]
fn wrong_types_and_unknown_fields_name_the_field() {
    let e = parse_map(&json!({"name": "x", "points": {"v": {"table": "holding", "address": "ten", "type": "u16"}}}), "f.json").unwrap_err();
    assert_eq!(paths(&e), ["f.json.points.v.address"]);
    let e = parse_map(&json!({"name": "x", "points": {"v": {"table": "holding", "address": 1, "type": "u16", "colour": 1}}}), "m").unwrap_err();
    assert_eq!(paths(&e), ["m.points.v.colour"]);
    let e = parse_map(
        &json!({"name": "x", "points": {"v": {"table": "holding", "address": 1, "type": "u128"}}}),
        "m",
    )
    .unwrap_err();
    assert_eq!(paths(&e), ["m.points.v.type"]);
}

#[test]
fn bits_of_one_register_may_share_it() {
    let doc = json!({"name": "bits", "points": {
        "alarm": {"table": "holding", "address": 5, "type": "bit", "bit": 0},
        "ready": {"table": "holding", "address": 5, "type": "bit", "bit": 1}
    }});
    assert!(parse_map(&doc, "m").is_ok());
}
