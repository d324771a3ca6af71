//! `bridge-modbus read`: one-shot read of a device through a map (decoded values with
//! units), of a SunSpec device (`--map sunspec`), or of raw registers decoded as a type.

use std::io::Write;

use serde_json::{Map, Value, json};

use super::{CommissionError, TargetArgs, table, unit_id, with_session};
use crate::codec::Reading;
use crate::sunspec::discover::Reader;

/// Arguments of `read`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReadArgs {
    /// How to reach the bus.
    #[command(flatten)]
    pub target: TargetArgs,
    /// Unit id (1-247).
    #[arg(long)]
    pub unit: u16,
    /// A bundled map (see `bridge-modbus maps`), or `sunspec` for SunSpec discovery.
    #[arg(long, conflicts_with = "table")]
    pub map: Option<String>,
    /// With --map: only these points (comma separated).
    #[arg(long, value_delimiter = ',')]
    pub points: Vec<String>,
    /// Raw read: the table (holding, input, coil, discreteInput).
    #[arg(long, value_parser = ["holding", "input", "coil", "discreteInput"])]
    pub table: Option<String>,
    /// Raw read: first 0-based address.
    #[arg(long)]
    pub address: Option<u16>,
    /// Raw read: number of values (of --type).
    #[arg(long, default_value_t = 1)]
    pub count: u16,
    /// Raw read: value type (u16, i16, u32, i32, u64, i64, f32, f64, string).
    #[arg(long = "type", default_value = "u16")]
    pub kind: String,
    /// Raw read: word order of multi-register values.
    #[arg(long, default_value = "big", value_parser = ["big", "little"])]
    pub word_order: String,
    /// Raw read: byte order within registers.
    #[arg(long, default_value = "big", value_parser = ["big", "little"])]
    pub byte_order: String,
    /// Timeout of each request, ms.
    #[arg(long, default_value_t = 1000)]
    pub timeout_ms: u64,
}

/// The inline map of a raw read: one point per value, named by its address.
pub fn raw_map(args: &ReadArgs) -> Result<Value, CommissionError> {
    let (Some(table), Some(address)) = (&args.table, args.address) else {
        return Err(CommissionError::Usage(
            "Give --map NAME, or a raw read with --table and --address.".into(),
        ));
    };
    let bits = matches!(table.as_str(), "coil" | "discreteInput");
    let kind = if bits { "bool" } else { args.kind.as_str() };
    let width: u32 = match kind {
        "bool" | "u16" | "i16" => 1,
        "u32" | "i32" | "f32" => 2,
        "u64" | "i64" | "f64" => 4,
        "string" => u32::from(args.count),
        other => {
            return Err(CommissionError::Usage(format!(
                "--type {other}: expected u16, i16, u32, i32, u64, i64, f32, f64 or string."
            )));
        }
    };
    if args.count == 0 || args.count > 2000 {
        return Err(CommissionError::Usage("--count must be 1-2000.".into()));
    }
    let values = if kind == "string" {
        1
    } else {
        u32::from(args.count)
    };
    let mut points = Map::new();
    for i in 0..values {
        let at = u32::from(address) + i * width;
        let mut p = json!({"table": table, "address": at, "type": kind});
        if kind == "string" {
            p["length"] = json!(args.count);
        }
        points.insert(format!("a{at}"), p);
    }
    Ok(
        json!({"name": "raw", "byteOrder": args.byte_order, "wordOrder": args.word_order, "points": points}),
    )
}

