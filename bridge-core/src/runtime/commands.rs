//! The commands every module binary has (`run`, `validate`, `maps`, `models`, `manifest`,
//! `schemas`, `--version`), generic over the protocol, plus the protocol's own
//! subcommands. A module's `main` is
//! `bridge_core::runtime::commands::main(MyProtocol::new())`.

use std::path::Path;
use std::process::ExitCode;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::cli::{Cli, Command, Program};
use super::manifest::{Deployment, module_manifest};
use super::{Protocol, RuntimeError, checked_config, init_logging, module_runtime, print_json};

/// What the shared commands need from a protocol besides running it.
pub trait CommandLine: Protocol + Sized {
    /// The protocol's own subcommands (flattened after the shared ones);
    /// [`NoExtra`](super::cli::NoExtra) for none.
    type Extra: clap::Subcommand + std::fmt::Debug;

    /// Version for `--version`: the module crate's `env!("CARGO_PKG_VERSION")`.
    const VERSION: &'static str;

    /// What the module does, one paragraph for `--help`.
    const ABOUT: &'static str;

    /// How many devices a configuration enables (`validate` prints it).
    fn device_count(&self, config: &Self::Config) -> usize;

    /// Names of the device maps built into the binary (`maps`), sorted.
    fn bundled_maps(&self) -> Vec<String>;

    /// DTDL v2 models (a JSON array) for a configuration (`models`).
    fn models(&self, config: &Self::Config) -> Value;

    /// What the container needs from the host for a configuration (`manifest`).
    fn deployment(&self, config: &Self::Config) -> Deployment;

    /// Runs one of the protocol's own subcommands; its exit status.
    fn run_extra(&self, extra: Self::Extra) -> ExitCode;

    /// The JSON Schemas generated from the module's types (`schemas`): file name and
    /// schema, e.g. `("modbus-config.schema.json", ...)`.
    fn schemas(&self) -> Vec<(&'static str, Value)> {
        Vec::new()
    }
}

/// A command could not finish.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The module runtime failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The async runtime could not start.
    #[error("Cannot start the async runtime: {0}")]
    AsyncRuntime(std::io::Error),
    /// Writing the output failed.
    #[error("Cannot write the output: {0}")]
    Output(std::io::Error),
}

/// Who the binary of protocol `P` is.
pub fn program<P: CommandLine>(protocol: &P) -> Program {
    Program {
        name: protocol.name(),
        version: P::VERSION,
        about: P::ABOUT,
    }
}

/// A module binary's whole `main`: parses the process arguments (printing help, version
/// or usage errors and exiting as clap does), sets up logging, runs the command.
pub fn main<P: CommandLine>(protocol: P) -> Result<ExitCode, CommandError> {
    let cli = Cli::<P::Extra>::try_parse_for(program(&protocol), std::env::args_os())
        .unwrap_or_else(|e| e.exit());
    init_logging(&cli.common.log);
    execute(protocol, cli)
}

