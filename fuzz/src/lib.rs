//! A coverage-less, structure-aware mutation fuzzer of our own, on the stable toolchain:
//! seeds from `fuzz/corpus/<target>/`, stacked byte mutations and JSON-aware mutations
//! ([`engine`]), every input run under `catch_unwind`, and the outcome signature each
//! target returns (which branch, which error kind) as feedback: an input with a new
//! signature joins the pool. A panic is a finding: the input is written to
//! `fuzz/crashes/<target>-<hash>.bin` and the message reported.

pub mod engine;
pub mod targets;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::Instant;

use engine::{Rng, mutate_bytes, mutate_json};
use serde_json::Value;
use targets::{Shape, Target};

/// What a run found.
#[derive(Debug, Clone)]
pub struct Report {
    /// Target name.
    pub target: &'static str,
    /// Inputs run.
    pub executions: u64,
    /// Wall time, s.
    pub seconds: f64,
    /// Distinct outcome signatures seen.
    pub outcomes: usize,
    /// Pool size at the end (seeds + inputs with new outcomes).
    pub pool: usize,
    /// Panics, by message, with the reproducer written.
    pub findings: BTreeMap<String, PathBuf>,
}

thread_local! {
    static LAST_PANIC: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Silences the default panic output and keeps the message for the report.
pub fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let payload = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        LAST_PANIC.with(|p| *p.borrow_mut() = format!("{location}: {payload}"));
    }));
}

/// The files of `dir`, sorted (missing directory: none).
pub fn read_dir_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| e.path().is_file())
        .filter_map(|e| std::fs::read(e.path()).ok().map(|b| (e.path(), b)))
        .collect();
    files.sort();
    files
}

/// Runs one input; the panic message if it panicked.
pub fn run_one(target: &Target, input: &[u8]) -> Result<u64, String> {
    catch_unwind(AssertUnwindSafe(|| (target.run)(input)))
        .map_err(|_| LAST_PANIC.with(|p| p.borrow().clone()))
}

/// Fuzzes `target` for `executions` inputs from the seeds in `corpus/<name>/`; findings
/// go to `crashes/`.
pub fn fuzz(target: &Target, executions: u64, seed: u64, corpus: &Path, crashes: &Path) -> Report {
    let mut rng = Rng::new(seed);
    let mut pool: Vec<Vec<u8>> = read_dir_files(&corpus.join(target.name))
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    if pool.is_empty() {
        pool.push(Vec::new());
    }
    let mut docs: Vec<Value> = pool
        .iter()
        .filter_map(|b| serde_json::from_slice(b).ok())
        .collect();
    let mut seen: HashSet<u64> = HashSet::new();
    let mut findings = BTreeMap::new();
    let started = Instant::now();
    for done in 0..executions {
        if done > 0 && done % 1_000_000 == 0 {
            // Progress on stderr, so a long run that is cut short still has figures.
            eprintln!(
                "{}: {done} executions in {:.0} s, {} outcomes, {} findings",
                target.name,
                started.elapsed().as_secs_f64(),
                seen.len(),
                findings.len()
            );
        }
        let input = if target.shape == Shape::Json && !docs.is_empty() && !rng.one_in(4) {
            let base = &docs[rng.below(docs.len())];
            let doc = mutate_json(&mut rng, base, &docs);
            let text = serde_json::to_vec(&doc).unwrap_or_default();
            if rng.one_in(5) {
                mutate_bytes(&mut rng, &text, &pool, target.max_len)
            } else {
                text
            }
        } else {
            let base = &pool[rng.below(pool.len())];
            mutate_bytes(&mut rng, base, &pool, target.max_len)
        };
        match run_one(target, &input) {
            Ok(signature) => {
                if seen.insert(signature) && pool.len() < 4096 {
                    if target.shape == Shape::Json
                        && let Ok(doc) = serde_json::from_slice::<Value>(&input)
                    {
                        docs.push(doc);
                    }
                    pool.push(input);
                }
            }
            Err(message) => {
                if let std::collections::btree_map::Entry::Vacant(slot) = findings.entry(message) {
                    let name = format!("{}-{:016x}.bin", target.name, fnv(&input));
                    let path = crashes.join(name);
                    let _ = std::fs::create_dir_all(crashes);
                    let _ = std::fs::write(&path, &input);
                    slot.insert(path);
                }
            }
        }
    }
    Report {
        target: target.name,
        executions,
        seconds: started.elapsed().as_secs_f64(),
        outcomes: seen.len(),
        pool: pool.len(),
        findings,
    }
}

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The repository's `fuzz/` directory.
pub fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
