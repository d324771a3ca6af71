//! `bridge-ble`: the BLE module binary. Its commands are the ones every module shares
//! (`bridge_core::runtime::commands`); `bridge_ble::deploy` says what they need.

use std::process::ExitCode;

fn main() -> anyhow::Result<ExitCode> {
    Ok(bridge_core::runtime::commands::main(
        bridge_ble::Ble::default(),
    )?)
}
