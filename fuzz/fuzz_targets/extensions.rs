//! `ringsocket::fuzzing::extensions` over arbitrary bytes (see its docs for the invariants).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringsocket::fuzzing::extensions(data));
