//! The client API guide shows `core/examples/check_license.rs` in full: keep the two equal,
//! so that the guide's complete example is the one CI builds.

#[test]
fn the_guides_complete_example_is_the_example_file() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let guide = std::fs::read_to_string(format!("{root}/docs/client-api.md")).expect("guide");
    let file =
        std::fs::read_to_string(format!("{root}/core/examples/check_license.rs")).expect("example");
    let start = "<!-- example: core/examples/check_license.rs -->\n```rust\n";
    let at = guide.find(start).expect("the guide marks the example") + start.len();
    let len = guide[at..]
        .find("```\n<!-- end example -->")
        .expect("the end marker");
    assert_eq!(
        &guide[at..at + len],
        file,
        "docs/client-api.md's copy of the example differs from the file"
    );
}
