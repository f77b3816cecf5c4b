//! The burn AstroMAE matches PyTorch's on the same weights and inputs.
//! Fixture: tests/fixtures/make_astromae_fixture.py (depth 2, narrow MLPs, random
//! weights and BatchNorm statistics, 40x40 inputs cropped to the centre 32x32).

use burn::backend::NdArray;
use burn::prelude::*;
use cosmicai_model::astromae::AstroMae;
use cosmicai_model::astromae::load::config_of;
use cosmicai_model::weights::Weights;
use std::path::PathBuf;

type B = NdArray<f32>;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[test]
fn burn_astromae_matches_pytorch_within_1e_4() {
    let device = Default::default();
    let weights = Weights::open(fixture("astromae_small.safetensors")).unwrap();
    let io = Weights::open(fixture("astromae_small_io.safetensors")).unwrap();
    let model = AstroMae::<B>::from_pytorch(&weights, 3, &device).unwrap();

    let images: Tensor<B, 4> = io.tensor("images", [2, 5, 40, 40], &device).unwrap();
    let magnitudes: Tensor<B, 2> = io.tensor("magnitudes", [2, 5], &device).unwrap();
    let expected: Vec<f32> = io
        .tensor::<B, 2>("redshift", [2, 1], &device)
        .unwrap()
        .into_data()
        .to_vec()
        .unwrap();
    let got: Vec<f32> = model
        .forward(images, magnitudes)
        .into_data()
        .to_vec()
        .unwrap();
    for (g, e) in got.iter().zip(&expected) {
        assert!(
            (g - e).abs() <= 1e-4,
            "burn {got:?} vs PyTorch {expected:?}"
        );
    }
}

#[test]
fn the_weight_file_decides_depth_and_widths() {
    let weights = Weights::open(fixture("astromae_small.safetensors")).unwrap();
    let config = config_of(&weights, 3).unwrap();
    assert_eq!(
        (config.depth, config.dim, config.image, config.patch),
        (2, 24, 32, 4)
    );
    assert_eq!(
        (
            config.branch_width,
            config.magnitude_width,
            config.head_width,
            config.magnitude_layers
        ),
        (48, 32, 40, 3)
    );
}

#[test]
fn missing_or_misshapen_weights_are_named() {
    let bytes = std::fs::read(fixture("astromae_small.safetensors")).unwrap();
    let weights = Weights::from_bytes("small.safetensors", &bytes).unwrap();
    let e = config_of(&weights, 5).unwrap_err().to_string();
    assert!(e.contains("not divisible by 5 heads"), "{e}");

    let io = Weights::open(fixture("astromae_small_io.safetensors")).unwrap();
    let device = Default::default();
    let e = AstroMae::<B>::from_pytorch(&io, 3, &device)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("astromae_small_io.safetensors")
            && e.contains("patch.weight")
            && e.contains("missing"),
        "{e}"
    );
    let e = io
        .tensor::<B, 2>("magnitudes", [5, 2], &device)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("shape [2, 5], expected [5, 2]"), "{e}");
    assert!(Weights::from_bytes("junk", b"not safetensors").is_err());
}

#[test]
fn full_size_astromae_has_the_cai_shape() {
    use cosmicai_model::astromae::AstroMaeConfig;
    let device = Default::default();
    let model = AstroMaeConfig::new().init::<B>(&device);
    assert_eq!(model.vit.blocks.len(), 12);
    let out = model.forward(
        Tensor::zeros([2, 5, 64, 64], &device),
        Tensor::ones([2, 5], &device),
    );
    assert_eq!(out.dims(), [2, 1]);
}