/// Runs a parsed command line. Exit status 2 when a configuration is invalid.
pub fn execute<P: CommandLine>(protocol: P, cli: Cli<P::Extra>) -> Result<ExitCode, CommandError> {
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => {
            module_runtime()
                .map_err(CommandError::AsyncRuntime)?
                .block_on(super::run_module(
                    protocol,
                    cli.common,
                    CancellationToken::new(),
                ))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate { file } => with_config(&protocol, &file, |config| {
            eprintln!(
                "{}: valid ({} devices).",
                file.display(),
                protocol.device_count(&config)
            );
            Ok(())
        }),
        Command::Maps => {
            write_lines(&protocol.bundled_maps()).map_err(CommandError::Output)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Models { from } => with_config(&protocol, &from, |config| {
            print_json(&protocol.models(&config)).map_err(CommandError::Output)
        }),
        Command::Manifest {
            from,
            image,
            name,
            ttl_secs,
        } => {
            let name = name.unwrap_or_else(|| protocol.name().to_owned());
            match checked_config(&protocol, &from) {
                Some((config, doc)) => {
                    let deployment = protocol.deployment(&config);
                    print_json(&module_manifest(&name, &image, &deployment, doc, ttl_secs))
                        .map_err(CommandError::Output)?;
                    Ok(ExitCode::SUCCESS)
                }
                None => Ok(ExitCode::from(2)),
            }
        }
        Command::Schemas { out } => {
            write_schemas(&protocol.schemas(), out.as_deref()).map_err(CommandError::Output)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Extra(extra) => Ok(protocol.run_extra(extra)),
    }
}

/// The JSON Schema (draft 2020-12) of a configuration or map type `T`, as the file `name`
/// of `device-maps/schema/`: its `$id`, a one-line `description`, and every doc comment
/// unwrapped to one line.
pub fn schema_file<T: schemars::JsonSchema>(name: &str, description: &str) -> Value {
    let mut schema = schemars::generate::SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<T>();
    schema.insert(
        "$id".into(),
        format!("https://example.invalid/edge-bridge/{name}").into(),
    );
    schema.insert("description".into(), description.into());
    let mut value = schema.to_value();
    unwrap_descriptions(&mut value);
    value
}

/// Paths of the properties of `schema` without a description: a field missing its doc
/// comment (tags of tagged enums need none; `allOf` conditions restate fields).
pub fn undocumented_properties(schema: &Value, path: &str) -> Vec<String> {
    fn walk(schema: &Value, path: &str, out: &mut Vec<String>) {
        match schema {
            Value::Object(map) => {
                if let Some(Value::Object(props)) = map.get("properties") {
                    for (name, prop) in props {
                        let tag = prop.get("const").is_some();
                        if !tag && prop.get("description").is_none() {
                            out.push(format!("{path}.{name}"));
                        }
                    }
                }
                for (k, v) in map.iter().filter(|(k, _)| *k != "allOf") {
                    walk(v, &format!("{path}/{k}"), out);
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    walk(v, &format!("{path}[{i}]"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(schema, path, &mut out);
    out
}

/// The names of `files` whose checked-in copy in `dir` differs from the generated schema;
/// with `UPDATE_SCHEMAS` set in the environment, rewrites them instead (and returns none).
pub fn stale_schema_files(
    files: &[(&'static str, Value)],
    dir: &Path,
) -> std::io::Result<Vec<&'static str>> {
    let mut stale = Vec::new();
    for (name, schema) in files {
        let text = serde_json::to_string_pretty(schema)? + "\n";
        let path = dir.join(name);
        if std::env::var_os("UPDATE_SCHEMAS").is_some() {
            std::fs::write(&path, &text)?;
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            stale.push(*name);
        }
    }
    Ok(stale)
}

fn unwrap_descriptions(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                match v {
                    Value::String(text) if k == "description" => *text = text.replace('\n', " "),
                    _ => unwrap_descriptions(v),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(unwrap_descriptions),
        _ => {}
    }
}

/// The schemas as one JSON object by file name on stdout, or one file each in `dir`.
fn write_schemas(schemas: &[(&'static str, Value)], dir: Option<&Path>) -> std::io::Result<()> {
    let Some(dir) = dir else {
        let all: serde_json::Map<String, Value> = schemas
            .iter()
            .map(|(name, schema)| ((*name).to_owned(), schema.clone()))
            .collect();
        return print_json(&Value::Object(all));
    };
    for (name, schema) in schemas {
        let text = serde_json::to_string_pretty(schema).map_err(std::io::Error::from)? + "\n";
        std::fs::write(dir.join(name), text)?;
        eprintln!("{}", dir.join(name).display());
    }
    Ok(())
}

/// Validates `path` (problems on stderr, exit status 2) and hands the typed config on.
fn with_config<P: Protocol>(
    protocol: &P,
    path: &Path,
    then: impl FnOnce(P::Config) -> Result<(), CommandError>,
) -> Result<ExitCode, CommandError> {
    match checked_config(protocol, path) {
        Some((config, _)) => then(config).map(|()| ExitCode::SUCCESS),
        None => Ok(ExitCode::from(2)),
    }
}

/// One item a line on stdout; a reader that stops early (`| head`) is not an error.
fn write_lines(items: &[String]) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let written = items.iter().try_for_each(|item| writeln!(out, "{item}"));
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}
