//! Fuzz target `meta_pages`: see `larch::testing::fuzz::meta_pages`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    larch::testing::fuzz::meta_pages(data);
});
