#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cosmicai_engine::fuzz::weights::<burn::backend::NdArray<f32>>(data));
