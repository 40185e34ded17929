//! Checks on every build that `src/generated/` is what `codegen/` made from `migrations/` and
//! `queries/` (the SQL-first workflow of the README), without a database or a dependency.
//!
//! The first line of `src/generated/mod.rs` records fingerprints of the SQL, of the generator
//! and of the generated files themselves (`build/fingerprint.rs`). A `.sql` file changed
//! without regenerating, or a generated file edited by hand, fails the build with the command
//! that regenerates.
//!
//! Only paths the published package contains are checked and watched (`migrations/`,
//! `queries/`, `src/generated/`, `build/`): cargo re-runs a build script on every build when a
//! watched path does not exist, and a published crate has no `codegen/`. The generator's own
//! fingerprint (a change to `codegen/` without regenerating) is checked by the test
//! `codegen::the_generator_is_the_one_that_made_src_generated` in the repository.

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
    Ok(())
}
