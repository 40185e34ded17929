//! Keeps `src/generated/` in step with `migrations/` and `queries/` (the SQL-first workflow of the README).
//!
//! Every build: hashes the `.sql` files of `migrations/` and `queries/` and compares the hash
//! with the one recorded on the first line of `src/generated/mod.rs`; a mismatch fails the
//! build with the command that regenerates. This needs no database and no dependency.
//!
//! With the `codegen` feature and `RUSTAUTH_PG_CODEGEN_URL` set to a server URL that names no
//! database (`postgres://postgres@127.0.0.1:5432`): cornucopia creates a temporary database on
//! that server, applies `migrations/`, prepares every statement of `queries/` and writes a
//! crate into `OUT_DIR`; that crate is rewritten into the module `crate::generated`, printed
//! with prettyplease (never rustfmt, so the bytes do not depend on the machine) and compared
//! byte for byte with `src/generated/`. `RUSTAUTH_PG_CODEGEN_WRITE=1` overwrites the committed
//! files when they differ; without it a difference fails the build with a summary.

use std::path::{Path, PathBuf};
use std::{env, fs, process};

/// The server URL for regeneration (names no database; cornucopia creates one).
const URL_VAR: &str = "RUSTAUTH_PG_CODEGEN_URL";
/// `1` lets a regeneration overwrite `src/generated/`.
const WRITE_VAR: &str = "RUSTAUTH_PG_CODEGEN_WRITE";
/// What to run when `src/generated/` is stale.
const REGENERATE: &str = "RUSTAUTH_PG_CODEGEN_URL=postgres://postgres@127.0.0.1:5432 \
RUSTAUTH_PG_CODEGEN_WRITE=1 cargo build --features codegen";
/// The committed output.
const GENERATED_DIR: &str = "src/generated";
/// Marks the hash on the first line of `src/generated/mod.rs`.
const HASH_MARKER: &str = "source-hash: fnv1a64:";
/// The directories whose `.sql` files the hash covers.
const SOURCE_DIRS: [&str; 2] = ["migrations", "queries"];

fn main() {
    for path in SOURCE_DIRS.iter().chain([&GENERATED_DIR]) {
        println!("cargo:rerun-if-changed={path}");
    }
    println!("cargo:rerun-if-env-changed={URL_VAR}");
    println!("cargo:rerun-if-env-changed={WRITE_VAR}");
    if let Err(message) = run() {
        eprintln!("error: {message}");
        process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let root =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").ok_or("CARGO_MANIFEST_DIR is not set")?);
    let hash = source_hash(&root)?;
    let url = env::var(URL_VAR).ok().filter(|url| !url.trim().is_empty());
    match url {
        #[cfg(feature = "codegen")]
        Some(url) => codegen::regenerate(&root, url.trim(), &hash)?,
        #[cfg(not(feature = "codegen"))]
        Some(_) => println!(
            "cargo:warning={URL_VAR} is set but the `codegen` feature is off: only the hash of \
             migrations/ and queries/ was checked"
        ),
        None if cfg!(feature = "codegen") => println!(
            "cargo:warning=the `codegen` feature is on but {URL_VAR} is not set: only the hash \
             of migrations/ and queries/ was checked"
        ),
        None => {}
    }
    check_recorded_hash(&root, &hash)
}

/// Fails unless the first line of `src/generated/mod.rs` records `hash`.
fn check_recorded_hash(root: &Path, hash: &str) -> Result<(), String> {
    let path = root.join(GENERATED_DIR).join("mod.rs");
    let text = fs::read_to_string(&path).map_err(|error| {
        format!(
            "cannot read {}: {error}\nRegenerate with: {REGENERATE}",
            path.display()
        )
    })?;
    let first = text.lines().next().unwrap_or_default();
    let recorded = first.split_once(HASH_MARKER).map(|(_, rest)| {
        rest.chars()
            .take_while(char::is_ascii_hexdigit)
            .collect::<String>()
    });
    match recorded {
        Some(recorded) if recorded == hash => Ok(()),
        Some(recorded) => Err(format!(
            "src/generated/ is stale: migrations/ and queries/ hash to {hash}, but \
             src/generated/mod.rs was generated from {recorded}.\n\
             Regenerate with: {REGENERATE}\n\
             (the URL names a PostgreSQL server, not a database: a temporary database is \
             created there and dropped again)"
        )),
        None => Err(format!(
            "the first line of src/generated/mod.rs records no `{HASH_MARKER}<hex>`: the file \
             was edited by hand.\nRegenerate with: {REGENERATE}"
        )),
    }
}

/// The `.sql` files under `dir`, recursively, sorted by path.
fn sql_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
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
            } else if path.extension().is_some_and(|extension| extension == "sql") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// FNV-1a (64 bit) over every `.sql` file of `migrations/` and `queries/`, in sorted order of
