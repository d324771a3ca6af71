//! `bridge-modbus`: the Modbus module binary. Its commands are the ones every module
//! shares (`bridge_core::runtime::commands`); `bridge_modbus::deploy` says what they need.

use std::process::ExitCode;

fn main() -> anyhow::Result<ExitCode> {
    Ok(bridge_core::runtime::commands::main(
        bridge_modbus::Modbus::new(),
    )?)
}
