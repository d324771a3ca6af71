//! `bridge-modbus write`: one-shot write of a map point (with the `write` method's checks:
//! writable, type, min/max) or of one raw holding register or coil, optionally read back.

use std::io::Write;

use serde_json::{Value, json};

use super::{CommissionError, TargetArgs, unit_id, with_session};
use crate::bus::{Op, OpResult};
use crate::device::WriteError;
use crate::map::Table;

/// Arguments of `write`.
#[derive(Debug, Clone, clap::Args)]
pub struct WriteArgs {
    /// How to reach the bus.
    #[command(flatten)]
    pub target: TargetArgs,
    /// Unit id (1-247).
    #[arg(long)]
    pub unit: u16,
    /// A bundled map (see `bridge-modbus maps`).
    #[arg(long, conflicts_with = "table", requires = "point")]
    pub map: Option<String>,
    /// With --map: the point to write.
    #[arg(long)]
    pub point: Option<String>,
    /// Raw write: the table (holding: FC6, coil: FC5).
    #[arg(long, value_parser = ["holding", "coil"])]
    pub table: Option<String>,
    /// Raw write: 0-based address.
    #[arg(long)]
    pub address: Option<u16>,
    /// The value: a number, true/false, or text (JSON syntax also accepted).
    #[arg(long, allow_hyphen_values = true)]
    pub value: String,
    /// Read the value back after writing.
    #[arg(long)]
    pub verify: bool,
    /// Timeout of each request, ms.
    #[arg(long, default_value_t = 1000)]
    pub timeout_ms: u64,
}

/// The command-line value as JSON: a number or boolean if it parses as one, else text.
pub fn parse_value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| json!(text))
}

/// The raw operation for `--table`/`--address`/`--value`.
pub fn raw_op(table: &str, address: u16, value: &Value) -> Result<Op, CommissionError> {
    match table {
        "coil" => match value {
            Value::Bool(b) => Ok(Op::WriteCoil(address, *b)),
            Value::Number(n) if n.as_u64() == Some(0) || n.as_u64() == Some(1) => {
                Ok(Op::WriteCoil(address, n.as_u64() == Some(1)))
            }
            _ => Err(CommissionError::Usage(format!(
                "--value {value}: a coil takes true/false or 1/0."
            ))),
        },
        _ => match value.as_i64() {
            Some(v @ 0..=65535) => Ok(Op::WriteRegister(address, v as u16)),
            Some(v @ -32768..=-1) => Ok(Op::WriteRegister(address, v as i16 as u16)),
            _ => Err(CommissionError::Usage(format!(
                "--value {value}: a register takes an integer -32768..65535."
            ))),
        },
    }
}

/// Runs `write`.
pub async fn run(args: &WriteArgs, out: &mut dyn Write) -> Result<(), CommissionError> {
    let unit = unit_id(args.unit)?;
    let value = parse_value(&args.value);
    match (&args.map, &args.point, &args.table, args.address) {
        (Some(map), Some(point), _, _) => {
            let device = super::device(&args.target, unit, args.timeout_ms, json!(map), None)?;
            let index = device.map.index_of(point).ok_or_else(|| {
                CommissionError::Usage(format!("The map '{map}' has no point '{point}'."))
            })?;
            with_session(device.connection.clone(), async |s| {
                let entry = s.entry(device);
                match entry.write(index, &value).await {
                    Ok(()) => {}
                    Err(WriteError::Bus(error)) => {
                        return Err(CommissionError::Bus { unit, error });
                    }
                    Err(e) => return Err(CommissionError::Usage(e.to_string())),
                }
                let read_back = if args.verify {
                    let r = entry.read(&[index]).await;
                    match r.values.get(&index) {
                        Some(v) => Some(v.to_json()),
                        None => {
                            return Err(CommissionError::Failed(format!(
                                "Unit {unit}: written, but the read-back failed: {}",
                                r.errors
                                    .get(&index)
                                    .map(ToString::to_string)
                                    .unwrap_or_default()
                            )));
                        }
                    }
                } else {
                    None
                };
                report(out, args, unit, point, &value, read_back)
            })
            .await
        }
        (None, _, Some(table), Some(address)) => {
            let op = raw_op(table, address, &value)?;
            let probe = json!({"name": "raw", "points": {"p": {"table": table, "address": address, "type": if table == "coil" { "bool" } else { "u16" }}}});
            let device = super::device(&args.target, unit, args.timeout_ms, probe, None)?;
            let t = device.timeout;
            with_session(device.connection.clone(), async |s| {
                s.bus
                    .call(unit, op, t)
                    .await
                    .map_err(|error| CommissionError::Bus { unit, error })?;
                let read_back = if args.verify {
                    let t_op = if table == "coil" {
                        Table::Coil
                    } else {
                        Table::Holding
                    };
                    match s.bus.call(unit, Op::Read(t_op, address, 1), t).await {
                        Ok(OpResult::Registers(r)) => r.first().map(|v| json!(v)),
                        Ok(OpResult::Bits(b)) => b.first().map(|v| json!(v)),
                        Ok(_) => None,
                        Err(error) => return Err(CommissionError::Bus { unit, error }),
                    }
                } else {
                    None
                };
                report(
                    out,
                    args,
                    unit,
                    &format!("{table} {address}"),
                    &value,
                    read_back,
                )
            })
            .await
        }
        (None, _, Some(_), None) => Err(CommissionError::Usage(
            "A raw write needs --address.".into(),
        )),
        _ => Err(CommissionError::Usage(
            "Give --map NAME --point P, or a raw write with --table and --address.".into(),
        )),
    }
}

fn report(
    out: &mut dyn Write,
    args: &WriteArgs,
    unit: u8,
    what: &str,
    value: &Value,
    read_back: Option<Value>,
) -> Result<(), CommissionError> {
    if args.target.json {
        let mut body = json!({"unit": unit, "point": what, "value": value});
        if let Some(r) = &read_back {
            body["readBack"] = r.clone();
        }
        writeln!(out, "{body}")?;
    } else {
        write!(out, "Wrote {value} to {what} (unit {unit}).")?;
        match &read_back {
            Some(r) => writeln!(out, " Read back: {r}.")?,
            None => writeln!(out)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_raw_ops() {
        assert_eq!(parse_value("230.5"), json!(230.5));
        assert_eq!(parse_value("true"), json!(true));
        assert_eq!(parse_value("AB-9"), json!("AB-9"));
        assert_eq!(
            raw_op("holding", 3, &json!(65535)).unwrap(),
            Op::WriteRegister(3, 65535)
        );
        assert_eq!(
            raw_op("holding", 3, &json!(-2)).unwrap(),
            Op::WriteRegister(3, 0xFFFE)
        );
        assert!(raw_op("holding", 3, &json!(70000)).is_err());
        assert!(raw_op("holding", 3, &json!("x")).is_err());
        assert_eq!(
            raw_op("coil", 1, &json!(true)).unwrap(),
            Op::WriteCoil(1, true)
        );
        assert!(raw_op("coil", 1, &json!(2)).is_err());
    }
}
