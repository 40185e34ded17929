#!/usr/bin/env python3
"""Documents the library with rustdoc, warnings denied, against dependencies already built.

`RUSTDOCFLAGS="-D warnings" cargo doc --no-deps` is the check (docs.rs builds the docs the same
way), but cargo documents a crate against *check* builds of its dependencies, which share
nothing with the test build: on a clean clone that is every dependency compiled a second time
(about a minute on a two-core machine). This script runs the same rustdoc on the same crate
root with the same crate name, edition and lints, and gives it the dependencies the test build
has just compiled. It uses documented interfaces only:

- `cargo metadata` for the library's normal dependencies (their extern names and package ids);
- cargo's JSON messages (`--message-format=json`, the file given as the first argument) for the
  files each package's library was compiled to;
- rustdoc's command line (`--extern`, `-L dependency=`, `-D warnings`).

Usage: rustdoc.py <cargo JSON messages of the test build>. Exits non-zero when rustdoc does
(a broken intra-doc link, an undocumented public item, any other warning). The dependencies
are the test build's, so dev-dependency features are unified into them (e.g. tokio's "full");
that changes what exists in them, never whether this crate's links resolve.
"""

import json
import os
import subprocess
import sys


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: rustdoc.py <cargo JSON messages>", file=sys.stderr)
        return 2
    host = next(
        line.split(":", 1)[1].strip()
        for line in subprocess.run(
            ["rustc", "-vV"], check=True, capture_output=True, text=True
        ).stdout.splitlines()
        if line.startswith("host:")
    )
    metadata = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--filter-platform", host],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    root_id = metadata["resolve"]["root"]
    package = next(p for p in metadata["packages"] if p["id"] == root_id)
    library = next(t for t in package["targets"] if "lib" in t["kind"])
    node = next(n for n in metadata["resolve"]["nodes"] if n["id"] == root_id)

    # Every library file the build produced, by package id (a package has one library).
    libraries = {}
    deps_dir = None
    with open(sys.argv[1], encoding="utf-8") as messages:
        for line in messages:
            if not line.startswith("{"):
                continue
            message = json.loads(line)
            if message.get("reason") != "compiler-artifact":
                continue
            kinds = message["target"]["kind"]
            if not any(kind in ("lib", "rlib", "proc-macro") for kind in kinds):
                continue
            files = message["filenames"]
            wanted = [f for f in files if f.endswith((".rlib", ".rmeta", ".so"))]
            if wanted:
                libraries[message["package_id"]] = wanted[0]
                if message["package_id"] != root_id:
                    deps_dir = os.path.dirname(wanted[0])

    command = [
        "rustdoc",
        "--edition",
        package["edition"],
        "--crate-type",
        "lib",
        "--crate-name",
        library["name"].replace("-", "_"),
        "--crate-version",
        package["version"],
        library["src_path"],
        "-o",
        os.path.join(metadata["target_directory"], "doc"),
        "-D",
        "warnings",
    ]
    # Cargo.toml's [lints.rust] (unsafe_code = "forbid") is also an attribute of src/lib.rs,
    # and lints do not change what rustdoc reports beyond that.
    if deps_dir is None:
        print("rustdoc.py: no dependency artifacts in the JSON messages", file=sys.stderr)
        return 2
    command += ["-L", f"dependency={deps_dir}"]
    missing = []
    for dep in node["deps"]:
        if not any(kind["kind"] is None for kind in dep["dep_kinds"]):
            continue  # a dev- or build-dependency: not visible to the library
        path = libraries.get(dep["pkg"])
        if path is None:
            missing.append(dep["name"])
            continue
        command += ["--extern", f"{dep['name']}={path}"]
    if missing:
        print(f"rustdoc.py: not built: {', '.join(missing)}", file=sys.stderr)
        return 2
    print(" ".join(command[:9]) + " … -D warnings", flush=True)
    return subprocess.run(command, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
