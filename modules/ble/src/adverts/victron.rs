//! Victron Instant Readout ("extra manufacturer data", Victron's public document of
//! 2022-12-14): manufacturer data of company 0x02E1 starting 0x10, then 1 byte, model id
//! u16, record type, a 16-bit data counter (little endian; the AES-CTR initial counter and
//! our packet id), the first byte of the device's key (a key check), and the record
//! encrypted with AES-128-CTR under the per-device key from VictronConnect. Records are
//! bit fields read from the least significant bit. Record types here: 0x01 solar charger,
//! 0x02 battery monitor, 0x03 inverter, 0x04 DC-DC converter, 0x05 Smart Lithium,
//! 0x08 AC charger, 0x09 Smart BatteryProtect, 0x0A Lynx Smart BMS, 0x0C VE.Bus,
//! 0x0D DC energy meter, 0x0F Orion XS. "Not available" markers leave the field out.

use aes::Aes128;
use aes::cipher::{BlockEncrypt, KeyInit, generic_array::GenericArray};

use super::{Advert, DecodeError, Decoded, round, take};

const FORMAT: &str = "victron";

/// Victron Energy's company id.
pub const VICTRON_COMPANY_ID: u16 = 0x02E1;

/// Reads bit fields least significant bit first.
struct Bits<'a> {
    data: &'a [u8],
    at: usize,
}

impl Bits<'_> {
    fn unsigned(&mut self, n: usize) -> u32 {
        let mut v = 0u32;
        for i in 0..n {
            let bit = self.at + i;
            let byte = self.data.get(bit / 8).copied().unwrap_or(0);
            v |= u32::from((byte >> (bit % 8)) & 1) << i;
        }
        self.at += n;
        v
    }

    fn signed(&mut self, n: usize) -> i32 {
        let v = self.unsigned(n);
        if v & (1 << (n - 1)) != 0 {
            v as i32 - (1i32 << n)
        } else {
            v as i32
        }
    }
}

/// AES-128-CTR with a 128-bit little-endian counter starting at the data counter.
fn decrypt(key: &[u8], counter: u16, data: &[u8], out: &mut [u8]) -> Result<(), DecodeError> {
    let cipher = Aes128::new_from_slice(key).map_err(|_| DecodeError::Encrypted)?;
    for (block, chunk) in data.chunks(16).enumerate() {
        let ctr = u128::from(counter) + block as u128;
        let mut ks = GenericArray::from(ctr.to_le_bytes());
        cipher.encrypt_block(&mut ks);
        for (i, b) in chunk.iter().enumerate() {
            out[block * 16 + i] = b ^ ks[i];
        }
    }
    Ok(())
}

/// VE.Direct device state names.
fn state_name(v: u32) -> Option<&'static str> {
    Some(match v {
        0 => "off",
        1 => "low_power",
        2 => "fault",
        3 => "bulk",
        4 => "absorption",
        5 => "float",
        6 => "storage",
        7 => "equalize_manual",
        9 => "inverting",
        11 => "power_supply",
        245 => "starting_up",
        246 => "repeated_absorption",
        247 => "recondition",
        248 => "battery_safe",
        249 => "active",
        252 => "external_control",
        _ => return None,
    })
}

fn put_state(out: &mut Decoded, v: u32) {
    if v != 0xFF {
        out.put("deviceState", v);
        if let Some(name) = state_name(v) {
            out.put("deviceStateName", name);
        }
    }
}

/// Puts `raw × scale` unless `raw` is the field's "not available" marker.
fn put_scaled(out: &mut Decoded, name: &str, raw: i64, na: i64, scale: f64, digits: i32) {
    if raw == na {
    } else if digits == 0 {
        out.put(name, (raw as f64 * scale).round() as i64);
    } else {
        out.put(name, round(raw as f64 * scale, digits));
    }
}

/// The auxiliary input of battery monitors and DC energy meters.
fn put_aux(out: &mut Decoded, mode: u32, aux: u32) {
    match mode {
        0 => out.put("starterVoltage", f64::from(aux as u16 as i16) / 100.0),
        1 => out.put("midpointVoltage", f64::from(aux) / 100.0),
        2 if aux != 0xFFFF => out.put("temperature", round(f64::from(aux) / 100.0 - 273.15, 2)),
        _ => {}
    }
}

