//! Fingerprints of the typed statements' inputs and output, shared by `build.rs` (which checks
//! them on every build) and `codegen/` (which records them when it regenerates
//! `src/generated/`). Plain std, no dependencies.
//!
//! The first line of `src/generated/mod.rs` records three FNV-1a (64-bit) hashes:
//! - `sql`: the `.sql` files of `migrations/` and `queries/`;
//! - `generator`: the generator itself (`codegen/Cargo.toml`, `codegen/Cargo.lock`,
//!   `codegen/src/`, and this file), so that a change to how the code is generated cannot go
//!   unnoticed either;
//! - `output`: every file of `src/generated/` as committed, except that first line.
//!
//! Any edit to one of them without a regeneration changes a hash and fails the build. Each
//! hash covers its files in sorted order of their `/`-separated paths relative to the crate
//! root: per file its path, a NUL byte, the length of its contents (little-endian u64) and the
//! contents, with CRLF read as LF so that a Windows checkout hashes the same.

use std::fs;
use std::path::{Path, PathBuf};

/// The committed output.
pub const GENERATED_DIR: &str = "src/generated";
/// The file whose first line records the fingerprints.
pub const ROOT_FILE: &str = "mod.rs";
/// The schema the statements are checked against.
pub const MIGRATIONS_DIR: &str = "migrations";
/// The statements, one module of `src/generated/queries/` per file.
pub const QUERIES_DIR: &str = "queries";
/// The generator's package.
pub const GENERATOR_DIR: &str = "codegen";
/// The generator's files outside `codegen/src/`.
pub const GENERATOR_FILES: [&str; 3] = [
    "codegen/Cargo.toml",
    "codegen/Cargo.lock",
    "build/fingerprint.rs",
];
/// What to run when `src/generated/` is stale.
pub const REGENERATE: &str =
    "cargo run --manifest-path codegen/Cargo.toml -- --write postgres://postgres@127.0.0.1:5432";
/// Starts the fingerprints on the first line of `src/generated/mod.rs`.
pub const MARKER: &str = "// @generated fingerprints:";

/// FNV-1a's 64-bit offset basis.
const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a's 64-bit prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The three hashes, as lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprints {
    /// `migrations/` and `queries/`.
    pub sql: String,
    /// The generator (`None` where `codegen/` is absent, as in a published crate).
    pub generator: Option<String>,
    /// `src/generated/` without the fingerprint line.
    pub output: String,
}

impl Fingerprints {
    /// The first line of `src/generated/mod.rs`.
    pub fn line(&self) -> String {
        format!(
            "{MARKER} sql={} generator={} output={}",
            self.sql,
            self.generator.as_deref().unwrap_or("-"),
            self.output
        )
    }

    /// Reads the fingerprints back from that line.
    pub fn parse(line: &str) -> Option<Self> {
        let rest = line.strip_prefix(MARKER)?;
        let mut fields = rest.split_whitespace();
        let mut take = |name: &str| {
            fields
                .next()
                .and_then(|field| field.strip_prefix(name)?.strip_prefix('='))
                .map(str::to_owned)
        };
        let sql = take("sql")?;
        let generator = take("generator").filter(|hash| hash != "-");
        let output = take("output")?;
        Some(Self {
            sql,
            generator,
            output,
        })
    }
}

/// The hash of the `.sql` files under `root`'s `migrations/` and `queries/`.
pub fn sql(root: &Path) -> Result<String, String> {
    let mut files = files_with_extension(&root.join(MIGRATIONS_DIR), "sql")?;
    files.extend(files_with_extension(&root.join(QUERIES_DIR), "sql")?);
    hash_files(root, &files)
}

/// The hash of the generator, or `None` when `root` has no `codegen/`.
pub fn generator(root: &Path) -> Result<Option<String>, String> {
    if !root.join(GENERATOR_DIR).is_dir() {
        return Ok(None);
    }
    let mut files = files_with_extension(&root.join(GENERATOR_DIR).join("src"), "rs")?;
    files.extend(GENERATOR_FILES.iter().map(|file| root.join(file)));
    hash_files(root, &files).map(Some)
}

/// The hash of the files of `src/generated/` as given (relative path → contents, the root
/// file without its fingerprint line).
pub fn output<'a>(files: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut files = files.into_iter().collect::<Vec<_>>();
    files.sort();
    let mut hash = Fnv1a64::new();
    for (name, text) in files {
        hash.file(&format!("{GENERATED_DIR}/{name}"), text.as_bytes());
    }
    hash.hex()
}

