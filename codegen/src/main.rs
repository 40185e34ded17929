//! Regenerates `src/generated/` from `migrations/` and `queries/` with cornucopia, or checks
//! that the committed files are exactly what it generates.
//!
//! ```text
//! cargo run --manifest-path codegen/Cargo.toml -- postgres://postgres@127.0.0.1:5432
//! cargo run --manifest-path codegen/Cargo.toml -- --write postgres://postgres@127.0.0.1:5432
//! ```
//!
//! The URL names a PostgreSQL server, not a database: cornucopia creates a temporary database
//! there, applies `migrations/`, prepares every statement of `queries/` (so a statement that
//! does not fit the schema fails here) and writes a crate into a temporary directory. That
//! crate is rewritten into the module `crate::generated` (`rewrite.rs`), printed with
//! prettyplease (never rustfmt, so the bytes do not depend on the machine), and given the
//! fingerprints `build.rs` checks on every build (`build/fingerprint.rs`). Without `--write`
//! a difference from the committed files is reported and the exit status is 1.

#[path = "../../build/fingerprint.rs"]
#[allow(dead_code)] // build.rs uses the rest
mod fingerprint;
mod rewrite;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};
use std::{env, fs, process};

use cornucopia::config::{Config, TypeMapping};

use fingerprint::{
    Fingerprints, GENERATED_DIR, MIGRATIONS_DIR, QUERIES_DIR, REGENERATE, ROOT_FILE,
};

fn main() {
    let mut write = false;
    let mut url = None;
    for argument in env::args().skip(1) {
        match argument.as_str() {
            "--write" => write = true,
            _ if url.is_none() && !argument.starts_with('-') => url = Some(argument),
            _ => fail(&format!(
                "unexpected argument `{argument}`\nUsage: {REGENERATE}"
            )),
        }
    }
    let Some(url) = url else {
        fail(&format!("no server URL given\nUsage: {REGENERATE}"));
    };
    if let Err(message) = run(&url, write) {
        fail(&message);
    }
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    process::exit(1);
}