/// their `/`-separated paths relative to the crate root: for each file its path, a NUL byte,
/// the length of its contents (little-endian u64) and the contents, with CRLF read as LF so
/// that a Windows checkout hashes the same.
fn source_hash(root: &Path) -> Result<String, String> {
    let mut files = Vec::new();
    for dir in SOURCE_DIRS {
        files.extend(sql_files(&root.join(dir))?);
    }
    let mut named = Vec::new();
    for file in files {
        let relative = file
            .strip_prefix(root)
            .map_err(|_| format!("{} is outside the crate", file.display()))?
            .components()
            .map(|part| part.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/");
        let bytes =
            fs::read(&file).map_err(|error| format!("cannot read {}: {error}", file.display()))?;
        named.push((relative, bytes));
    }
    named.sort();
    let mut hash = Fnv1a64::new();
    for (relative, bytes) in &named {
        let contents = crlf_to_lf(bytes);
        hash.write(relative.as_bytes());
        hash.write(&[0]);
        hash.write(&(contents.len() as u64).to_le_bytes());
        hash.write(&contents);
    }
    Ok(format!("{:016x}", hash.finish()))
}

fn crlf_to_lf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    for (index, byte) in bytes.iter().enumerate() {
        if *byte == b'\r' && bytes.get(index + 1) == Some(&b'\n') {
            continue;
        }
        out.push(*byte);
    }
    out
}

/// 64-bit FNV-1a.
struct Fnv1a64(u64);

