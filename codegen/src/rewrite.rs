//! How cornucopia's output becomes `src/generated/`. cornucopia writes a crate of its own
//! (a `lib.rs`, a runtime and one module per `.sql` file); the adapter needs a module of its
//! crate, public API held to its rules. Each pass exists for one difference between the two;
//! none changes what a statement sends or how a row is read.
//!
//! - **Files** ([`LAYOUT`]): the runtime files the statements use are kept, the deadpool
//!   client (compiled only by the generated crate's `deadpool` feature) goes. A file cornucopia
//!   adds or stops writing fails the run, so that a new cornucopia cannot slip through.
//! - **Runtime items** ([`RUNTIME_ITEMS`], [`filter_runtime_items`], [`filter_uses`]): the
//!   runtime becomes part of this crate's public API, so only what the statements' signatures
//!   show stays public (`GenericClient`, `StringSql`); the helpers the statements call become
//!   `pub(crate)`; items for types the core tables do not use go (among them
//!   `ArrayIterator`, whose `unwrap`s would panic on a malformed value, against the crate's
//!   no-panic rule). A statement that starts to need a dropped item fails the run.
//! - **Paths** ([`PathRewriter`]): `crate::x` becomes `crate::generated::x` (a module, not a
//!   crate root) and `futures::x` becomes `futures_util::x` (the adapter depends on
//!   futures-util only).
//! - **`cfg`s** ([`resolve_cfgs`]): the generated crate's features do not exist here; the
//!   items of the configuration this crate compiles (tokio-postgres, no deadpool) are kept
//!   without their `cfg` attributes, so no `unexpected_cfgs` warning and no dead branch.
//! - **Root** ([`postprocess`]'s `Fate::Root`): `lib.rs` becomes `mod.rs` without its
//!   re-exports of cornucopia's dependencies (`tokio_postgres`, `fallible_iterator`), which
//!   would become public names of this crate.
//! - **Order** (`Fate::QueryIndex`): cornucopia lists the query modules from a `HashSet`;
//!   they are sorted so that the output, and its fingerprint, is the same on every run.
//! - **`*Params`** ([`document_query_file`]): the structs and impls for binding from one
//!   struct go; the adapter binds positionally, and they need the dropped `Params` trait.
//! - **Documentation** ([`document_root`], [`document_query_modules`],
//!   [`document_query_file`]): the crate denies missing docs and these items are public, so
//!   each gets one; each statement function shows its SQL as written in `queries/`.
//! - **Accessors** (`sql`, `statement` on each statement handle): the adapter reads a
//!   handle's SQL text and its prepared statement; cornucopia keeps both private.
//! - **Printing** ([`render`]): prettyplease and `rustfmt_skip`, never the machine's rustfmt,
//!   so that the bytes, and the fingerprint `build.rs` checks, do not depend on the machine.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use syn::punctuated::Punctuated;
use syn::visit_mut::{self, VisitMut};
use syn::{parse_quote, Attribute, File, Item, Meta, Token, UseTree};

use crate::fingerprint::{files_with_extension, relative, REGENERATE};

/// The cornucopia version whose output layout ([`LAYOUT`], [`RUNTIME_ITEMS`]) this
/// post-processing knows.
pub(crate) const CORNUCOPIA: &str = "cornucopia 1.0.1";
/// The extension of Rust files.
const RUST: &str = "rs";
/// The extension of the statement files.
const SQL: &str = "sql";

/// What becomes of a file of cornucopia's output.
#[derive(Clone, Copy, PartialEq)]
enum Fate {
    /// The generated crate's `lib.rs`: becomes `mod.rs`, documented, its `mod` and `use`
    /// items filtered like the runtime files'.
    Root,
    /// `queries.rs`, the index of the query modules: sorted and documented.
    QueryIndex,
    /// Runtime support: every named item is kept public, made crate-private or dropped as
    /// [`RUNTIME_ITEMS`] says; the file goes when nothing but imports is left of it.
    Runtime,
    /// Left out.
    Dropped,
}

