//! Embeds the Swagger UI files of `GET /docs` from the pinned npm package in
//! `docs-ui/` (installed by `scripts/lib.sh`'s `ensure_docs_ui`, or the
//! Dockerfile: `npm ci --ignore-scripts --prefix api-rest/docs-ui`). Without
//! them the build still succeeds, with a warning, and `/docs` answers 503
//! saying how to install them.

use std::path::Path;

const DIST: &str = "docs-ui/node_modules/swagger-ui-dist";
const FILES: [&str; 3] = ["swagger-ui-bundle.js", "swagger-ui.css", "LICENSE"];

fn main() {
    println!("cargo::rerun-if-changed={DIST}/package.json");
    println!("cargo::rerun-if-changed=docs-ui/package-lock.json");
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let mut missing = Vec::new();
    for file in FILES {
        let source = Path::new(DIST).join(file);
        let bytes = std::fs::read(&source).unwrap_or_else(|_| {
            missing.push(file);
            Vec::new()
        });
        std::fs::write(Path::new(&out).join(file), bytes).expect("OUT_DIR is writable");
    }
    if !missing.is_empty() {
        println!(
            "cargo::warning=GET /docs will answer 503: {} not found in api-rest/{DIST}; \
             run `npm ci --ignore-scripts --prefix api-rest/docs-ui` and build again",
            missing.join(", ")
        );
    }
}
