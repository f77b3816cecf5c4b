#![no_main]
libfuzzer_sys::fuzz_target!(
    init: cosmicai_engine::fuzz::only_escaping_panics_crash(),
    |data: &[u8]| cosmicai_engine::fuzz::catalog_csv(data)
);
