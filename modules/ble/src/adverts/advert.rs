//! What one advertisement carries, borrowed from wherever it was parsed (btleplug's
//! properties today, BlueZ's signals tomorrow), and the contract every decoder follows.

use std::collections::HashMap;

use uuid::Uuid;

use super::{DecodeError, Decoded};

/// Everything one advertisement (with its scan response) carries.
#[derive(Debug, Clone, Copy)]
pub struct Advert<'a> {
    /// The advertiser's address, most significant byte first (as written `A4:C1:38:…`).
    pub address: [u8; 6],
    /// Complete or shortened local name, when advertised.
    pub local_name: Option<&'a str>,
    /// Manufacturer-specific data by company id (the id's two bytes are not in the value).
    pub manufacturer_data: &'a HashMap<u16, Vec<u8>>,
    /// Service data by UUID (16-bit UUIDs expanded on the Bluetooth base UUID).
    pub service_data: &'a HashMap<Uuid, Vec<u8>>,
    /// Advertised service UUIDs.
    pub services: &'a [Uuid],
}

impl<'a> Advert<'a> {
    /// Service data of a 16-bit service UUID.
    pub fn service16(&self, short: u16) -> Option<&'a [u8]> {
        self.service_data.get(&uuid16(short)).map(Vec::as_slice)
    }

    /// Manufacturer data of a company id.
    pub fn manufacturer(&self, company: u16) -> Option<&'a [u8]> {
        self.manufacturer_data.get(&company).map(Vec::as_slice)
    }
}

/// A 16-bit UUID on the Bluetooth base UUID.
pub fn uuid16(short: u16) -> Uuid {
    Uuid::from_u128(0x0000_0000_0000_1000_8000_0080_5F9B_34FB | (u128::from(short) << 96))
}

/// Every bundled advertisement decoder has this shape: the advertisement and the
/// device's key (bind key, encryption key) if one is configured.
pub type DecodeFn = fn(&Advert<'_>, Option<&[u8]>) -> Result<Decoded, DecodeError>;
