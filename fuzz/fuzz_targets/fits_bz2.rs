#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cosmicai_engine::fuzz::fits_bz2(data));