/// cornucopia 1.0.1's output layout: every file of the `src/` it writes except the query
/// modules (`queries/<file>.rs`, see [`QUERY_MODULES`]), and what becomes of it.
const LAYOUT: [(&str, Fate); 11] = [
    ("lib.rs", Fate::Root),
    ("queries.rs", Fate::QueryIndex),
    ("client.rs", Fate::Runtime),
    ("client/async_.rs", Fate::Runtime),
    ("client/async_/generic_client.rs", Fate::Runtime),
    // Only the generated crate's `deadpool` feature compiles it.
    ("client/async_/deadpool.rs", Fate::Dropped),
    ("utils.rs", Fate::Runtime),
    ("type_traits.rs", Fate::Runtime),
    ("domain.rs", Fate::Runtime),
    ("array_iterator.rs", Fate::Runtime),
    // Custom PostgreSQL types (enums, composites); the core tables use none.
    ("types.rs", Fate::Runtime),
];

/// The directory of the query modules in cornucopia's output (and in `src/generated/`).
const QUERY_MODULES: &str = "queries/";

/// The file of cornucopia's output that becomes `src/generated/mod.rs`.
const ROOT_TARGET: &str = "mod.rs";

/// What becomes of an item of the runtime files (and of its impls and imports).
enum Role {
    /// Stays public, with this documentation instead of cornucopia's.
    Public(&'static str),
    /// Becomes `pub(crate)`: the query modules call it, an app does not.
    Crate,
    /// Left out: the statements of `queries/` do not need it. A query module that names it
    /// fails the regeneration (give it another role here).
    Dropped,
}

/// Every named item of cornucopia's runtime files, by name.
const RUNTIME_ITEMS: [(&str, Role); 16] = [
    ("GenericClient", Role::Public(GENERIC_CLIENT_DOC)),
    ("StringSql", Role::Public(STRING_SQL_DOC)),
    ("one", Role::Crate),
    ("opt", Role::Crate),
    ("raw", Role::Crate),
    ("slice_iter", Role::Crate),
    // `stmt.params(&client, &XParams { .. })`: `bind` with one struct for its arguments.
    ("Params", Role::Dropped),
    // Parameters of types the core tables do not use: bytea, arrays, domains.
    ("BytesSql", Role::Dropped),
    ("ArraySql", Role::Dropped),
    ("IterSql", Role::Dropped),
    ("Domain", Role::Dropped),
    ("DomainArray", Role::Dropped),
    ("escape_domain", Role::Dropped),
    ("escape_domain_to_sql", Role::Dropped),
    ("downcast", Role::Dropped),
    // Array columns; its `unwrap`s would panic on a malformed value.
    ("ArrayIterator", Role::Dropped),
];

/// The documentation of the client trait the statements take.
const GENERIC_CLIENT_DOC: &str = "\
The client a statement runs on: `tokio_postgres::Client` and `Transaction` implement it, and so
do pooled clients through them (a `deadpool_postgres::Object` or `Transaction` dereferences to
one: pass `&**object`).

Statement handles take it in `prepare` and `bind`; the queries `bind` returns call its methods.";

/// The documentation of the bound of `bind`'s text parameters.
const STRING_SQL_DOC: &str = "\
A text parameter of `bind`: `String`, `&str`, `Cow<str>`, `Box<str>`, or a reference to one.";

/// The documentation of the methods of `GenericClient`, by name.
const GENERIC_CLIENT_METHODS: [(&str, &str); 7] = [
    (
        "stmt_cache",
        "Whether a statement handle that was not prepared runs through \
         [`prepare`](GenericClient::prepare) (for a client that caches prepared statements) \
         rather than with its SQL text: `false`, the default.",
    ),
    (
        "prepare",
        "Prepares `query` (as `tokio_postgres::Client::prepare`).",
    ),
    (
        "execute",
        "Runs a statement and returns the number of rows it changed (as \
         `tokio_postgres::Client::execute`).",
    ),
    (
        "query_one",
        "Runs a statement that returns exactly one row (as \
         `tokio_postgres::Client::query_one`).",
    ),
    (
        "query_opt",
        "Runs a statement that returns at most one row (as \
         `tokio_postgres::Client::query_opt`).",
    ),
    (
        "query",
        "Runs a statement and collects its rows (as `tokio_postgres::Client::query`).",
    ),
    (
        "query_raw",
        "Runs a statement and streams its rows (as `tokio_postgres::Client::query_raw`).",
    ),
];

fn role(name: &str) -> Option<&'static Role> {
    RUNTIME_ITEMS
        .iter()
        .find(|(item, _)| *item == name)
        .map(|(_, role)| role)
}

