//! Fuzz target `open_bytes`: see `larch::testing::fuzz::open_bytes`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    larch::testing::fuzz::open_bytes(data);
});
