//! Compile-fail tests of fdrpc's macros live in `tests/`.