fn is_dropped(name: &str) -> bool {
    matches!(role(name), Some(Role::Dropped))
}

/// Rewrites cornucopia's crate (its `src/`) into the files of `src/generated/` (by path
/// relative to it; the root file without its fingerprint line); `queries` is the directory of
/// the `.sql` files it was generated from.
pub(crate) fn postprocess(src: &Path, queries: &Path) -> Result<BTreeMap<String, String>, String> {
    let mut crate_files = BTreeMap::new();
    for path in files_with_extension(src, RUST)? {
        let text = fs::read_to_string(&path)
            .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
        let file = syn::parse_file(&text)
            .map_err(|error| format!("cannot parse {}: {error}", path.display()))?;
        crate_files.insert(relative(src, &path)?, file);
    }
    for (name, _) in LAYOUT {
        if !crate_files.contains_key(name) {
            return Err(format!(
                "{CORNUCOPIA} wrote no src/{name}: its output layout changed, update LAYOUT \
                 in codegen/src/rewrite.rs"
            ));
        }
    }

    // The query modules first: the runtime files keep what they name.
    let mut out = BTreeMap::new();
    let mut named_by_queries = BTreeSet::new();
    for (name, file) in &mut crate_files {
        let Some(module) = name.strip_prefix(QUERY_MODULES) else {
            continue;
        };
        let module = module.trim_end_matches(&format!(".{RUST}"));
        let sql_path = queries.join(format!("{module}.{SQL}"));
        let sql = fs::read_to_string(&sql_path)
            .map_err(|error| format!("cannot read {}: {error}", sql_path.display()))?;
        resolve_cfgs(&mut file.items);
        PathRewriter.visit_file_mut(file);
        document_query_file(file, module, &source_statements(&sql))?;
        named_by_queries.extend(idents(&file.items));
        out.insert(name.clone(), render(file));
    }
    if let Some(name) = named_by_queries.iter().find(|name| is_dropped(name)) {
        return Err(format!(
            "queries/ now need `{name}` from {CORNUCOPIA}'s runtime, which codegen/ drops: \
             give it a role in RUNTIME_ITEMS"
        ));
    }

    let mut dropped_files = Vec::new();
    let mut runtime = BTreeMap::new();
    for (name, mut file) in crate_files {
        if name.starts_with(QUERY_MODULES) {
            continue;
        }
        let fate = LAYOUT
            .iter()
            .find(|(file, _)| *file == name)
            .map(|(_, fate)| *fate)
            .ok_or_else(|| {
                format!(
                    "{CORNUCOPIA} wrote src/{name}, which LAYOUT in codegen/src/rewrite.rs does not list: \
                     its output layout changed"
                )
            })?;
        resolve_cfgs(&mut file.items);
        PathRewriter.visit_file_mut(&mut file);
        match fate {
            Fate::Dropped => dropped_files.push(name),
            Fate::Runtime => {
                if filter_runtime_items(&mut file, &name)? {
                    runtime.insert(name, file);
                } else {
                    dropped_files.push(name);
                }
            }
            Fate::Root => {
                // Its re-exports of the generated crate's dependencies (`tokio_postgres`,
                // `fallible_iterator`) go: only its own modules' items are re-exported.
                let modules = file
                    .items
                    .iter()
                    .filter_map(|item| match item {
                        Item::Mod(module) => Some(module.ident.to_string()),
                        _ => None,
                    })
                    .collect::<Vec<_>>();
                file.items.retain(|item| match item {
                    Item::Use(import) => {
                        modules.iter().any(|module| is_use_of(item, module))
                            || !matches!(import.vis, syn::Visibility::Public(_))
                    }
                    _ => true,
                });
                filter_uses(&mut file);
                document_root(&mut file);
                runtime.insert(name, file);
            }
            Fate::QueryIndex => {
                // cornucopia collects these from a HashSet: sort them.
                file.items.sort_by_key(|item| match item {
                    Item::Mod(module) => module.ident.to_string(),
                    _ => String::new(),
                });
                document_query_modules(&mut file);
                runtime.insert(name, file);
            }
        }
    }
    // A dropped file's `mod` item and imports go from its parent.
    for dropped in &dropped_files {
        let stem = dropped.trim_end_matches(&format!(".{RUST}"));
        let (parent, module) = match stem.rsplit_once('/') {
            Some((parent, module)) => (format!("{parent}.{RUST}"), module),
            None => ("lib.rs".to_owned(), stem),
        };
        if let Some(file) = runtime.get_mut(&parent) {
            file.items
                .retain(|item| !is_mod_named(item, module) && !is_use_of(item, module));
        }
    }
    for (name, mut file) in runtime {
        let root = LAYOUT.contains(&(name.as_str(), Fate::Root));
        let target = if root { ROOT_TARGET.to_owned() } else { name };
        out.insert(target, render(&mut file));
    }
    Ok(out)
}