/// Runs `read`.
pub async fn run(args: &ReadArgs, out: &mut dyn Write) -> Result<(), CommissionError> {
    let unit = unit_id(args.unit)?;
    let t = super::timeout(args.timeout_ms)?;
    if args.map.as_deref() == Some(crate::sunspec::MAP_NAME) {
        return sunspec(args, unit, t, out).await;
    }
    let map = match &args.map {
        Some(name) => json!(name),
        None => raw_map(args)?,
    };
    let points = (!args.points.is_empty()).then_some(args.points.as_slice());
    let device = super::device(&args.target, unit, args.timeout_ms, map, points)?;
    with_session(device.connection.clone(), async |s| {
        let entry = s.entry(device);
        let wanted = entry.device.wanted.clone();
        let result = entry.read(&wanted).await;
        if let Some(e) = &result.unreachable
            && result.values.is_empty()
        {
            return Err(CommissionError::Bus {
                unit,
                error: e.clone(),
            });
        }
        let map = &entry.device.map;
        let mut rows = Vec::new();
        let mut values = Map::new();
        let mut errors = Map::new();
        for &i in &wanted {
            let p = &map.points[i];
            if !p.spec.publish && !args.points.contains(&p.name) {
                continue;
            }
            let unit_text = p.spec.unit.clone().unwrap_or_default();
            match (result.values.get(&i), result.errors.get(&i)) {
                (Some(v), _) => {
                    values.insert(p.name.clone(), v.to_json());
                    rows.push(vec![p.name.clone(), display(v), unit_text]);
                }
                (None, e) => {
                    let e = e.map_or("no value".to_owned(), ToString::to_string);
                    errors.insert(p.name.clone(), json!(e));
                    rows.push(vec![p.name.clone(), format!("error: {e}"), unit_text]);
                }
            }
        }
        if args.target.json {
            writeln!(out, "{}", json!({"values": values, "errors": errors}))?;
        } else {
            table(out, &["point", "value", "unit"], &rows)?;
        }
        if values.is_empty() {
            return Err(CommissionError::Failed(format!(
                "Unit {unit}: no point could be read."
            )));
        }
        Ok(())
    })
    .await
}

fn display(v: &Reading) -> String {
    match v {
        Reading::Text(t) => format!("{t:?}"),
        other => other.to_json().to_string(),
    }
}

async fn sunspec(
    args: &ReadArgs,
    unit: u8,
    t: std::time::Duration,
    out: &mut dyn Write,
) -> Result<(), CommissionError> {
    let device = super::device(&args.target, unit, args.timeout_ms, json!("sunspec"), None)?;
    with_session(device.connection.clone(), async |s| {
        let mut reader = Reader::new(&s.bus, unit, t, 125);
        let mut chain = None;
        let decoded = crate::sunspec::poll::read_all(&mut reader, &mut chain)
            .await
            .map_err(|e| CommissionError::Failed(format!("Unit {unit}: {e}")))?;
        let mut all: Vec<(String, Value)> = decoded
            .facts
            .into_iter()
            .chain(decoded.values.into_iter().map(|(k, v)| (k, v.to_json())))
            .filter(|(k, _)| args.points.is_empty() || args.points.contains(k))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        if args.target.json {
            let models = chain.map(|c| c.ids()).unwrap_or_default();
            writeln!(
                out,
                "{}",
                json!({"models": models, "values": Map::from_iter(all)})
            )?;
        } else {
            let rows: Vec<Vec<String>> = all
                .into_iter()
                .map(|(k, v)| vec![k, v.to_string()])
                .collect();
            table(out, &["point", "value"], &rows)?;
        }
        Ok(())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        read: ReadArgs,
    }

    #[test]
    fn raw_reads_become_inline_maps() {
        let a = Cli::parse_from([
            "x",
            "--tcp",
            "h",
            "--unit",
            "1",
            "--table",
            "holding",
            "--address",
            "10",
            "--count",
            "3",
            "--type",
            "f32",
            "--word-order",
            "little",
        ])
        .read;
        let m = raw_map(&a).unwrap();
        assert_eq!(
            m["points"]["a14"],
            json!({"table": "holding", "address": 14, "type": "f32"})
        );
        assert_eq!(m["wordOrder"], "little");
        assert!(crate::map::parse_map(&m, "raw").is_ok());
        let a = Cli::parse_from(["x", "--tcp", "h", "--unit", "1", "--table", "holding"]).read;
        assert!(matches!(raw_map(&a), Err(CommissionError::Usage(m)) if m.contains("--address")));
        let a = Cli::parse_from([
            "x",
            "--tcp",
            "h",
            "--unit",
            "1",
            "--table",
            "coil",
            "--address",
            "0",
            "--count",
            "4",
        ])
        .read;
        assert_eq!(raw_map(&a).unwrap()["points"]["a3"]["type"], "bool");
    }
}
