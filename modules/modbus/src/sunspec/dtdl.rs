//! DTDL for SunSpec devices: a device map describing the models a device actually holds
//! (built from one discovery), so `models.rs` generates its interface like any other.
//! Its name lists the model ids (`sunspec-1-103-160`), and so does its DTDL id.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::decode::decode_model;
use super::defs::{PointType, model_def};
use super::discover::{Chain, Reader, SunSpecError};
use crate::bus::spawn_bus;
use crate::config::{Device, ModbusConfig};
use crate::map::{DataType, DeviceMap, MapSpec, Order, Point, PointSpec, Table};

fn data_type(kind: PointType) -> DataType {
    match kind {
        PointType::Int16 | PointType::Sunssf => DataType::I16,
        PointType::Uint16
        | PointType::Count
        | PointType::Acc16
        | PointType::Enum16
        | PointType::Bitfield16
        | PointType::Pad => DataType::U16,
        // DTDL's integer is 32-bit signed: unsigned 32-bit values need a long.
        PointType::Int32 => DataType::I32,
        PointType::Uint32 | PointType::Acc32 | PointType::Enum32 | PointType::Bitfield32 => {
            DataType::I64
        }
        PointType::Int64 => DataType::I64,
        PointType::Uint64 | PointType::Acc64 => DataType::U64,
        PointType::Float32 => DataType::F32,
        PointType::Float64 => DataType::F64,
        PointType::String | PointType::Ipaddr | PointType::Ipv6addr | PointType::Eui48 => {
            DataType::String
        }
    }
}

fn unit(sunspec: &str) -> String {
    match sunspec {
        "C" => "°C".into(),
        other => other.into(),
    }
}

/// The map of what a device holds: every point of every model found (`blocks[i]` are the
/// registers of `chain.models[i]`, needed for repeating-group counts).
pub fn map_of(chain: &Chain, blocks: &[Vec<u16>]) -> DeviceMap {
    let ids: Vec<String> = chain.ids().iter().map(u16::to_string).collect();
    let name = format!("{}-{}", super::MAP_NAME, ids.join("-"));
    let mut points = Vec::new();
    let mut seen = std::collections::BTreeMap::<u16, usize>::new();
    for (m, regs) in chain.models.iter().zip(blocks) {
        let instance = seen.entry(m.id).or_default();
        *instance += 1;
        let Ok(def) = model_def(m.id) else { continue };
        for f in decode_model(&def, *instance, regs) {
            let dt = data_type(f.def.kind);
            let spec = PointSpec {
                table: Table::Holding,
                address: 0,
                data_type: dt,
                bit: None,
                length: (dt == DataType::String).then_some(f.def.width()),
                byte_order: None,
                word_order: None,
                write_multiple: None,
                scale: None,
                offset: None,
                scale_point: None,
                unit: f.def.units.as_deref().map(unit),
                description: f.def.label.clone().or_else(|| f.def.desc.clone()),
                writable: false,
                min: None,
                max: None,
                publish: true,
                static_fact: m.id == 1 && *instance == 1,
            };
            points.push(Point {
                name: f.name,
                width: f.def.width(),
                byte_order: Order::Big,
                word_order: Order::Big,
                write_multiple: false,
                // Only its presence matters here: the value is scaled, hence a double.
                scale_index: f.def.sf.as_ref().map(|_| 0),
                spec,
            });
        }
    }
    DeviceMap {
        name: name.clone(),
        spec: MapSpec {
            schema: None,
            name,
            manufacturer: Some("SunSpec".into()),
            model: Some(format!("models {}", ids.join(", "))),
            source: Some("SunSpec Alliance information models".into()),
            description: None,
            byte_order: Order::Big,
            word_order: Order::Big,
            write_multiple: false,
            points: Default::default(),
        },
        points,
    }
}

/// Discovers one device and reads its models once (for `models`, `scan`, `read`).
pub async fn discover_device(device: &Device) -> Result<(Chain, Vec<Vec<u16>>), SunSpecError> {
    let token = CancellationToken::new();
    let bus = spawn_bus(device.connection.clone(), None, token.clone());
    let mut reader = Reader::new(
        &bus,
        device.unit_id,
        device.timeout,
        device.limits.max_registers,
    );
    let result = async {
        let chain = reader.discover().await?;
        let mut blocks = Vec::new();
        for m in &chain.models {
            blocks.push(reader.read_model(m, false).await?);
        }
        Ok((chain, blocks))
    }
    .await;
    token.cancel();
    // Wait for the port to be released (serial ports are opened exclusively).
    let _ignored = tokio::time::timeout(Duration::from_secs(2), bus.closed()).await;
    result
}

/// DTDL models for a configuration, SunSpec devices described by the models they hold
/// (discovered now). A SunSpec device that cannot be reached keeps the generic
/// `sunspec` interface (health and commands only); the reason is returned per device.
pub async fn models(cfg: &ModbusConfig) -> (serde_json::Value, Vec<(String, String)>) {
    let mut cfg = cfg.clone();
    let mut problems = Vec::new();
    for d in cfg.devices.values_mut() {
        if !super::is_sunspec(&d.map) {
            continue;
        }
        let limit = d.timeout * 20 + Duration::from_secs(2);
        match tokio::time::timeout(limit, discover_device(d)).await {
            Ok(Ok((chain, blocks))) => d.map = Arc::new(map_of(&chain, &blocks)),
            Ok(Err(e)) => problems.push((d.id.clone(), e.to_string())),
            Err(_) => problems.push((d.id.clone(), "discovery timed out".into())),
        }
    }
    (crate::models::models(&cfg), problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sunspec::discover::ChainEntry;

    #[test]
    fn map_of_a_chain_is_a_valid_dtdl_interface() {
        let chain = Chain {
            base: 40000,
            models: vec![ChainEntry {
                id: 160,
                address: 40002,
                len: 48,
            }],
        };
        let mut regs = vec![160, 48];
        regs.resize(50, 1);
        let map = map_of(&chain, &[regs]);
        assert_eq!(map.name, "sunspec-160");
        let i = crate::models::device_interface(&map);
        assert_eq!(i["@id"], "dtmi:edgebridge:modbus:sunspec_160;1");
        let c = i["contents"].as_array().unwrap();
        let dcw = c.iter().find(|e| e["name"] == "m160_module_2_DCW").unwrap();
        assert_eq!(dcw["schema"], "double");
        assert_eq!(dcw["unit"], "watt");
        assert!(!c.iter().any(|e| e["name"] == "m160_module_3_DCW"));
    }
}