/// The committed files of `src/generated/` by `/`-separated path relative to it, and the
/// fingerprint line of its root file (which `output` leaves out).
pub fn committed(root: &Path) -> Result<(Vec<(String, String)>, String), String> {
    let dir = root.join(GENERATED_DIR);
    let mut files = Vec::new();
    let mut line = String::new();
    for path in files_with_extension(&dir, "rs")? {
        let text = fs::read_to_string(&path)
            .map_err(|error| format!("cannot read {}: {error}", path.display()))?
            .replace("\r\n", "\n");
        let name = relative(&dir, &path)?;
        if name == ROOT_FILE {
            let (first, rest) = text.split_once('\n').unwrap_or((&text, ""));
            line = first.to_owned();
            files.push((name, rest.to_owned()));
        } else {
            files.push((name, text));
        }
    }
    Ok((files, line))
}

/// The files under `dir` whose name ends in `.{extension}`, recursively, sorted by path.
pub fn files_with_extension(dir: &Path, extension: &str) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = fs::read_dir(&dir)
            .map_err(|error| format!("cannot read {}: {error}", dir.display()))?;
        for entry in entries {
            let path = entry
                .map_err(|error| format!("cannot read {}: {error}", dir.display()))?
                .path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|found| found == extension) {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// `path` relative to `dir`, `/`-separated on every platform.
pub fn relative(dir: &Path, path: &Path) -> Result<String, String> {
    Ok(path
        .strip_prefix(dir)
        .map_err(|_| format!("{} is outside {}", path.display(), dir.display()))?
        .components()
        .map(|part| part.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/"))
}

/// The hash of `files`, named relative to `root`.
fn hash_files(root: &Path, files: &[PathBuf]) -> Result<String, String> {
    let mut named = Vec::new();
    for file in files {
        let bytes =
            fs::read(file).map_err(|error| format!("cannot read {}: {error}", file.display()))?;
        named.push((relative(root, file)?, bytes));
    }
    named.sort();
    let mut hash = Fnv1a64::new();
    for (name, bytes) in &named {
        hash.file(name, bytes);
    }
    Ok(hash.hex())
}

/// 64-bit FNV-1a.
struct Fnv1a64(u64);

impl Fnv1a64 {
    fn new() -> Self {
        Self(FNV_OFFSET_BASIS)
    }

    /// One file: its path, NUL, its length and its contents (CRLF read as LF).
    fn file(&mut self, name: &str, bytes: &[u8]) {
        let mut contents = Vec::with_capacity(bytes.len());
        for (index, byte) in bytes.iter().enumerate() {
            if *byte == b'\r' && bytes.get(index + 1) == Some(&b'\n') {
                continue;
            }
            contents.push(*byte);
        }
        self.write(name.as_bytes());
        self.write(&[0]);
        self.write(&(contents.len() as u64).to_le_bytes());
        self.write(&contents);
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(FNV_PRIME);
        }
    }

    fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_line_reads_back() {
        let prints = Fingerprints {
            sql: "0123456789abcdef".to_owned(),
            generator: Some("fedcba9876543210".to_owned()),
            output: "00000000ffffffff".to_owned(),
        };
        assert_eq!(Fingerprints::parse(&prints.line()), Some(prints.clone()));
        let published = Fingerprints {
            generator: None,
            ..prints
        };
        assert!(published.line().contains("generator=-"));
        assert_eq!(Fingerprints::parse(&published.line()), Some(published));
        assert_eq!(Fingerprints::parse("// @generated by build.rs"), None);
        assert_eq!(
            Fingerprints::parse(&format!("{MARKER} sql=1 output=2")),
            None
        );
    }

    #[test]
    fn the_output_hash_ignores_line_endings_and_order_but_not_contents() {
        let unix = output([("a.rs", "x\ny\n"), ("b.rs", "z\n")]);
        assert_eq!(unix, output([("b.rs", "z\r\n"), ("a.rs", "x\r\ny\r\n")]));
        assert_ne!(unix, output([("a.rs", "x\ny \n"), ("b.rs", "z\n")]));
        assert_ne!(unix, output([("a.rs", "x\ny\n"), ("c.rs", "z\n")]));
        // The path and the length are part of the hash: moving bytes between files shows.
        assert_ne!(unix, output([("a.rs", "x\n"), ("b.rs", "y\nz\n")]));
    }

    #[test]
    fn the_committed_files_match_their_fingerprints() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let (files, line) = committed(root).expect("read src/generated");
        let recorded = Fingerprints::parse(&line).expect("a fingerprint line");
        let hashed = output(
            files
                .iter()
                .map(|(name, text)| (name.as_str(), text.as_str())),
        );
        assert_eq!(hashed, recorded.output);
        assert_eq!(sql(root).expect("hash the SQL"), recorded.sql);
    }
}
