//! The README's `rust` blocks compile as written: each stands, line for line, in
//! `examples/readme.rs`, which `cargo test` builds.

/// Each line trimmed, blank lines dropped.
fn normalized(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_rust_block_of_the_readme_is_compiled_by_the_readme_example() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let example =
        normalized(&std::fs::read_to_string(format!("{root}/examples/readme.rs")).unwrap());
    let blocks: Vec<&str> = readme
        .split("```rust\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap())
        .collect();
    assert!(blocks.len() >= 4, "{} rust blocks", blocks.len());
    for block in blocks {
        assert!(
            example.contains(&normalized(block)),
            "README block not in examples/readme.rs (update both):\n{block}"
        );
    }
}
