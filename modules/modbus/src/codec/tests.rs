use super::*;
use crate::map::{PointSpec, Table, width_of};
use serde_json::json;

fn point(t: DataType, bo: Order, wo: Order) -> Point {
    let spec = PointSpec {
        table: Table::Holding,
        address: 0,
        data_type: t,
        bit: None,
        length: (t == DataType::String).then_some(3),
        byte_order: None,
        word_order: None,
        write_multiple: None,
        scale: None,
        offset: None,
        scale_point: None,
        unit: None,
        description: None,
        writable: true,
        min: None,
        max: None,
        publish: true,
        static_fact: false,
    };
    Point {
        name: "p".into(),
        width: width_of(&spec),
        spec,
        byte_order: bo,
        word_order: wo,
        write_multiple: false,
        scale_index: None,
    }
}

#[test]
fn float32_in_all_four_orders() {
    // 21.5f32 = 0x41AC0000 → ABCD [0x41AC, 0x0000], as pymodbus encodes it.
    let cases = [
        (Order::Big, Order::Big, [0x41AC, 0x0000]),
        (Order::Big, Order::Little, [0x0000, 0x41AC]),
        (Order::Little, Order::Big, [0xAC41, 0x0000]),
        (Order::Little, Order::Little, [0x0000, 0xAC41]),
    ];
    for (bo, wo, regs) in cases {
        let p = point(DataType::F32, bo, wo);
        assert_eq!(decode_raw(&p, &regs), Reading::Float(21.5), "{bo:?}/{wo:?}");
        assert_eq!(
            encode(&p, &json!(21.5)).unwrap(),
            WriteValue::Registers(regs.to_vec())
        );
    }
}

#[test]
fn integers_and_64_bit_values() {
    let big = |t| point(t, Order::Big, Order::Big);
    // uint32 617001 = [9, 27177] (pymodbus simulator fixture).
    assert_eq!(
        decode_raw(&big(DataType::U32), &[9, 27177]),
        Reading::Int(617_001)
    );
    assert_eq!(decode_raw(&big(DataType::I16), &[0xFFFE]), Reading::Int(-2));
    assert_eq!(
        decode_raw(&big(DataType::I32), &[0xFFFF, 0xFFFF]),
        Reading::Int(-1)
    );
    assert_eq!(
        decode_raw(&big(DataType::U64), &[0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF]),
        Reading::UInt(u64::MAX)
    );
    assert_eq!(
        decode_raw(&big(DataType::I64), &[0x8000, 0, 0, 0]),
        Reading::Int(i64::MIN)
    );
    assert_eq!(
        decode_raw(&big(DataType::F64), &[0x4035, 0x8000, 0, 0]),
        Reading::Float(21.5)
    );
    let cdab = point(DataType::I64, Order::Big, Order::Little);
    let regs = match encode(&cdab, &json!(-123_456_789_012i64)).unwrap() {
        WriteValue::Registers(r) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(decode_raw(&cdab, &regs), Reading::Int(-123_456_789_012));
}

#[test]
fn strings_bits_and_scaling() {
    let s = point(DataType::String, Order::Big, Order::Big);
    assert_eq!(
        decode_raw(&s, &[0x4142, 0x4300, 0x0000]),
        Reading::Text("ABC".into())
    );
    let mut b = point(DataType::Bit, Order::Big, Order::Big);
    b.spec.bit = Some(3);
    assert_eq!(decode_raw(&b, &[0b1000]), Reading::Bool(true));
    assert_eq!(
        encode(&b, &json!(false)).unwrap(),
        WriteValue::Bit(3, false)
    );
    let mut t = point(DataType::I16, Order::Big, Order::Big);
    t.spec.scale = Some(0.1);
    let raw = decode_raw(&t, &[2312]);
    assert_eq!(engineering(&t, raw, None), Reading::Float(231.2));
    assert_eq!(
        encode(&t, &json!(-1.5)).unwrap(),
        WriteValue::Registers(vec![(-15i16) as u16])
    );
    let sf = point(DataType::U16, Order::Big, Order::Big);
    assert_eq!(
        engineering(&sf, Reading::Int(2345), Some(-2)),
        Reading::Float(23.45)
    );
    assert_eq!(
        engineering(&sf, Reading::Int(7), None),
        Reading::Int(7),
        "unscaled integers stay integers"
    );
}

#[test]
fn bad_writes_are_errors() {
    let mut p = point(DataType::U16, Order::Big, Order::Big);
    p.spec.min = Some(1.0);
    p.spec.max = Some(247.0);
    assert!(matches!(
        encode(&p, &json!(300)),
        Err(EncodeError::Range { .. })
    ));
    assert!(matches!(
        encode(&p, &json!("12")),
        Err(EncodeError::Type { .. })
    ));
    let i16p = point(DataType::I16, Order::Big, Order::Big);
    assert!(matches!(
        encode(&i16p, &json!(40_000)),
        Err(EncodeError::Overflow { .. })
    ));
    assert!(matches!(
        encode(
            &point(DataType::String, Order::Big, Order::Big),
            &json!(["x"])
        ),
        Err(EncodeError::Type { .. })
    ));
    assert!(matches!(
        encode(&point(DataType::Bool, Order::Big, Order::Big), &json!(1)),
        Err(EncodeError::Type { .. })
    ));
}

#[test]
fn hand_written_json_matches_serde_json() {
    for r in [
        Reading::Bool(true),
        Reading::Int(-42),
        Reading::UInt(u64::MAX),
        Reading::Float(231.2),
        Reading::Float(230.0),
        Reading::Float(-0.000123),
        Reading::Float(f64::NAN),
        Reading::Text("a \"quoted\"\nline".into()),
    ] {
        let mut out = String::new();
        r.write_json(&mut out);
        let parsed: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(parsed, r.to_json(), "{out}");
    }
}

#[test]
fn strings_encode_padded_in_every_order_and_round_trip() {
    for (bo, wo) in [
        (Order::Big, Order::Big),
        (Order::Little, Order::Big),
        (Order::Big, Order::Little),
        (Order::Little, Order::Little),
    ] {
        let p = point(DataType::String, bo, wo);
        for text in ["SN-42", "", "abcdef"] {
            let Ok(WriteValue::Registers(regs)) = encode(&p, &json!(text)) else {
                panic!("{text} not encoded");
            };
            assert_eq!(regs.len(), 3);
            assert_eq!(
                decode_raw(&p, &regs),
                Reading::Text(text.into()),
                "{bo:?} {wo:?}"
            );
        }
        assert!(matches!(
            encode(&p, &json!("abcdefg")),
            Err(EncodeError::TooLong {
                bytes: 7,
                room: 6,
                ..
            })
        ));
        assert!(matches!(
            encode(&p, &json!(5)),
            Err(EncodeError::Type { .. })
        ));
    }
    let big = point(DataType::String, Order::Big, Order::Big);
    assert_eq!(
        encode(&big, &json!("AB")).unwrap(),
        WriteValue::Registers(vec![0x4142, 0, 0])
    );
}