/// Prints a file of `src/generated/` with its header.
fn render(file: &mut File) -> String {
    file.attrs
        .insert(0, parse_quote!(#![cfg_attr(rustfmt, rustfmt_skip)]));
    format!(
        "// @generated by codegen/ with {CORNUCOPIA} from migrations/ and queries/.\n\
         // Do not edit: change migrations/ or queries/, then run {REGENERATE}\n\n{}",
        prettyplease::unparse(file)
    )
}

/// Applies [`RUNTIME_ITEMS`] to a runtime file: false when nothing but imports is left.
fn filter_runtime_items(file: &mut File, name: &str) -> Result<bool, String> {
    let mut kept = Vec::new();
    for mut item in std::mem::take(&mut file.items) {
        match &mut item {
            Item::Use(_) | Item::Mod(_) => {}
            Item::Impl(block) => {
                let trait_name = block
                    .trait_
                    .as_ref()
                    .and_then(|(path, _)| path.segments.last())
                    .map(|segment| segment.ident.to_string());
                let self_name = type_name(&block.self_ty);
                if [trait_name, self_name]
                    .iter()
                    .flatten()
                    .any(|n| is_dropped(n))
                {
                    continue;
                }
            }
            _ => {
                let ident = item_ident(&item).ok_or_else(|| {
                    format!(
                        "{CORNUCOPIA} wrote an unnamed item into src/{name}: update \
                         RUNTIME_ITEMS in codegen/src/rewrite.rs"
                    )
                })?;
                match role(&ident) {
                    None => {
                        return Err(format!(
                            "{CORNUCOPIA} wrote `{ident}` into src/{name}, which \
                             RUNTIME_ITEMS in codegen/src/rewrite.rs does not know"
                        ))
                    }
                    Some(Role::Dropped) => continue,
                    Some(Role::Crate) => set_crate_visibility(&mut item),
                    Some(Role::Public(doc)) => {
                        if let Some(attrs) = item_attrs(&mut item) {
                            attrs.retain(|attr| !attr.path().is_ident("doc"));
                            for line in doc.lines().rev() {
                                let line = format!(" {line}");
                                let line = line.trim_end();
                                attrs.insert(0, parse_quote!(#[doc = #line]));
                            }
                        }
                        if let Item::Trait(definition) = &mut item {
                            document_trait_methods(definition.items.iter_mut().filter_map(
                                |member| match member {
                                    syn::TraitItem::Fn(method) => {
                                        Some((method.sig.ident.to_string(), &mut method.attrs))
                                    }
                                    _ => None,
                                },
                            ));
                        }
                    }
                }
            }
        }
        kept.push(item);
    }
    file.items = kept;
    filter_uses(file);
    Ok(file.items.iter().any(|item| !matches!(item, Item::Use(_))))
}

/// Documents the methods of `GenericClient` from [`GENERIC_CLIENT_METHODS`].
fn document_trait_methods<'a>(methods: impl Iterator<Item = (String, &'a mut Vec<Attribute>)>) {
    for (name, attrs) in methods {
        if let Some((_, doc)) = GENERIC_CLIENT_METHODS
            .iter()
            .find(|(method, _)| *method == name)
        {
            add_doc(attrs, doc);
        }
    }
}

/// The name an item defines (not for `use`, `impl` and macro items).
fn item_ident(item: &Item) -> Option<String> {
    Some(
        match item {
            Item::Const(item) => &item.ident,
            Item::Enum(item) => &item.ident,
            Item::Fn(item) => &item.sig.ident,
            Item::Mod(item) => &item.ident,
            Item::Static(item) => &item.ident,
            Item::Struct(item) => &item.ident,
            Item::Trait(item) => &item.ident,
            Item::Type(item) => &item.ident,
            _ => return None,
        }
        .to_string(),
    )
}

/// `pub` → `pub(crate)`.
fn set_crate_visibility(item: &mut Item) {
    let visibility = match item {
        Item::Const(item) => &mut item.vis,
        Item::Enum(item) => &mut item.vis,
        Item::Fn(item) => &mut item.vis,
        Item::Static(item) => &mut item.vis,
        Item::Struct(item) => &mut item.vis,
        Item::Trait(item) => &mut item.vis,
        Item::Type(item) => &mut item.vis,
        _ => return,
    };
    if matches!(visibility, syn::Visibility::Public(_)) {
        *visibility = parse_quote!(pub(crate));
    }
}

/// Every identifier in `items`.
fn idents(items: &[Item]) -> BTreeSet<String> {
    struct Collect(BTreeSet<String>);
    impl VisitMut for Collect {
        fn visit_ident_mut(&mut self, ident: &mut syn::Ident) {
            self.0.insert(ident.to_string());
        }
    }
    let mut collect = Collect(BTreeSet::new());
    for item in items {
        collect.visit_item_mut(&mut item.clone());
    }
    collect.0
}

/// Drops the imports of [`Role::Dropped`] items, and private imports nothing in the file
/// uses any more; `pub use` of a [`Role::Crate`] item becomes `pub(crate) use`.
fn filter_uses(file: &mut File) {
    let used = idents(
        &file
            .items
            .iter()
            .filter(|item| !matches!(item, Item::Use(_)))
            .cloned()
            .collect::<Vec<_>>(),
    );
    file.items.retain_mut(|item| {
        let Item::Use(import) = item else {
            return true;
        };
        let private = matches!(import.vis, syn::Visibility::Inherited);
        let keep = |name: &str| !is_dropped(name) && (!private || used.contains(name));
        if !prune_use(&mut import.tree, "", &keep) {
            return false;
        }
        let names = leaves(&import.tree);
        if matches!(import.vis, syn::Visibility::Public(_))
            && !names.is_empty()
            && names
                .iter()
                .all(|name| matches!(role(name), Some(Role::Crate)))
        {
            import.vis = parse_quote!(pub(crate));
        }
        true
    });
}

/// Removes the names of `tree` that `keep` refuses (`self` stands for `parent`); false
/// when nothing is left.
fn prune_use(tree: &mut UseTree, parent: &str, keep: &dyn Fn(&str) -> bool) -> bool {
    match tree {
        UseTree::Path(path) => {
            let parent = path.ident.to_string();
            prune_use(&mut path.tree, &parent, keep)
        }
        UseTree::Name(name) if name.ident == "self" => keep(parent),
        UseTree::Name(name) => keep(&name.ident.to_string()),
        UseTree::Rename(rename) => keep(&rename.rename.to_string()),
        UseTree::Glob(_) => true,
        UseTree::Group(group) => {
            let items = std::mem::take(&mut group.items);
            group.items = items
                .into_iter()
                .filter_map(|mut item| prune_use(&mut item, parent, keep).then_some(item))
                .collect();
            let single = group.items.len() == 1
                && !matches!(group.items.first(), Some(UseTree::Name(name)) if name.ident == "self");
            if single {
                if let Some(only) = group.items.pop() {
                    *tree = only;
                }
                return true;
            }
            !group.items.is_empty()
        }
    }
}

/// The names a `use` tree brings into scope (globs excluded).
fn leaves(tree: &UseTree) -> Vec<String> {
    match tree {
        UseTree::Path(path) => leaves(&path.tree),
        UseTree::Name(name) => vec![name.ident.to_string()],
        UseTree::Rename(rename) => vec![rename.rename.to_string()],
        UseTree::Glob(_) => Vec::new(),
        UseTree::Group(group) => group.items.iter().flat_map(leaves).collect(),
    }
}

/// The statements of a file of `queries/` as written there, by name, each `:name`
/// parameter replaced by the `$n` cornucopia gives it (numbered by first appearance).
fn source_statements(sql: &str) -> BTreeMap<String, String> {
    let mut statements = BTreeMap::new();
    let mut lines = sql.lines();
    while let Some(line) = lines.next() {
        let Some(annotation) = line.strip_prefix("--!") else {
            continue;
        };
        let name = annotation
            .trim_start()
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .next()
            .unwrap_or_default()
            .to_owned();
        let mut text = Vec::new();
        for line in lines.by_ref() {
            let line = line.trim_end();
            if text.is_empty() && (line.is_empty() || line.starts_with("--")) {
                continue;
            }
            let last = line.ends_with(';');
            text.push(line.trim_end_matches(';'));
            if last {
                break;
            }
        }
        statements.insert(name, numbered(&text.join("\n")));
    }
    statements
}

/// `:name` parameters → `$n`, numbered by first appearance; casts (`::`), string literals
/// and quoted identifiers stay.
fn numbered(text: &str) -> String {
    let chars = text.chars().collect::<Vec<_>>();
    let mut names: Vec<String> = Vec::new();
    let mut out = String::new();
    let mut quote = None;
    let mut index = 0;
    while let Some(&character) = chars.get(index) {
        let previous = index.checked_sub(1).and_then(|at| chars.get(at)).copied();
        let next = chars.get(index + 1).copied();
        match quote {
            Some(open) if character == open => quote = None,
            None if character == '\'' || character == '"' => quote = Some(character),
            _ => {}
        }
        let parameter = quote.is_none()
            && character == ':'
            && previous != Some(':')
            && next.is_some_and(|next| next.is_ascii_lowercase() || next == '_');
        if parameter {
            let name = chars
                .get(index + 1..)
                .unwrap_or_default()
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                .collect::<String>();
            let number = match names.iter().position(|known| *known == name) {
                Some(position) => position + 1,
                None => {
                    names.push(name.clone());
                    names.len()
                }
            };
            out.push_str(&format!("${number}"));
            index += 1 + name.chars().count();
            continue;
        }
        out.push(character);
        index += 1;
    }
    out
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

/// The module docs and lint allowances of `src/generated/mod.rs`, and the docs of its
/// modules.
fn document_root(file: &mut File) {
    let docs = [
        " Typed statements for the core tables: cornucopia's output for `queries/`, checked",
        " against the schema of `migrations/` and committed; `codegen/` regenerates it and",
        " every build checks that it is current (`build.rs`).",
        "",
        " Each function of [`queries`] returns a statement handle: `prepare` it once per",
        " connection, then `bind` its parameters and run it with `one`, `opt`, `all` or",
        " `iter` on any [`GenericClient`]: a `tokio_postgres::Client` or `Transaction`.",
        "",
        " [`GenericClient`]: client::GenericClient",
    ];
    for line in docs.iter().rev() {
        file.attrs.insert(0, parse_quote!(#![doc = #line]));
    }
    file.attrs
        .push(parse_quote!(#![allow(clippy::all, clippy::pedantic)]));
    for item in &mut file.items {
        if let Item::Mod(module) = item {
            match module.ident.to_string().as_str() {
                "queries" => add_doc(
                    &mut module.attrs,
                    "The statements: one module per file of `queries/`.",
                ),
                "client" => add_doc(
                    &mut module.attrs,
                    "The client trait the statements take: \
                     [`GenericClient`](client::GenericClient).",
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

/// Rewrites a query module: drops the `*Params` structs and their `Params` impls,
/// appends its SQL to each statement function's `---` doc (from `statements`, the
/// statements of the module's `.sql` file by name), and documents what cornucopia leaves
/// undocumented; the row types must carry their `--#` docs.
fn document_query_file(
    file: &mut File,
    module: &str,
    statements: &BTreeMap<String, String>,
) -> Result<(), String> {
    let sql_file = format!("queries/{module}.{SQL}");
    file.items.retain(|item| match item {
        Item::Struct(structure) => !structure.ident.to_string().ends_with("Params"),
        Item::Impl(block) => !block.trait_.as_ref().is_some_and(|(path, _)| {
            path.segments
                .last()
                .is_some_and(|segment| segment.ident == "Params")
        }),
        _ => true,
    });
    let rows = file
        .items
        .iter()
        .filter_map(|item| match item {
            Item::Struct(row) if row.fields.iter().all(|field| field.ident.is_some()) => {
                let ident = row.ident.to_string();
                (!ident.ends_with("Borrowed") && !ident.ends_with("Query")).then_some(ident)
            }
            _ => None,
        })
        .collect::<Vec<_>>();
    for item in &mut file.items {
        match item {
            Item::Fn(function) => {
                let name = function.sig.ident.to_string();
                if !has_doc(&function.attrs) {
                    return Err(format!("{sql_file}: `{name}` has no `---` doc line"));
                }
                let text = statement_text(function).ok_or_else(|| {
                    format!(
                        "{CORNUCOPIA} wrote `{name}` of {sql_file} in an unexpected shape: \
                         update codegen/src/rewrite.rs"
                    )
                })?;
                // The statement as written, unless it differs from what cornucopia sends
                // by more than its line breaks and indentation.
                let shown = statements
                    .get(&name)
                    .filter(|source| words(source) == words(&text))
                    .cloned()
                    .unwrap_or(text);
                let mut lines = vec![String::new(), " ```sql".to_owned()];
                lines.extend(shown.lines().map(|line| format!(" {line}")));
                lines.push(" ```".to_owned());
                for line in lines {
                    function.attrs.push(parse_quote!(#[doc = #line]));
                }
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
                } else if let Some(statement) = ident.strip_suffix("Stmt") {
                    add_doc(
                        &mut structure.attrs,
                        &format!(
                            "The handle [`{}`] returns: the statement's SQL text and, once \
                             [prepared](Self::prepare), its `tokio_postgres::Statement`.",
                            snake_case(statement)
                        ),
                    );
                } else if ident.ends_with("Query") {
                    add_doc(
                        &mut structure.attrs,
                        "A statement with its parameters bound; nothing runs until `one`, \
                         `opt`, `all` or `iter` is awaited.",
                    );
                } else if rows.contains(&ident) && !has_doc(&structure.attrs) {
                    return Err(format!(
                        "{sql_file}: row type `{ident}` has no `--# doc = \"...\"` line \
                         under its `--:` declaration"
                    ));
                }
                for field in &mut structure.fields {
                    if let (Some(name), syn::Visibility::Public(_)) = (&field.ident, &field.vis) {
                        add_doc(&mut field.attrs, &format!("Column `{name}`."));
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

/// The SQL text of a statement function: `XStmt("<text>", None)`.
fn statement_text(function: &syn::ItemFn) -> Option<String> {
    let Some(syn::Stmt::Expr(syn::Expr::Call(call), None)) = function.block.stmts.last() else {
        return None;
    };
    match call.args.first() {
        Some(syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(text),
            ..
        })) => Some(text.value()),
        _ => None,
    }
}

/// `text` without its line breaks and indentation.
fn words(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
