//! `bridge-ble`: scans BLE advertisements through btleplug (BlueZ over D-Bus) and forwards
//! decoded telemetry per downstream device through `bridge-core`.
//!
//! - [`adverts`]: pure decoders for BTHome v2 (with AES-CCM), RuuviTag RAWv2, Xiaomi
//!   pvvx/ATC, iBeacon, Eddystone.
//! - [`config`]: devices by address, scan, discovery.
//! - [`scanner`]: the btleplug loop.
//!
//! Not built yet: GATT (connect, read, notify, write) and its maps.

pub mod adverts;
pub mod config;
pub mod gatt;
pub mod scanner;

use std::sync::Arc;

use bridge_core::config::ConfigErrors;
use bridge_core::runtime::{ModuleContext, Protocol};
use serde_json::{Value, json};

/// The BLE protocol module.
#[derive(Debug, Default)]
pub struct Ble;

impl Protocol for Ble {
    type Config = config::BleConfig;

    fn name(&self) -> &'static str {
        "bridge-ble"
    }

    fn parse_config(&self, doc: &Value) -> Result<Self::Config, ConfigErrors> {
        config::parse(doc)
    }

    fn demo_config(&self) -> Value {
        json!({"discovery": {"enabled": true}})
    }

    async fn run(self: Arc<Self>, cx: ModuleContext<Self::Config>) {
        scanner::run(cx).await;
    }
}
