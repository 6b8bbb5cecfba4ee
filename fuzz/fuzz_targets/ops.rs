//! Fuzz target `ops`: see `larch::testing::fuzz::ops`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    larch::testing::fuzz::ops(data);
});
