use super::*;
use crate::sunspec::defs::{known_models, model_def};

fn find<'a>(fields: &'a [Field<'_>], name: &str) -> Option<&'a Reading> {
    fields
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no field {name}"))
        .value
        .as_ref()
}

/// Model 160 with three modules; register offsets from the model 160 definition (fixed
/// part 10 registers: ID, L, DCA_SF, DCV_SF, DCW_SF, DCWH_SF, Evt(2), N, TmsPer; each
/// module 20: ID, IDStr(8), DCA, DCV, DCW, DCWH(2), Tms(2), Tmp, DCSt, DCEvt(2)).
fn mppt_image() -> Vec<u16> {
    let mut r = vec![
        160,
        8 + 60,
        (-2i16) as u16,
        (-1i16) as u16,
        0,
        0x8000,
        0,
        0,
        3,
        0xFFFF,
    ];
    for (i, (a, v, w)) in [
        (1234u16, 4012u16, 495u16),
        (1100, 3990, 438),
        (0xFFFF, 0xFFFF, 0xFFFF),
    ]
    .into_iter()
    .enumerate()
    {
        let mut name = [0u16; 8];
        name[0] = u16::from_be_bytes([b'P', b'V']);
        name[1] = u16::from_be_bytes([b'1' + i as u8, 0]);
        r.push(i as u16 + 1);
        r.extend_from_slice(&name);
        r.extend_from_slice(&[a, v, w, 0, 5000, 0, 60, (-5i16) as u16, 4, 0, 0]);
    }
    r
}

#[test]
fn mppt_repeating_groups_scale_factors_and_sentinels() {
    let def = model_def(160).unwrap();
    let regs = mppt_image();
    assert_eq!(regs.len(), 70);
    let f = decode_model(&def, 1, &regs);
    assert_eq!(find(&f, "m160_N"), Some(&Reading::Int(3)));
    assert_eq!(find(&f, "m160_TmsPer"), None, "0xFFFF: not implemented");
    assert_eq!(find(&f, "m160_Evt"), Some(&Reading::Int(0)));
    assert_eq!(find(&f, "m160_module_1_DCA"), Some(&Reading::Float(12.34)));
    assert_eq!(find(&f, "m160_module_1_DCV"), Some(&Reading::Float(401.2)));
    assert_eq!(find(&f, "m160_module_1_DCW"), Some(&Reading::Float(495.0)));
    assert_eq!(
        find(&f, "m160_module_2_IDStr"),
        Some(&Reading::Text("PV2".into()))
    );
    assert_eq!(
        find(&f, "m160_module_2_DCWH"),
        None,
        "DCWH_SF is not implemented, so DCWH has no value"
    );
    assert_eq!(find(&f, "m160_module_2_Tms"), Some(&Reading::Int(60)));
    assert_eq!(find(&f, "m160_module_2_Tmp"), Some(&Reading::Int(-5)));
    assert_eq!(find(&f, "m160_module_3_DCA"), None);
    assert_eq!(find(&f, "m160_module_3_ID"), Some(&Reading::Int(3)));
    assert!(
        !f.iter()
            .any(|x| x.name.ends_with("_SF") || x.name == "m160_ID" || x.name == "m160_L")
    );
    assert!(!f.iter().any(|x| x.name.starts_with("m160_module_4")));
    // Legacy count 0: the same image with one module less, the count follows L.
    let short = [&regs[..1], &[48], &regs[2..50]].concat();
    let f = decode_model(&def, 2, &short);
    assert!(f.iter().any(|x| x.name == "m160_2_module_2_DCW"));
    assert!(!f.iter().any(|x| x.name.starts_with("m160_2_module_3")));
}

#[test]
fn sentinels_by_type() {
    use PointType::*;
    for (kind, regs) in [
        (Int16, vec![0x8000]),
        (Uint16, vec![0xFFFF]),
        (Acc16, vec![0]),
        (Enum16, vec![0xFFFF]),
        (Bitfield16, vec![0xFFFF]),
        (Sunssf, vec![0x8000]),
        (Int32, vec![0x8000, 0]),
        (Uint32, vec![0xFFFF, 0xFFFF]),
        (Acc32, vec![0, 0]),
        (Bitfield32, vec![0xFFFF, 0xFFFF]),
        (Ipaddr, vec![0, 0]),
        (Int64, vec![0x8000, 0, 0, 0]),
        (Uint64, vec![0xFFFF; 4]),
        (Acc64, vec![0; 4]),
        (Float32, vec![0x7FC0, 0]),
        (Float64, vec![0x7FF8, 0, 0, 0]),
        (String, vec![0, 0x4142]),
        (Eui48, vec![0, 0xFFFF, 0xFFFF, 0xFFFF]),
    ] {
        assert_eq!(raw_value(kind, &regs), None, "{kind:?}");
    }
    assert_eq!(raw_value(Int16, &[0xFFFF]), Some(Raw::Int(-1)));
    assert_eq!(raw_value(Acc32, &[1, 2]), Some(Raw::Int(65538)));
    assert_eq!(raw_value(Int32, &[0xFFFF, 0xFFFE]), Some(Raw::Int(-2)));
    assert_eq!(raw_value(Float32, &[0x4148, 0]), Some(Raw::Float(12.5)));
    assert_eq!(
        raw_value(Ipaddr, &[0xC0A8, 0x0102]),
        Some(Raw::Text("192.168.1.2".into()))
    );
    assert_eq!(
        raw_value(Eui48, &[0, 0x0011, 0x2233, 0x4455]),
        Some(Raw::Text("00:11:22:33:44:55".into()))
    );
    assert_eq!(
        raw_value(String, &[0x4142, 0x4300]),
        Some(Raw::Text("ABC".into()))
    );
    assert_eq!(apply_sf(2305.0, -1), 230.5);
    assert_eq!(apply_sf(12.0, 3), 12000.0);
    assert_eq!(apply_sf(1.0, -2), 0.01);
}

#[test]
fn every_model_decodes_without_panic_and_names_are_dtdl_names() {
    for id in known_models() {
        let def = model_def(id).unwrap();
        // A generous image: every count point reads 99 groups' worth of 0x0002 registers.
        let regs = vec![2u16; 4000];
        let fields = decode_model(&def, 12, &regs);
        for f in &fields {
            assert!(crate::map::valid_name(&f.name), "model {id}: {}", f.name);
        }
        let mut names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(n, names.len(), "model {id}: duplicate names");
        // Short and garbage images never panic.
        for len in [0, 1, 2, 5, 17] {
            let _ = decode_model(&def, 1, &regs[..len]);
        }
    }
}
