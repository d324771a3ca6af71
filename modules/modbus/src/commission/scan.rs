//! `bridge-modbus scan`: which unit ids answer, their FC43/14 identification, SunSpec
//! models, and which bundled maps plausibly fit.
//!
//! A unit is alive when it answers a one-register holding read at address 0 at all, an
//! exception included (except a gateway's exceptions 10 and 11, which say the unit did
//! not answer). A bundled map plausibly fits when its first probe points (up to
//! six readable, published points in address order) all read without error and every
//! value is plausible: within the point's `min`/`max` when the map gives them, within a
//! physical range for common units (V 0-1000, A ±10000, Hz 0 or 40-70, °C -60-150,
//! % 0-100), finite and under 10^12 in magnitude otherwise, and text printable.

use std::io::Write;
use std::time::Duration;

use serde_json::{Value, json};

use super::{CommissionError, Session, TargetArgs, table, timeout};
use crate::bus::{BusError, Op, OpResult};
use crate::codec::Reading;
use crate::map::{DeviceMap, Point, Table, bundled, bundled_names};
use crate::sunspec::discover::{Reader, SunSpecError};

/// Arguments of `scan`.
#[derive(Debug, Clone, clap::Args)]
pub struct ScanArgs {
    /// How to reach the bus.
    #[command(flatten)]
    pub target: TargetArgs,
    /// Unit ids to try: a range and/or list, e.g. 1-247 or 1,2,10-20.
    #[arg(long, default_value = "1-247")]
    pub units: String,
    /// Timeout of each request, ms (short: silent units cost one timeout each).
    #[arg(long, default_value_t = 200)]
    pub timeout_ms: u64,
}

/// Parses `1-5,7` into unit ids (1-247).
pub fn parse_units(text: &str) -> Result<Vec<u8>, CommissionError> {
    let bad = || {
        CommissionError::Usage(format!(
            "--units {text}: expected ids 1-247 such as 1-247 or 1,2,10-20."
        ))
    };
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (u16, u16) = (
            a.trim().parse().map_err(|_| bad())?,
            b.trim().parse().map_err(|_| bad())?,
        );
        if a == 0 || b > 247 || a > b {
            return Err(bad());
        }
        out.extend((a..=b).map(|u| u as u8));
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

fn within(v: f64, lo: f64, hi: f64) -> bool {
    (lo..=hi).contains(&v)
}

/// Whether a decoded value is plausible for its point (see the module docs).
pub fn plausible(p: &Point, value: &Reading) -> bool {
    match value {
        Reading::Bool(_) => true,
        Reading::Text(t) => t.chars().all(|c| !c.is_control()),
        _ => {
            let Some(v) = value.as_f64() else {
                return false;
            };
            if !v.is_finite() {
                return false;
            }
            if p.spec.min.is_some_and(|m| v < m) || p.spec.max.is_some_and(|m| v > m) {
                return false;
            }
            match p.spec.unit.as_deref().unwrap_or("") {
                "V" => within(v, 0.0, 1000.0),
                "A" => within(v, -10_000.0, 10_000.0),
                "Hz" => v == 0.0 || within(v, 40.0, 70.0),
                "°C" => within(v, -60.0, 150.0),
                "%" | "%RH" => within(v, 0.0, 100.0),
                _ => v.abs() < 1e12,
            }
        }
    }
}

/// The probe points of a map: up to six readable, published points in address order.
pub fn probe_points(map: &DeviceMap) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..map.points.len())
        .filter(|&i| {
            let p = &map.points[i].spec;
            (p.publish || p.static_fact) && !p.writable && p.scale_point.is_none()
        })
        .collect();
    idx.sort_by_key(|&i| (map.points[i].spec.table, map.points[i].spec.address));
    idx.truncate(6);
    idx
}

/// FC43/14 object names by id.
const NAMES: [&str; 7] = [
    "VendorName",
    "ProductCode",
    "MajorMinorRevision",
    "VendorUrl",
    "ProductName",
    "ModelName",
    "UserApplicationName",
];

/// Reads the device identification objects (regular, else basic); `None` if refused.
async fn identification(s: &Session, unit: u8, t: Duration) -> Option<Value> {
    for code in [2u8, 1] {
        let mut objects = serde_json::Map::new();
        let mut next = 0u8;
        for _ in 0..8 {
            match s.bus.call(unit, Op::ReadDeviceId(code, next), t).await {
                Ok(OpResult::DeviceId(d)) => {
                    for (id, text) in d.objects {
                        let name = NAMES
                            .get(usize::from(id))
                            .map_or_else(|| format!("object{id}"), |n| (*n).to_owned());
                        objects.insert(name, json!(text));
                    }
                    if !d.more_follows || d.next_object <= next {
                        break;
                    }
                    next = d.next_object;
                }
                Err(BusError::Exception(_)) => break,
                _ => return None,
            }
        }
        if !objects.is_empty() {
            return Some(Value::Object(objects));
        }
    }
    None
}

