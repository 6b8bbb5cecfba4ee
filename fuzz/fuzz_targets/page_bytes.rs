//! Fuzz target `page_bytes`: see `larch::testing::fuzz::page_bytes`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    larch::testing::fuzz::page_bytes(data);
});
