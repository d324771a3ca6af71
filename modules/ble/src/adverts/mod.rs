//! Advertisement decoders for the common open formats, pure: bytes in, named typed values
//! out. Every decoder treats its input as hostile: truncated or random payloads give an
//! error, never a panic (a fuzz test feeds them random bytes).

mod advert;
mod aranet;
mod bluemaestro;
mod bthome;
mod eddystone;
pub mod govee;
mod ibeacon;
pub mod inkbird;
mod mopeka;
mod pvvx;
pub mod qingping;
pub mod raw;
mod registry;
mod ruuvi;
mod sensorpush;
pub mod switchbot;
pub mod thermobeacon;
mod thermopro;
mod tilt;
mod victron;
pub mod xiaomi;

use std::collections::BTreeMap;

use serde_json::Value;

pub use advert::{Advert, DecodeFn, uuid16};
pub use aranet::{ARANET_COMPANY_ID, decode as decode_aranet};
pub use bluemaestro::{BLUEMAESTRO_COMPANY_ID, decode as decode_bluemaestro};
pub use bthome::{BTHOME_UUID16, decode as decode_bthome};
pub use eddystone::{EDDYSTONE_UUID16, decode as decode_eddystone};
pub use ibeacon::{APPLE_COMPANY_ID, decode as decode_ibeacon};
pub use mopeka::{MOPEKA_COMPANY_ID, MOPEKA_SERVICE_UUID16, decode as decode_mopeka};
pub use pvvx::{ENVIRONMENTAL_UUID16, decode as decode_pvvx};
pub use registry::{FORMATS, Format, KeyKind, Match, format};
pub use ruuvi::{RUUVI_COMPANY_ID, decode as decode_ruuvi};
pub use sensorpush::{SENSORPUSH_HT1_UUID, SENSORPUSH_V2_UUID, decode as decode_sensorpush};
pub use thermopro::{THERMOPRO_NAME_PREFIXES, decode as decode_thermopro};
pub use tilt::{TILT_COMPANY_ID, decode as decode_tilt};
pub use victron::{VICTRON_COMPANY_ID, decode as decode_victron};

/// Named values decoded from one advertisement.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Decoded {
    /// Which format matched (`bthome-v2`, `ruuvi-rawv2`, …).
    pub format: &'static str,
    /// Values by field name (numbers, booleans, strings).
    pub values: BTreeMap<String, Value>,
    /// The format's packet id or frame counter, when it carries one: a repeat of the
    /// same reading (same counter) is not sent again.
    pub packet_id: Option<u32>,
}

impl Decoded {
    fn new(format: &'static str) -> Self {
        Self {
            format,
            values: BTreeMap::new(),
            packet_id: None,
        }
    }

    fn put(&mut self, name: &str, value: impl Into<Value>) {
        self.values.insert(name.to_owned(), value.into());
    }

    /// Inserts a value, numbering repeats (`temperature`, `temperature_2`, …).
    fn put_numbered(&mut self, name: &str, value: Value) {
        let mut key = name.to_owned();
        let mut n = 1;
        while self.values.contains_key(&key) {
            n += 1;
            key = format!("{name}_{n}");
        }
        self.values.insert(key, value);
    }
}

/// Why an advertisement did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the format needs.
    #[error("The payload is truncated: {need} bytes needed, {got} present.")]
    Truncated {
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        got: usize,
    },
    /// Not this format (wrong marker, version or type byte).
    #[error("Not a {0} payload.")]
    NotThisFormat(&'static str),
    /// Encrypted and no key is configured (or the key does not fit).
    #[error("The payload is encrypted; configure the device's bind key to decode it.")]
    Encrypted,
    /// Decryption failed (wrong key or tampered payload).
    #[error("The payload could not be decrypted (wrong bind key?).")]
    Decrypt,
    /// The payload has this format's marker but a field is outside the specification.
    #[error("Invalid {0} payload: {1}.")]
    Invalid(&'static str, &'static str),
    /// An object id we cannot size: the rest of the payload is unreadable.
    #[error("Unknown BTHome object id 0x{0:02x}.")]
    UnknownObject(u8),
}

/// `data[at..at + n]`, or a truncation error.
fn take(data: &[u8], at: usize, n: usize) -> Result<&[u8], DecodeError> {
    data.get(at..at + n).ok_or(DecodeError::Truncated {
        need: at + n,
        got: data.len(),
    })
}

/// Rounds to `digits` decimals (values as their resolution allows, not 21.540000000000003).
fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

#[cfg(test)]
mod fuzz;