fn run(url: &str, write: bool) -> Result<(), String> {
    if !names_a_server(url) {
        return Err(
            "the URL must be a postgres:// URL of a server that names no database (e.g. \
             postgres://postgres@127.0.0.1:5432): cornucopia creates and drops its own \
             database there"
                .to_owned(),
        );
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("codegen/ has no parent directory")?
        .to_path_buf();
    let out = env::temp_dir().join(format!("rustauth-codegen-{}", process::id()));
    let generated = generate(&root, url, &out)
        .and_then(|()| rewrite::postprocess(&out.join("src"), &root.join(QUERIES_DIR)));
    // The temporary crate goes whatever happened.
    let _ = fs::remove_dir_all(&out);
    let mut generated = generated?;
    let fingerprints = Fingerprints {
        sql: fingerprint::sql(&root)?,
        generator: fingerprint::generator(&root)?,
        output: fingerprint::output(
            generated
                .iter()
                .map(|(name, text)| (name.as_str(), text.as_str())),
        ),
    };
    let root_file = generated
        .get_mut(ROOT_FILE)
        .ok_or_else(|| format!("{} wrote no {ROOT_FILE}", rewrite::CORNUCOPIA))?;
    *root_file = format!("{}\n{root_file}", fingerprints.line());

    let dir = root.join(GENERATED_DIR);
    let committed = read_committed(&dir)?;
    if generated == committed {
        println!("{GENERATED_DIR} is current");
        return Ok(());
    }
    if write {
        write_files(&dir, &generated, &committed)?;
        println!("{GENERATED_DIR} regenerated: review and commit it");
        return Ok(());
    }
    Err(format!(
        "{GENERATED_DIR} differs from what {MIGRATIONS_DIR}/ and {QUERIES_DIR}/ generate:\n{}\
         Overwrite it with: {REGENERATE}",
        diff_summary(&generated, &committed)
    ))
}
/// True for a `postgres://` or `postgresql://` URL without a database (cornucopia appends
/// `/<database>` to it).
fn names_a_server(url: &str) -> bool {
    let Some((scheme, rest)) = url.split_once("://") else {
        return false;
    };
    let authority_and_path = rest.split(['?', '#']).next().unwrap_or_default();
    let path = authority_and_path
        .split_once('/')
        .map(|(_, path)| path)
        .unwrap_or_default();
    matches!(scheme, "postgres" | "postgresql") && path.is_empty() && !url.contains("dbname=")
}

/// Runs cornucopia against a temporary database on `url`; writes a crate into `out`.
fn generate(root: &Path, url: &str, out: &Path) -> Result<(), String> {
    let schema_files = fingerprint::files_with_extension(&root.join(MIGRATIONS_DIR), "sql")?;
    let config = Config::builder()
        .queries(root.join(QUERIES_DIR))
        .destination(out)
        .r#async(true)
        .sync(false)
        .add_type_mapping(
            "pg_catalog.timestamptz",
            TypeMapping::Simple("time::OffsetDateTime".to_owned()),
        )
        .build();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    let database = format!("rustauth_codegen_{}_{nanos}", process::id());
    // cornucopia runs whatever `rustfmt` is on PATH over its output, and rustfmt reorders
    // `mod` and `use` items: hide it, so that the bytes depend only on prettyplease.
    let path = env::var_os("PATH");
    env::set_var("PATH", "");
    let result = cornucopia::gen_fresh(url, &database, &schema_files, None, false, config);
    match path {
        Some(path) => env::set_var("PATH", path),
        None => env::remove_var("PATH"),
    }
    result.map_err(|error| format!("cornucopia failed:\n{}", error.report()))
}

/// The committed files of `src/generated/`, by `/`-separated relative path.
fn read_committed(dir: &Path) -> Result<BTreeMap<String, String>, String> {
    let mut files = BTreeMap::new();
    if !dir.exists() {
        return Ok(files);
    }
    for path in fingerprint::files_with_extension(dir, "rs")? {
        let text = fs::read_to_string(&path)
            .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
        files.insert(fingerprint::relative(dir, &path)?, text);
    }
    Ok(files)
}

/// Replaces `src/generated/` by `generated`: writes changed files, removes stale ones.
fn write_files(
    dir: &Path,
    generated: &BTreeMap<String, String>,
    committed: &BTreeMap<String, String>,
) -> Result<(), String> {
    for (name, text) in generated {
        if committed.get(name) == Some(text) {
            continue;
        }
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .map_err(|error| format!("cannot create {}: {error}", parent.display()))?;
        }
        fs::write(&path, text)
            .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
    }
    for name in committed
        .keys()
        .filter(|name| !generated.contains_key(*name))
    {
        let path = dir.join(name);
        fs::remove_file(&path)
            .map_err(|error| format!("cannot remove {}: {error}", path.display()))?;
    }
    Ok(())
}

/// One line per added, removed or changed file, with the first differing line.
fn diff_summary(
    generated: &BTreeMap<String, String>,
    committed: &BTreeMap<String, String>,
) -> String {
    let mut summary = String::new();
    for (name, text) in generated {
        match committed.get(name) {
            None => summary.push_str(&format!("  new file {GENERATED_DIR}/{name}\n")),
            Some(old) if old != text => {
                let (line, new_line, old_line) = text
                    .lines()
                    .map(Some)
                    .chain(std::iter::repeat(None))
                    .zip(old.lines().map(Some).chain(std::iter::repeat(None)))
                    .take(text.lines().count().max(old.lines().count()))
                    .enumerate()
                    .find(|(_, (new, old))| new != old)
                    .map(|(index, (new, old))| (index + 1, new, old))
                    .unwrap_or((0, None, None));
                summary.push_str(&format!(
                    "  changed {GENERATED_DIR}/{name}, first at line {line}:\n    \
                     committed: {}\n    generated: {}\n",
                    old_line.unwrap_or("<end of file>"),
                    new_line.unwrap_or("<end of file>")
                ));
            }
            Some(_) => {}
        }
    }
    for name in committed
        .keys()
        .filter(|name| !generated.contains_key(*name))
    {
        summary.push_str(&format!("  stale file {GENERATED_DIR}/{name}\n"));
    }
    summary
}