/// Reads one record's fields into the output.
type RecordFn = fn(&mut Bits<'_>, &mut Decoded);

/// Bytes each record type needs, and its decoder.
fn record(kind: u8) -> Option<(usize, RecordFn)> {
    Some(match kind {
        0x01 => (12, solar_charger),
        0x02 => (15, battery_monitor),
        0x03 => (11, inverter),
        0x04 => (10, dcdc_converter),
        0x05 => (16, smart_lithium),
        0x08 => (13, ac_charger),
        0x09 => (15, battery_protect),
        0x0A => (16, lynx_bms),
        0x0C => (13, vebus),
        0x0D => (11, dc_energy_meter),
        0x0F => (14, orion_xs),
        _ => return None,
    })
}

fn solar_charger(r: &mut Bits<'_>, out: &mut Decoded) {
    put_state(out, r.unsigned(8));
    let error = r.unsigned(8);
    if error != 0xFF {
        out.put("chargerError", error);
    }
    put_scaled(out, "batteryVoltage", r.signed(16).into(), 0x7FFF, 0.01, 2);
    put_scaled(out, "batteryCurrent", r.signed(16).into(), 0x7FFF, 0.1, 1);
    put_scaled(out, "yieldToday", r.unsigned(16).into(), 0xFFFF, 10.0, 0);
    put_scaled(out, "solarPower", r.unsigned(16).into(), 0xFFFF, 1.0, 0);
    put_scaled(out, "loadCurrent", r.unsigned(9).into(), 0x1FF, 0.1, 1);
}

fn battery_monitor(r: &mut Bits<'_>, out: &mut Decoded) {
    put_scaled(
        out,
        "remainingMinutes",
        r.unsigned(16).into(),
        0xFFFF,
        1.0,
        0,
    );
    put_scaled(out, "voltage", r.signed(16).into(), 0x7FFF, 0.01, 2);
    out.put("alarm", r.unsigned(16));
    let aux = r.unsigned(16);
    let mode = r.unsigned(2);
    out.put("auxMode", mode);
    put_aux(out, mode, aux);
    put_scaled(out, "current", r.signed(22).into(), 0x1F_FFFF, 0.001, 3);
    put_scaled(
        out,
        "consumedAh",
        -i64::from(r.unsigned(20)),
        -0xF_FFFF,
        0.1,
        1,
    );
    put_scaled(out, "stateOfCharge", r.unsigned(10).into(), 0x3FF, 0.1, 1);
}

fn inverter(r: &mut Bits<'_>, out: &mut Decoded) {
    put_state(out, r.unsigned(8));
    out.put("alarm", r.unsigned(16));
    put_scaled(out, "batteryVoltage", r.signed(16).into(), 0x7FFF, 0.01, 2);
    put_scaled(
        out,
        "acApparentPower",
        r.unsigned(16).into(),
        0xFFFF,
        1.0,
        0,
    );
    put_scaled(out, "acVoltage", r.unsigned(15).into(), 0x7FFF, 0.01, 2);
    put_scaled(out, "acCurrent", r.unsigned(11).into(), 0x7FF, 0.1, 1);
}

fn dcdc_converter(r: &mut Bits<'_>, out: &mut Decoded) {
    put_state(out, r.unsigned(8));
    let error = r.unsigned(8);
    if error != 0xFF {
        out.put("chargerError", error);
    }
    put_scaled(out, "inputVoltage", r.unsigned(16).into(), 0xFFFF, 0.01, 2);
    put_scaled(out, "outputVoltage", r.signed(16).into(), 0x7FFF, 0.01, 2);
    out.put("offReason", r.unsigned(32));
}

fn smart_lithium(r: &mut Bits<'_>, out: &mut Decoded) {
    out.put("bmsFlags", r.unsigned(32));
    out.put("errorFlags", r.unsigned(16));
    for cell in 1..=8 {
        // 0 = below 2.61 V and 0x7E = above 3.85 V have no value; 0x7F = not available.
        let v = r.unsigned(7);
        if (1..0x7E).contains(&v) {
            out.put(&format!("cellVoltage{cell}"), f64::from(260 + v) / 100.0);
        }
    }
    put_scaled(out, "batteryVoltage", r.unsigned(12).into(), 0xFFF, 0.01, 2);
    let balancer = r.unsigned(4);
    if balancer != 0xF {
        out.put("balancerStatus", balancer);
    }
    let t = r.unsigned(7);
    if t != 0x7F {
        out.put("batteryTemperature", i64::from(t) - 40);
    }
}

fn dc_energy_meter(r: &mut Bits<'_>, out: &mut Decoded) {
    out.put("meterType", r.signed(16));
    put_scaled(out, "voltage", r.signed(16).into(), 0x7FFF, 0.01, 2);
    out.put("alarm", r.unsigned(16));
    let aux = r.unsigned(16);
    let mode = r.unsigned(2);
    out.put("auxMode", mode);
    put_aux(out, mode, aux);
    put_scaled(out, "current", r.signed(22).into(), 0x1F_FFFF, 0.001, 3);
}

fn put_error(out: &mut Decoded, name: &str, v: u32) {
    if v != 0xFF {
        out.put(name, v);
    }
}

fn ac_charger(r: &mut Bits<'_>, out: &mut Decoded) {
    put_state(out, r.unsigned(8));
    put_error(out, "chargerError", r.unsigned(8));
    for n in 1..=3 {
        put_scaled(
            out,
            &format!("outputVoltage{n}"),
            r.unsigned(13).into(),
            0x1FFF,
            0.01,
            2,
        );
        put_scaled(
            out,
            &format!("outputCurrent{n}"),
            r.unsigned(11).into(),
            0x7FF,
            0.1,
            1,
        );
    }
    let t = r.unsigned(7);
    if t != 0x7F {
        out.put("temperature", i64::from(t) - 40);
    }
    put_scaled(out, "acCurrent", r.unsigned(9).into(), 0x1FF, 0.1, 1);
}

fn battery_protect(r: &mut Bits<'_>, out: &mut Decoded) {
    put_state(out, r.unsigned(8));
    put_error(out, "outputState", r.unsigned(8));
    put_error(out, "chargerError", r.unsigned(8));
    out.put("alarm", r.unsigned(16));
    out.put("warning", r.unsigned(16));
    put_scaled(out, "inputVoltage", r.signed(16).into(), 0x7FFF, 0.01, 2);
    put_scaled(out, "outputVoltage", r.unsigned(16).into(), 0xFFFF, 0.01, 2);
    out.put("offReason", r.unsigned(32));
}

fn lynx_bms(r: &mut Bits<'_>, out: &mut Decoded) {
    out.put("errorFlags", r.unsigned(8));
    put_scaled(
        out,
        "remainingMinutes",
        r.unsigned(16).into(),
        0xFFFF,
        1.0,
        0,
    );
    put_scaled(out, "voltage", r.signed(16).into(), 0x7FFF, 0.01, 2);
    put_scaled(out, "current", r.signed(16).into(), 0x7FFF, 0.1, 1);
    out.put("ioStatus", r.unsigned(16));
    out.put("alarmFlags", r.unsigned(18));
    put_scaled(out, "stateOfCharge", r.unsigned(10).into(), 0x3FF, 0.1, 1);
    // Unlike the battery monitor record, the Lynx BMS reports consumed Ah unsigned.
    put_scaled(out, "consumedAh", r.unsigned(20).into(), 0xF_FFFF, 0.1, 1);
    let t = r.unsigned(7);
    if t != 0x7F {
        out.put("batteryTemperature", i64::from(t) - 40);
    }
}

fn vebus(r: &mut Bits<'_>, out: &mut Decoded) {
    put_state(out, r.unsigned(8));
    put_error(out, "vebusError", r.unsigned(8));
    put_scaled(out, "batteryCurrent", r.signed(16).into(), 0x7FFF, 0.1, 1);
    put_scaled(
        out,
        "batteryVoltage",
        r.unsigned(14).into(),
        0x3FFF,
        0.01,
        2,
    );
    let ac_in = r.unsigned(2);
    if ac_in != 3 {
        out.put("acInState", ac_in);
    }
    put_scaled(out, "acInPower", r.signed(19).into(), 0x3_FFFF, 1.0, 0);
    put_scaled(out, "acOutPower", r.signed(19).into(), 0x3_FFFF, 1.0, 0);
    let alarm = r.unsigned(2);
    if alarm != 3 {
        out.put("alarmNotification", alarm);
    }
    let t = r.unsigned(7);
    if t != 0x7F {
        out.put("batteryTemperature", i64::from(t) - 40);
    }
    put_scaled(out, "stateOfCharge", r.unsigned(7).into(), 0x7F, 1.0, 0);
}

fn orion_xs(r: &mut Bits<'_>, out: &mut Decoded) {
    put_state(out, r.unsigned(8));
    put_error(out, "chargerError", r.unsigned(8));
    put_scaled(out, "outputVoltage", r.unsigned(16).into(), 0xFFFF, 0.01, 2);
    put_scaled(out, "outputCurrent", r.unsigned(16).into(), 0xFFFF, 0.1, 1);
    put_scaled(out, "inputVoltage", r.unsigned(16).into(), 0xFFFF, 0.01, 2);
    put_scaled(out, "inputCurrent", r.unsigned(16).into(), 0xFFFF, 0.1, 1);
    out.put("offReason", r.unsigned(32));
}

/// Decodes a Victron Instant Readout advertisement with the device's 16-byte key.
pub fn decode(ad: &Advert<'_>, key: Option<&[u8]>) -> Result<Decoded, DecodeError> {
    let data = ad
        .manufacturer(VICTRON_COMPANY_ID)
        .ok_or(DecodeError::NotThisFormat("Victron"))?;
    let head = take(data, 0, 8)?;
    if head[0] != 0x10 {
        return Err(DecodeError::NotThisFormat("Victron"));
    }
    let model_id = u16::from_le_bytes([head[2], head[3]]);
    let kind = head[4];
    let counter = u16::from_le_bytes([head[5], head[6]]);
    let (need, parse) =
        record(kind).ok_or(DecodeError::Invalid(FORMAT, "unsupported record type"))?;
    let key = match key {
        Some(k) if k.len() == 16 => k,
        _ => return Err(DecodeError::Encrypted),
    };
    // The advertisement carries the key's first byte: a mismatch is a wrong key.
    if head[7] != key[0] {
        return Err(DecodeError::Decrypt);
    }
    let cipher = &data[8..];
    if cipher.len() < need {
        return Err(DecodeError::Truncated {
            need: 8 + need,
            got: data.len(),
        });
    }
    let mut plain = [0u8; 32];
    let n = cipher.len().min(plain.len());
    decrypt(key, counter, &cipher[..n], &mut plain)?;
    let mut out = Decoded::new(FORMAT);
    out.packet_id = Some(u32::from(counter));
    out.put("modelId", model_id);
    out.put("recordType", kind);
    parse(
        &mut Bits {
            data: &plain[..n],
            at: 0,
        },
        &mut out,
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::json;

    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn run(data: &[u8], key: Option<&[u8]>) -> Result<Decoded, DecodeError> {
        let m = HashMap::from([(VICTRON_COMPANY_ID, data.to_vec())]);
        let s = HashMap::new();
        let ad = Advert {
            address: [1, 2, 3, 4, 5, 6],
            local_name: None,
            manufacturer_data: &m,
            service_data: &s,
            services: &[],
        };
        decode(&ad, key)
    }

    #[test]
    fn smartshunt_test_vector_and_keys() {
        // victron-ble's SmartShunt 500A vector and key.
        let data = hex("100289a302b040af925d09a4d89aa0128bdef48c6298a9");
        let key = hex("aff4d0995b7d1e176c0c33ecb9e70dcd");
        let d = run(&data, Some(&key)).unwrap();
        assert_eq!(d.values["voltage"], json!(12.53));
        assert_eq!(d.values["stateOfCharge"], json!(50.0));
        assert_eq!(d.values["consumedAh"], json!(-50.0));
        assert_eq!(d.values["current"], json!(0.0));
        assert_eq!(d.values["auxMode"], json!(3));
        assert!(!d.values.contains_key("remainingMinutes"));
        assert_eq!(d.packet_id, Some(0x40B0));
        assert_eq!(run(&data, None), Err(DecodeError::Encrypted));
        let mut wrong = key.clone();
        wrong[0] ^= 1;
        assert_eq!(run(&data, Some(&wrong)), Err(DecodeError::Decrypt));
        assert!(matches!(
            run(&data[..12], Some(&key)),
            Err(DecodeError::Truncated { .. })
        ));
    }

    #[test]
    fn solar_charger_test_vector() {
        // victron-ble's SmartSolar vector and key.
        let data = hex("100242a0016207adceb37b605d7e0ee21b24df5c");
        let key = hex("adeccb947395801a4dd45a2eaa44bf17");
        let d = run(&data, Some(&key)).unwrap();
        assert_eq!(d.values["recordType"], json!(1));
        assert_eq!(d.values["deviceStateName"], json!("absorption"));
        assert_eq!(d.values["batteryVoltage"], json!(13.88));
        assert_eq!(d.values["batteryCurrent"], json!(1.4));
        assert_eq!(d.values["yieldToday"], json!(30));
        assert_eq!(d.values["solarPower"], json!(19));
        assert_eq!(d.values["loadCurrent"], json!(0.0));
        assert!(run(&[0x10, 0, 0, 0, 0x7F, 0, 0, 0], Some(&key)).is_err());
        assert_eq!(
            run(&[0x11; 20], None),
            Err(DecodeError::NotThisFormat("Victron"))
        );
    }

    #[test]
    fn ac_charger_test_vector() {
        // victron-ble's Blue Smart IP22 charger vector and key (13-byte record).
        let data = hex("100030a308f926c1b5170a0d2280335bf12d5ed083");
        let key = hex("c129cf8f75c3fe5a1655b481e205fb7d");
        let d = run(&data, Some(&key)).unwrap();
        assert_eq!(d.values["deviceStateName"], json!("storage"));
        assert_eq!(d.values["chargerError"], json!(0));
        assert_eq!(d.values["outputVoltage1"], json!(13.49));
        assert_eq!(d.values["outputCurrent1"], json!(0.4));
        assert_eq!(d.values["temperature"], json!(21));
        assert!(!d.values.contains_key("acCurrent") && !d.values.contains_key("outputCurrent2"));
    }
}
