//! Every corpus seed and every crash reproducer runs through its target without a panic
//! (a finding, once fixed, stays fixed), and a short fuzzing round finds nothing.

#![allow(clippy::unwrap_used)] // a panic is the failure report

use bridge_fuzz::targets::TARGETS;
use bridge_fuzz::{fuzz, fuzz_dir, quiet_panics, read_dir_files, run_one};

#[test]
fn seeds_and_reproducers_never_panic() {
    quiet_panics();
    let dir = fuzz_dir();
    let crashes = read_dir_files(&dir.join("crashes"));
    let mut ran = 0;
    for target in &TARGETS {
        let seeds = read_dir_files(&dir.join("corpus").join(target.name));
        assert!(!seeds.is_empty(), "{} has no seeds", target.name);
        let repros = crashes.iter().filter(|(p, _)| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{}-", target.name)))
        });
        for (path, input) in seeds.iter().chain(repros) {
            if let Err(message) = run_one(target, input) {
                panic!("{} panics on {}: {message}", target.name, path.display());
            }
            ran += 1;
        }
    }
    assert!(ran >= 30);
}

#[test]
fn spool_seed_is_a_segment_the_spool_wrote_and_recovers() {
    let seed = fuzz_dir().join("corpus/spool-segment/three-messages.log");
    let bytes = std::fs::read(&seed).unwrap();
    let (kept, corrupt, next) = bridge_core::fuzz_entry::spool_segment(&bytes, 1);
    assert_eq!((kept, corrupt, next), (3, 0, 4));
    // Torn at every length: never more messages, never a panic.
    for cut in 0..bytes.len() {
        let (k, _, _) = bridge_core::fuzz_entry::spool_segment(&bytes[..cut], 1);
        assert!(k <= 3);
    }
}

#[test]
fn a_short_round_finds_nothing() {
    quiet_panics();
    let dir = fuzz_dir();
    let scratch = tempfile::tempdir().unwrap();
    for target in &TARGETS {
        let r = fuzz(target, 2_000, 42, &dir.join("corpus"), scratch.path());
        assert!(r.findings.is_empty(), "{}: {:?}", target.name, r.findings);
        assert!(
            r.outcomes >= 2,
            "{} explores more than one outcome",
            target.name
        );
    }
}

#[test]
fn mibeacon_seeds_reach_both_decryptions() {
    let seed =
        |name: &str| std::fs::read(fuzz_dir().join("corpus/ble-adverts").join(name)).unwrap();
    let decoded = |o: u8| (2..20).contains(&o);
    // Legacy v3 with the legacy key: a sensor frame (model, product id, encrypted,
    // temperature, humidity, battery) and xiaomi-ble's dimmer frame (no reading we decode).
    let [legacy, v5, none] = bridge_fuzz::targets::mibeacon(&seed("mibeacon-legacy-lywsd02.bin"));
    assert_eq!(legacy, 7, "{legacy}");
    assert_eq!((v5, none), (21, 20));
    assert!(decoded(
        bridge_fuzz::targets::mibeacon(&seed("mibeacon-legacy-ylkg07yl.bin"))[0]
    ));
    let [legacy, v5, _] = bridge_fuzz::targets::mibeacon(&seed("mibeacon-v5.bin"));
    assert_eq!((legacy, v5), (21, 6));
}
