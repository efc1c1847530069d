//! Compile-fail tests: each file under `tests/ui/` holds one mistake, and its `.stderr` is the
//! error the user sees. Regenerate with `TRYBUILD=overwrite cargo test -p fdrpc-ui-tests`
//! after a compiler upgrade, then review the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*/*.rs");
}