async fn fitting_maps(s: &Session, args: &ScanArgs, unit: u8) -> Vec<String> {
    let mut fits = Vec::new();
    for name in bundled_names() {
        let Some(Ok(map)) = bundled(name) else {
            continue;
        };
        let probe = probe_points(&map);
        if probe.is_empty() {
            continue;
        }
        let names: Vec<String> = probe.iter().map(|&i| map.points[i].name.clone()).collect();
        let Ok(device) = super::device(
            &args.target,
            unit,
            args.timeout_ms,
            json!(name),
            Some(&names),
        ) else {
            continue;
        };
        let entry = s.entry(device);
        let wanted = entry.device.wanted.clone();
        let out = entry.read(&wanted).await;
        let ok = out.errors.is_empty()
            && probe.iter().all(|i| {
                out.values
                    .get(i)
                    .is_some_and(|v| plausible(&map.points[*i], v))
            });
        if ok {
            fits.push(name.to_owned());
        }
    }
    fits
}

/// Runs `scan`.
pub async fn run(args: &ScanArgs, out: &mut dyn Write) -> Result<(), CommissionError> {
    let units = parse_units(&args.units)?;
    let t = timeout(args.timeout_ms)?;
    // Validates the connection settings the way the module does.
    let probe = json!({"name": "probe", "points": {"p": {"table": "holding", "address": 0, "type": "u16"}}});
    let device = super::device(&args.target, 1, args.timeout_ms, probe, None)?;
    let s = Session::open(device.connection.clone());
    let found = probe_units(&s, args, units, t).await;
    s.close().await;
    let found = found?;
    if args.target.json {
        writeln!(out, "{}", json!({"units": found}))?;
        return Ok(());
    }
    if found.is_empty() {
        writeln!(out, "No unit answered.")?;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = found
        .iter()
        .map(|u| {
            let ident = u["identification"].as_object().map_or("-".to_owned(), |o| {
                NAMES
                    .iter()
                    .filter(|n| **n != "VendorUrl")
                    .filter_map(|n| o.get(*n).and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join(" ")
            });
            let sunspec = match u["sunspec"]["models"].as_array() {
                Some(m) => format!(
                    "{} (base {})",
                    m.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(","),
                    u["sunspec"]["base"]
                ),
                None => "-".into(),
            };
            let maps = u["maps"]
                .as_array()
                .map(|m| {
                    m.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "-".into());
            vec![u["unit"].to_string(), ident, sunspec, maps]
        })
        .collect();
    table(
        out,
        &["unit", "identification", "sunspec models", "plausible maps"],
        &rows,
    )?;
    Ok(())
}

async fn probe_units(
    s: &Session,
    args: &ScanArgs,
    units: Vec<u8>,
    t: Duration,
) -> Result<Vec<Value>, CommissionError> {
    let mut found = Vec::new();
    for unit in units {
        match s.bus.call(unit, Op::Read(Table::Holding, 0, 1), t).await {
            // A gateway saying "path unavailable" or "target failed to respond" speaks
            // for itself, not for the unit.
            Err(BusError::Timeout(_) | BusError::Exception(10 | 11)) => continue,
            Ok(_) | Err(BusError::Exception(_)) => {}
            Err(e @ (BusError::Connect(_) | BusError::Closed)) => {
                return Err(CommissionError::Bus { unit, error: e });
            }
            Err(BusError::Io(e)) => {
                tracing::debug!(unit, error = %e, "No usable answer.");
                continue;
            }
        }
        let ident = identification(s, unit, t).await;
        let mut reader = Reader::new(&s.bus, unit, t, 125);
        let sunspec = match reader.discover().await {
            Ok(chain) => Some(json!({"base": chain.base, "models": chain.ids()})),
            Err(SunSpecError::Bus(BusError::Connect(e))) => {
                return Err(CommissionError::Bus {
                    unit,
                    error: BusError::Connect(e),
                });
            }
            Err(_) => None,
        };
        let maps = fitting_maps(s, args, unit).await;
        found
            .push(json!({"unit": unit, "identification": ident, "sunspec": sunspec, "maps": maps}));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_lists() {
        assert_eq!(parse_units("1-3,7,2").unwrap(), vec![1, 2, 3, 7]);
        assert_eq!(parse_units("1-247").unwrap().len(), 247);
        for bad in ["0-3", "1-248", "5-2", "x", "", "1,,2"] {
            assert!(parse_units(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn plausibility_by_unit_and_range() {
        let map = bundled("eastron-sdm120").unwrap().unwrap();
        let probe = probe_points(&map);
        assert!(!probe.is_empty() && probe.len() <= 6);
        let volt = map
            .points
            .iter()
            .find(|p| p.spec.unit.as_deref() == Some("V"))
            .unwrap();
        assert!(plausible(volt, &Reading::Float(230.1)));
        assert!(!plausible(volt, &Reading::Float(-3.0e7)));
        assert!(!plausible(volt, &Reading::Float(f64::NAN)));
        let hz = map
            .points
            .iter()
            .find(|p| p.spec.unit.as_deref() == Some("Hz"))
            .unwrap();
        assert!(plausible(hz, &Reading::Float(50.0)) && !plausible(hz, &Reading::Float(3.0)));
        assert!(!plausible(volt, &Reading::Text("a\u{1}".into())));
    }
}
