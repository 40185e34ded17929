//! Checks on every build that `src/generated/` is what `codegen/` made from `migrations/` and
//! `queries/` (the SQL-first workflow of the README), without a database or a dependency.
//!
//! The first line of `src/generated/mod.rs` records fingerprints of the SQL, of the generator
//! and of the generated files themselves (`build/fingerprint.rs`). A `.sql` file changed
//! without regenerating, a generator changed without regenerating, or a generated file edited
//! by hand each fail the build with the command that regenerates.

#[path = "build/fingerprint.rs"]
#[allow(dead_code)] // codegen/ uses the rest
mod fingerprint;

use std::path::PathBuf;
use std::{env, process};

use fingerprint::Fingerprints;

fn main() {
    let watched = [
        fingerprint::MIGRATIONS_DIR,
        fingerprint::QUERIES_DIR,
        fingerprint::GENERATED_DIR,
        fingerprint::GENERATOR_DIR,
        "build",
    ];
    for path in watched {
        println!("cargo:rerun-if-changed={path}");
    }
    if let Err(message) = check() {
        eprintln!(
            "error: {message}\nRegenerate with: {}",
            fingerprint::REGENERATE
        );
        process::exit(1);
    }
}

fn check() -> Result<(), String> {
    let root =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").ok_or("CARGO_MANIFEST_DIR is not set")?);
    let (files, line) = fingerprint::committed(&root)?;
    let recorded = Fingerprints::parse(&line).ok_or_else(|| {
        format!(
            "the first line of {}/{} records no fingerprints",
            fingerprint::GENERATED_DIR,
            fingerprint::ROOT_FILE
        )
    })?;
    let output = fingerprint::output(
        files
            .iter()
            .map(|(name, text)| (name.as_str(), text.as_str())),
    );
    if output != recorded.output {
        return Err(format!(
            "{} was edited by hand: its files no longer match the fingerprint recorded when \
             they were generated",
            fingerprint::GENERATED_DIR
        ));
    }
    if fingerprint::sql(&root)? != recorded.sql {
        return Err(format!(
            "{} is stale: {}/ or {}/ changed since it was generated",
            fingerprint::GENERATED_DIR,
            fingerprint::MIGRATIONS_DIR,
            fingerprint::QUERIES_DIR
        ));
    }
    // A published crate has no codegen/: its output and SQL were checked above.
    if let Some(generator) = fingerprint::generator(&root)? {
        if recorded.generator.as_deref() != Some(generator.as_str()) {
            return Err(format!(
                "{} is stale: the generator ({}/) changed since it was generated",
                fingerprint::GENERATED_DIR,
                fingerprint::GENERATOR_DIR
            ));
        }
    }
    Ok(())
}
