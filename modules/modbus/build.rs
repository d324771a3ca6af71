//! Bundles every `device-maps/modbus/*.json` into the binary: writes an `include_str!`
//! table to `OUT_DIR/bundled_maps.rs`, so adding a map is adding one file.

#![allow(clippy::print_stdout)] // cargo reads build-script directives from stdout

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let dir = manifest.join("../../device-maps/modbus");
    // A new or removed file changes the directory's mtime; an edited one its own.
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut maps: Vec<(String, PathBuf)> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .filter_map(|p| {
                let stem = p.file_stem()?.to_str()?.to_owned();
                Some((stem, p))
            })
            .collect(),
        Err(e) => panic!("cannot read the device maps at {}: {e}", dir.display()),
    };
    maps.sort();
    let mut out =
        String::from("/// (file stem, JSON text) of every bundled map, sorted by name.\n");
    out.push_str("const BUNDLED: &[(&str, &str)] = &[\n");
    for (name, path) in &maps {
        println!("cargo:rerun-if-changed={}", path.display());
        let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
        let _ = writeln!(out, "    ({name:?}, include_str!({:?})),", display(&abs));
    }
    out.push_str("];\n");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    if let Err(e) = std::fs::write(out_dir.join("bundled_maps.rs"), out) {
        panic!("cannot write bundled_maps.rs: {e}");
    }
}

fn display(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}