impl Fnv1a64 {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(feature = "codegen")]
mod codegen {
    //! Regeneration with cornucopia (only with the `codegen` feature).

    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};
    use std::time::{SystemTime, UNIX_EPOCH};
    use std::{env, fs, process};

    use cornucopia::config::{Config, TypeMapping};
    use syn::punctuated::Punctuated;
    use syn::visit_mut::{self, VisitMut};
    use syn::{parse_quote, Attribute, File, Item, Meta, Token};

    use super::{sql_files, GENERATED_DIR, HASH_MARKER, REGENERATE, WRITE_VAR};

    /// The cornucopia version whose output layout this post-processing knows.
    const CORNUCOPIA: &str = "cornucopia 1.0.1";

    /// Generates, post-processes, and compares with (or writes) `src/generated/`.
    pub(crate) fn regenerate(root: &Path, url: &str, hash: &str) -> Result<(), String> {
        if !names_a_server(url) {
            return Err(format!(
                "{} must be a postgres:// URL of a server that names no database (e.g. \
                 postgres://postgres@127.0.0.1:5432): cornucopia creates and drops its own \
                 database there",
                super::URL_VAR
            ));
        }
        let out =
            PathBuf::from(env::var_os("OUT_DIR").ok_or("OUT_DIR is not set")?).join("cornucopia");
        if out.exists() {
            fs::remove_dir_all(&out)
                .map_err(|error| format!("cannot clear {}: {error}", out.display()))?;
        }
        generate(root, url, &out)?;
        let generated = postprocess(&out.join("src"), hash)?;
        let committed = read_committed(&root.join(GENERATED_DIR))?;
        if generated == committed {
            return Ok(());
        }
        if env::var(WRITE_VAR).is_ok_and(|value| value == "1") {
            write(&root.join(GENERATED_DIR), &generated, &committed)?;
            println!("cargo:warning=src/generated/ regenerated: review and commit it");
            return Ok(());
        }
        Err(format!(
            "src/generated/ differs from what migrations/ and queries/ generate:\n{}\
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
        let schema_files = sql_files(&root.join("migrations"))?;
        let config = Config::builder()
            .queries(root.join("queries"))
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
        for path in rust_files(dir)? {
            let text = fs::read_to_string(&path)
                .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
            files.insert(relative(dir, &path)?, text);
        }
        Ok(files)
    }

    fn rust_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
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
                } else if path.extension().is_some_and(|extension| extension == "rs") {
                    files.push(path);
                }
            }
        }
        files.sort();
        Ok(files)
    }

    fn relative(dir: &Path, path: &Path) -> Result<String, String> {
        Ok(path
            .strip_prefix(dir)
            .map_err(|_| format!("{} is outside {}", path.display(), dir.display()))?
            .components()
            .map(|part| part.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/"))
    }

    /// Replaces `src/generated/` by `generated`: writes changed files, removes stale ones.
    fn write(
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

    /// Rewrites cornucopia's crate (its `src/`) into the files of `src/generated/`.
    fn postprocess(src: &Path, hash: &str) -> Result<BTreeMap<String, String>, String> {
        let mut crate_files = BTreeMap::new();
        for path in rust_files(src)? {
            let text = fs::read_to_string(&path)
                .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
            let file = syn::parse_file(&text)
                .map_err(|error| format!("cannot parse {}: {error}", path.display()))?;
            crate_files.insert(relative(src, &path)?, file);
        }
        let expected = [
            "lib.rs",
            "queries.rs",
            "client.rs",
            "client/async_.rs",
            "client/async_/generic_client.rs",
            "utils.rs",
            "domain.rs",
            "array_iterator.rs",
            "type_traits.rs",
        ];
        for name in expected {
            if !crate_files.contains_key(name) {
                return Err(format!(
                    "{CORNUCOPIA} wrote no src/{name}: its output layout changed, update build.rs"
                ));
            }
        }
        // Only the deadpool feature of the generated crate uses this file.
        crate_files.remove("client/async_/deadpool.rs");
        // Custom PostgreSQL types would live here; the core tables use none.
        let drop_types = crate_files
            .get("types.rs")
            .is_some_and(|types| types.items.is_empty());
        if drop_types {
            crate_files.remove("types.rs");
        }
        // Array columns are read through this iterator, whose `unwrap`s would panic on a
        // malformed value; the core tables have no array column, so it goes when unused.
        let drop_arrays = !crate_files.iter().any(|(name, file)| {
            name != "array_iterator.rs"
                && name != "lib.rs"
                && prettyplease::unparse(file).contains("ArrayIterator")
        });
        if drop_arrays {
            crate_files.remove("array_iterator.rs");
        }

        let mut out = BTreeMap::new();
        for (name, mut file) in crate_files {
            resolve_cfgs(&mut file.items);
            PathRewriter.visit_file_mut(&mut file);
            let target = match name.as_str() {
                "lib.rs" => {
                    if drop_types {
                        file.items.retain(|item| !is_mod_named(item, "types"));
                    }
                    if drop_arrays {
                        file.items.retain(|item| {
                            !is_mod_named(item, "array_iterator")
                                && !is_use_of(item, "array_iterator")
                        });
                    }
                    document_root(&mut file);
                    "mod.rs".to_owned()
                }
                "queries.rs" => {
                    // cornucopia collects these from a HashSet: sort them.
                    file.items.sort_by_key(|item| match item {
                        Item::Mod(module) => module.ident.to_string(),
                        _ => String::new(),
                    });
                    document_query_modules(&mut file);
                    name
                }
                _ if name.starts_with("queries/") => {
                    document_query_file(&mut file, &name)?;
                    name
                }
                _ => {
                    // cornucopia's runtime support: documented upstream only in part.
                    file.attrs.push(parse_quote!(#![allow(missing_docs)]));
                    name
                }
            };
            file.attrs
                .insert(0, parse_quote!(#![cfg_attr(rustfmt, rustfmt_skip)]));
            let header = if target == "mod.rs" {
                format!(
                    "// @generated {HASH_MARKER}{hash} (migrations/, queries/) by build.rs with \
                     {CORNUCOPIA}.\n// Do not edit: change migrations/ or queries/, then run \
                     {REGENERATE}\n\n"
                )
            } else {
                format!(
                    "// @generated by build.rs with {CORNUCOPIA} from migrations/ and queries/.\n\
                     // Do not edit: change migrations/ or queries/, then run {REGENERATE}\n\n"
                )
            };
            out.insert(target, format!("{header}{}", prettyplease::unparse(&file)));
        }
        Ok(out)
    }

    fn is_mod_named(item: &Item, name: &str) -> bool {
        matches!(item, Item::Mod(module) if module.ident == name)
    }

    /// `use <module>::…;`, with or without a visibility.
    fn is_use_of(item: &Item, module: &str) -> bool {
        matches!(item, Item::Use(used) if matches!(&used.tree, syn::UseTree::Path(path) if path.ident == module))
    }

    /// Keeps what the generated crate compiles with tokio-postgres and without deadpool (its
    /// `wasm-async` configuration), and drops the `cfg` attributes themselves.
    fn resolve_cfgs(items: &mut Vec<Item>) {
        items.retain_mut(|item| {
            let Some(attrs) = item_attrs(item) else {
                return true;
            };
            let mut keep = true;
            attrs.retain(|attr| {
                if !attr.path().is_ident("cfg") {
                    return true;
                }
                match attr.parse_args::<Meta>() {
                    Ok(predicate) => keep &= cfg_holds(&predicate),
                    Err(_) => return true,
                }
                false
            });
            if let Item::Mod(module) = item {
                if let Some((_, items)) = &mut module.content {
                    resolve_cfgs(items);
                }
            }
            keep
        });
    }

    fn cfg_holds(predicate: &Meta) -> bool {
        match predicate {
            Meta::NameValue(pair) if pair.path.is_ident("feature") => matches!(
                &pair.value,
                syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(name), .. })
                    if name.value() == "wasm-async"
            ),
            Meta::List(list) => {
                let nested = list
                    .parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)
                    .unwrap_or_default();
                if list.path.is_ident("any") {
                    nested.iter().any(cfg_holds)
                } else if list.path.is_ident("all") {
                    nested.iter().all(cfg_holds)
                } else if list.path.is_ident("not") {
                    !nested.iter().all(cfg_holds)
                } else {
                    false
                }
            }
            _ => false,
        }
    }

    fn item_attrs(item: &mut Item) -> Option<&mut Vec<Attribute>> {
        Some(match item {
            Item::Const(item) => &mut item.attrs,
            Item::Enum(item) => &mut item.attrs,
            Item::Fn(item) => &mut item.attrs,
            Item::Impl(item) => &mut item.attrs,
            Item::Mod(item) => &mut item.attrs,
            Item::Static(item) => &mut item.attrs,
            Item::Struct(item) => &mut item.attrs,
            Item::Trait(item) => &mut item.attrs,
            Item::Type(item) => &mut item.attrs,
            Item::Use(item) => &mut item.attrs,
            _ => return None,
        })
    }

    /// `crate::x` → `crate::generated::x`; `futures::x` → `futures_util::x` (this crate
    /// depends on futures-util, which re-exports every item the generated code names).
    struct PathRewriter;

    impl VisitMut for PathRewriter {
        fn visit_path_mut(&mut self, path: &mut syn::Path) {
            if path.leading_colon.is_none() {
                let first = path
                    .segments
                    .first()
                    .map(|segment| segment.ident.to_string());
                match first.as_deref() {
                    Some("crate") if path.segments.len() > 1 => {
                        path.segments.insert(1, parse_quote!(generated));
                    }
                    Some("futures") => {
                        if let Some(segment) = path.segments.first_mut() {
                            segment.ident = parse_quote!(futures_util);
                        }
                    }
                    _ => {}
                }
            }
            visit_mut::visit_path_mut(self, path);
        }

        fn visit_use_tree_mut(&mut self, tree: &mut syn::UseTree) {
            if let syn::UseTree::Path(path) = tree {
                if path.ident == "crate" {
                    let rest = (*path.tree).clone();
                    *path.tree = parse_quote!(generated::#rest);
                    return;
                }
                if path.ident == "futures" {
                    path.ident = parse_quote!(futures_util);
                }
            } else if let syn::UseTree::Group(group) = tree {
                for tree in &mut group.items {
                    if let syn::UseTree::Name(name) = tree {
                        if name.ident == "futures" {
                            name.ident = parse_quote!(futures_util);
                        }
                    }
                }
            }
            visit_mut::visit_use_tree_mut(self, tree);
        }

        fn visit_visibility_mut(&mut self, _: &mut syn::Visibility) {
            // `pub(crate)` stays crate-wide.
        }
    }

    fn has_doc(attrs: &[Attribute]) -> bool {
        attrs.iter().any(|attr| attr.path().is_ident("doc"))
    }

    fn add_doc(attrs: &mut Vec<Attribute>, text: &str) {
        if !has_doc(attrs) {
            let text = format!(" {text}");
            attrs.insert(0, parse_quote!(#[doc = #text]));
        }
    }

    /// `UserByEmail` → `user_by_email`.
    fn snake_case(camel: &str) -> String {
        let mut snake = String::new();
        for (index, character) in camel.chars().enumerate() {
            if character.is_ascii_uppercase() {
                if index > 0 {
                    snake.push('_');
                }
                snake.push(character.to_ascii_lowercase());
            } else {
                snake.push(character);
            }
        }
        snake
    }

    /// The last path segment of a type such as `UserByIdStmt`.
    fn type_name(ty: &syn::Type) -> Option<String> {
        match ty {
            syn::Type::Path(path) => path
                .path
                .segments
                .last()
                .map(|segment| segment.ident.to_string()),
            _ => None,
        }
    }

    /// The module docs and crate-wide allowances of `src/generated/mod.rs`.
    fn document_root(file: &mut File) {
        let docs = [
            " Typed statements for the core tables: cornucopia's output for `queries/`, checked",
            " against the schema of `migrations/`, rewritten into this module by `build.rs`.",
            "",
            " Each function of [`queries`](crate::generated::queries) returns a statement",
            " handle: `prepare` it once per connection, then `bind` its parameters and run it",
            " with `one`, `opt`, `all` or `iter` on a `tokio_postgres::Client` or `Transaction`",
            " (see [`GenericClient`](crate::generated::client::GenericClient)).",
        ];
        for line in docs.iter().rev() {
            file.attrs.insert(0, parse_quote!(#![doc = #line]));
        }
        file.attrs.push(parse_quote!(#![allow(
            clippy::all,
            clippy::pedantic,
            clippy::unwrap_used,
            clippy::expect_used,
            clippy::panic
        )]));
        for item in &mut file.items {
            if let Item::Mod(module) = item {
                match module.ident.to_string().as_str() {
                    "queries" => add_doc(&mut module.attrs, "One module per file of `queries/`."),
                    "client" => add_doc(
                        &mut module.attrs,
                        "Cornucopia's client layer: [`GenericClient`](client::GenericClient) \
                         over `tokio_postgres::Client` and `Transaction`, and the helpers the \
                         statements run through.",
                    ),
                    _ => {}
                }
            }
        }
    }

    fn document_query_modules(file: &mut File) {
        for item in &mut file.items {
            if let Item::Mod(module) = item {
                let doc = format!("The statements of `queries/{}.sql`.", module.ident);
                add_doc(&mut module.attrs, &doc);
            }
        }
    }

    /// Documents what cornucopia leaves undocumented in a query module; the query functions
    /// and row types must already carry the `---` and `--#` docs of the `.sql` file.
    fn document_query_file(file: &mut File, name: &str) -> Result<(), String> {
        let rows = file
            .items
            .iter()
            .filter_map(|item| match item {
                Item::Struct(row) if row.fields.iter().all(|field| field.ident.is_some()) => {
                    let ident = row.ident.to_string();
                    (!ident.ends_with("Borrowed")
                        && !ident.ends_with("Query")
                        && !ident.ends_with("Params"))
                    .then_some(ident)
                }
                _ => None,
            })
            .collect::<Vec<_>>();
        for item in &mut file.items {
            match item {
                Item::Fn(function) if !has_doc(&function.attrs) => {
                    return Err(format!(
                        "queries/{}: `{}` has no `---` doc line",
                        name.trim_start_matches("queries/").replace(".rs", ".sql"),
                        function.sig.ident
                    ));
                }
                Item::Struct(structure) => {
                    let ident = structure.ident.to_string();
                    if let Some(row) = ident.strip_suffix("Borrowed") {
                        add_doc(
                            &mut structure.attrs,
                            &format!(
                                "[`{row}`] borrowing its text columns from the \
                                 `tokio_postgres::Row`; converts into [`{row}`]."
                            ),
                        );
                    } else if ident.ends_with("Stmt") {
                        add_doc(
                            &mut structure.attrs,
                            "A statement: its SQL text and, once prepared, its \
                             `tokio_postgres::Statement`.",
                        );
                    } else if ident.ends_with("Query") {
                        add_doc(
                            &mut structure.attrs,
                            "A statement with its parameters bound; nothing runs until `one`, \
                             `opt`, `all` or `iter` is awaited.",
                        );
                    } else if let Some(query) = ident.strip_suffix("Params") {
                        add_doc(
                            &mut structure.attrs,
                            &format!(
                                "The parameters of [`{}`] as one struct, for \
                                 [`Params`](crate::generated::client::Params).",
                                snake_case(query)
                            ),
                        );
                    } else if rows.contains(&ident) && !has_doc(&structure.attrs) {
                        return Err(format!(
                            "queries/{}: row type `{ident}` has no `--# doc = \"...\"` line \
                             under its `--:` declaration",
                            name.trim_start_matches("queries/").replace(".rs", ".sql")
                        ));
                    }
                    let kind = if ident.ends_with("Params") {
                        "Parameter"
                    } else {
                        "Column"
                    };
                    for field in &mut structure.fields {
                        if let (Some(name), syn::Visibility::Public(_)) = (&field.ident, &field.vis)
                        {
                            let doc = format!("{kind} `{name}`.");
                            add_doc(&mut field.attrs, &doc);
                        }
                    }
                }
                Item::Impl(block) if block.trait_.is_none() => {
                    if type_name(&block.self_ty).is_some_and(|name| name.ends_with("Stmt")) {
                        block.items.push(parse_quote! {
                            /// The SQL text, with `$n` placeholders in the order of `bind`.
                            pub fn sql(&self) -> &'static str {
                                self.0
                            }
                        });
                        block.items.push(parse_quote! {
                            /// The prepared statement, once [`prepare`](Self::prepare) ran.
                            pub fn statement(&self) -> Option<&tokio_postgres::Statement> {
                                self.1.as_ref()
                            }
                        });
                    }
                    for member in &mut block.items {
                        if let syn::ImplItem::Fn(method) = member {
                            let doc = match method.sig.ident.to_string().as_str() {
                                "prepare" => {
                                    "Prepares the statement on `client` (one round trip) and \
                                     keeps it, so that every later run skips the parse."
                                }
                                "bind" => {
                                    "Binds the parameters, in the order of the statement's \
                                     placeholders."
                                }
                                "map" => "Maps every row with `mapper`.",
                                "one" => {
                                    "Runs the statement; exactly one row is expected (none is \
                                     an error)."
                                }
                                "opt" => {
                                    "Runs the statement; at most one row is expected (more is \
                                     an error)."
                                }
                                "all" => "Runs the statement and collects every row.",
                                "iter" => "Runs the statement and streams its rows.",
                                _ => continue,
                            };
                            add_doc(&mut method.attrs, doc);
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}
