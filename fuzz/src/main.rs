//! `cargo run --release -p bridge-fuzz -- [EXECUTIONS] [TARGET...]`: fuzzes every target
//! (or the named ones) for EXECUTIONS inputs each (default 10 million) and prints one
//! line per target: executions, time, rate, outcomes seen, pool, findings.

#![allow(clippy::print_stdout)] // the report is the output

use std::process::ExitCode;

use bridge_fuzz::targets::TARGETS;
use bridge_fuzz::{fuzz, fuzz_dir, quiet_panics};

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("--write-spool-seed") {
        return write_spool_seed();
    }
    let mut args = std::env::args().skip(1);
    let executions: u64 = args
        .next()
        .and_then(|a| a.replace('_', "").parse().ok())
        .unwrap_or(10_000_000);
    let names: Vec<String> = args.collect();
    let seed = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_F00D);
    quiet_panics();
    let dir = fuzz_dir();
    let mut total_findings = 0;
    println!("| target | executions | time | per second | outcomes | pool | findings |");
    println!("|---|---|---|---|---|---|---|");
    for target in TARGETS
        .iter()
        .filter(|t| names.is_empty() || names.iter().any(|n| n == t.name))
    {
        let r = fuzz(
            target,
            executions,
            seed,
            &dir.join("corpus"),
            &dir.join("crashes"),
        );
        total_findings += r.findings.len();
        println!(
            "| {} | {} | {:.1} s | {:.0} | {} | {} | {} |",
            r.target,
            r.executions,
            r.seconds,
            r.executions as f64 / r.seconds.max(1e-9),
            r.outcomes,
            r.pool,
            r.findings.len()
        );
        for (message, path) in &r.findings {
            println!("  finding: {message} -> {}", path.display());
        }
    }
    if total_findings > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Writes `corpus/spool-segment/three-messages.log`: a segment written by the spool itself.
fn write_spool_seed() -> ExitCode {
    use bridge_core::message::Message;
    use bridge_core::spool::{Spool, SpoolOptions};
    let Ok(tmp) = tempfile::tempdir() else {
        return ExitCode::FAILURE;
    };
    let options = SpoolOptions {
        dir: Some(tmp.path().to_owned()),
        ..SpoolOptions::default()
    };
    let Ok(mut spool) = Spool::open(&options) else {
        return ExitCode::FAILURE;
    };
    for n in 0..3 {
        let m = Message::json("telemetry", &serde_json::json!({"n": n})).for_device("meter-1");
        if spool.push(m).is_err() {
            return ExitCode::FAILURE;
        }
    }
    if spool.sync(true).is_err() {
        return ExitCode::FAILURE;
    }
    let files = bridge_fuzz::read_dir_files(tmp.path());
    let Some((_, bytes)) = files
        .iter()
        .find(|(p, _)| p.extension().is_some_and(|e| e == "log"))
    else {
        return ExitCode::FAILURE;
    };
    let out = fuzz_dir().join("corpus/spool-segment/three-messages.log");
    match std::fs::write(&out, bytes) {
        Ok(()) => {
            println!("wrote {} ({} bytes)", out.display(), bytes.len());
            ExitCode::SUCCESS
        }
        Err(_) => ExitCode::FAILURE,
    }
}
