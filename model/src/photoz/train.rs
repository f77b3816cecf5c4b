//! Training PhotoZ with burn's autodiff: AdamW, a one-cycle learning rate,
//! early stopping on the validation loss, deterministic for a given seed.

use super::{FEATURES, PhotoZ, PhotoZConfig, features, pdf};
use burn::module::{AutodiffModule, Param};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

/// Labelled objects: magnitudes, class code (0 GALAXY, 1 STAR, 2 QSO), redshift,
/// and optionally a `[5, CROP, CROP]` cutout for every object (flattened, in order).
#[derive(Debug, Clone, Default)]
pub struct Examples {
    pub magnitudes: Vec<[f32; 5]>,
    pub class: Vec<u8>,
    pub redshift: Vec<f32>,
    pub cutouts: Option<Vec<f32>>,
    /// With cutouts: 1 for the objects that have one, 0 for those whose slot in
    /// `cutouts` is empty (real images cover some objects only); none: every object.
    pub cutout_mask: Option<Vec<f32>>,
}

impl Examples {
    pub fn len(&self) -> usize {
        self.class.len()
    }

    pub fn is_empty(&self) -> bool {
        self.class.is_empty()
    }

    pub fn push(&mut self, magnitudes: [f32; 5], class: u8, redshift: f32) {
        self.magnitudes.push(magnitudes);
        self.class.push(class);
        self.redshift.push(redshift);
    }
}

#[derive(Config, Debug)]
pub struct TrainConfig {
    pub model: PhotoZConfig,
    #[config(default = 40)]
    pub epochs: usize,
    #[config(default = 256)]
    pub batch_size: usize,
    #[config(default = 2e-3)]
    pub learning_rate: f64,
    #[config(default = 1e-4)]
    pub weight_decay: f32,
    /// Weight of the redshift loss (mean |Δ ln(1+z)|) against the class cross-entropy.
    #[config(default = 2.0)]
    pub redshift_weight: f32,
    /// Weight of the p(z) loss (cross-entropy against each redshift spread over
    /// the bins, `pdf::target`), with the distribution head.
    #[config(default = 1.0)]
    pub pdf_weight: f32,
    /// Epochs without a better validation loss before stopping.
    #[config(default = 8)]
    pub patience: usize,
    #[config(default = 42)]
    pub seed: u64,
    /// With cutouts: the chance a training example shows its image, so the model
    /// also learns to work on magnitudes alone.
    #[config(default = 0.5)]
    pub cutout_keep: f64,
}

/// One epoch's figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EpochReport {
    pub epoch: usize,
    pub train_loss: f32,
    pub valid_loss: f32,
    pub valid_class_accuracy: f32,
    /// The same objects shown the cutouts they have (every object with
    /// `--synthetic-cutouts`; with `--real-cutouts` only those with a real one,
    /// so this differs little from the figure above: the card scores those apart).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_class_accuracy_with_cutouts: Option<f32>,
    pub learning_rate: f64,
}

/// The trained model (the epoch with the best validation loss) and every epoch's report.
pub struct Trained<B: Backend> {
    pub model: PhotoZ<B>,
    pub best_epoch: usize,
    pub epochs: Vec<EpochReport>,
}

/// One-cycle schedule (PyTorch's defaults): warm up over 30% of the steps from
/// lr/25 to lr, then cosine down to lr/1e4.
fn one_cycle(step: usize, total: usize, max_lr: f64) -> f64 {
    let warm = (0.3 * total as f64).max(1.0);
    let s = step as f64;
    let cos = |from: f64, to: f64, t: f64| {
        to + (from - to) * (1.0 + (std::f64::consts::PI * t).cos()) / 2.0
    };
    if s < warm {
        cos(max_lr / 25.0, max_lr, s / warm)
    } else {
        cos(
            max_lr,
            max_lr / 1e4,
            (s - warm) / (total as f64 - warm).max(1.0),
        )
    }
}

/// SplitMix64: a tiny deterministic generator for shuffling.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn shuffle(&mut self, items: &mut [u32]) {
        for i in (1..items.len()).rev() {
            items.swap(i, (self.next() % (i as u64 + 1)) as usize);
        }
    }
}

/// Examples as tensors on `device`.
struct Batch<B: Backend> {
    magnitudes: Tensor<B, 2>,
    class: Tensor<B, 1, Int>,
    log1p_z: Tensor<B, 1>,
    /// `[N, BINS]` each redshift spread over the bins of p(z).
    pdf_target: Tensor<B, 2>,
    /// Cutouts and the `[N, 1]` mask of those shown to the model.
    cutouts: Option<(Tensor<B, 4>, Tensor<B, 2>)>,
}

fn tensors<B: Backend>(examples: &Examples, with_pdf: bool, device: &B::Device) -> Batch<B> {
    let n = examples.len();
    let mags: Vec<f32> = examples.magnitudes.iter().flatten().copied().collect();
    let class: Vec<i64> = examples.class.iter().map(|&c| i64::from(c)).collect();
    let t: Vec<f32> = examples
        .redshift
        .iter()
        .map(|&z| z.max(-0.99).ln_1p())
        .collect();
    let side = crate::crop::CROP;
    // N x BINS floats: built only for a model with the distribution head.
    let pdf_target: Vec<f32> = match with_pdf {
        true => examples
            .redshift
            .iter()
            .flat_map(|&z| pdf::target(z))
            .collect(),
        false => vec![0.0; n],
    };
    let bins = if with_pdf { pdf::BINS } else { 1 };
    Batch {
        magnitudes: Tensor::from_data(TensorData::new(mags, [n, 5]), device),
        class: Tensor::from_data(TensorData::new(class, [n]), device),
        log1p_z: Tensor::from_data(TensorData::new(t, [n]), device),
        pdf_target: Tensor::from_data(TensorData::new(pdf_target, [n, bins]), device),
        cutouts: examples.cutouts.as_ref().map(|c| {
            let has = match &examples.cutout_mask {
                Some(mask) => Tensor::from_data(TensorData::new(mask.clone(), [n, 1]), device),
                None => Tensor::ones([n, 1], device),
            };
            (
                Tensor::from_data(TensorData::new(c.clone(), [n, 5, side, side]), device),
                has,
            )
        }),
    }
}

fn loss<B: Backend>(model: &PhotoZ<B>, batch: &Batch<B>, config: &TrainConfig) -> Tensor<B, 1> {
    let out = model.forward_with(batch.magnitudes.clone(), batch.cutouts.clone());
    let pdf_loss = out.pdf_logits.map(|logits| {
        let log_p = burn::tensor::activation::log_softmax(logits, 1);
        (batch.pdf_target.clone() * log_p)
            .sum_dim(1)
            .mean()
            .neg()
            .mul_scalar(config.pdf_weight)
    });
    let n = batch.class.dims()[0];
    let ce = CrossEntropyLossConfig::new()
        .init(&out.class_logits.device())
        .forward(out.class_logits, batch.class.clone());
    let z_true_class = out
        .log1p_z
        .gather(1, batch.class.clone().reshape([n, 1]))
        .reshape([n]);
    let total = ce
        + (z_true_class - batch.log1p_z.clone())
            .abs()
            .mean()
            .mul_scalar(config.redshift_weight);
    match pdf_loss {
        Some(p) => total + p,
        None => total,
    }
}

/// Mean and standard deviation of the features, to scale inputs.
fn feature_scaling<B: Backend>(magnitudes: Tensor<B, 2>) -> (Tensor<B, 1>, Tensor<B, 1>) {
    let f = features(magnitudes);
    let mean = f.clone().mean_dim(0);
    let std = (f - mean.clone())
        .powi_scalar(2)
        .mean_dim(0)
        .sqrt()
        .clamp_min(1e-6);
    (mean.reshape([FEATURES]), std.reshape([FEATURES]))
}

/// Trains PhotoZ on `train`, selecting the epoch by the loss on `valid`.
/// `on_epoch` sees each epoch's report (for progress bars).
pub fn train<B: AutodiffBackend>(
    config: &TrainConfig,
    train: &Examples,
    valid: &Examples,
    device: &B::Device,
    mut on_epoch: impl FnMut(&EpochReport),
) -> Trained<B::InnerBackend> {
    B::seed(device, config.seed);
    let mut rng = SplitMix(config.seed);
    let with_pdf = config.model.redshift_pdf;
    let all = tensors::<B>(train, with_pdf, device);
    let mut valid_batch = tensors::<B::InnerBackend>(valid, with_pdf, device);
    // Early stopping looks at magnitudes alone (real objects mostly have no cutout);
    // the cutouts give a second accuracy figure.
    let valid_cutouts = valid_batch.cutouts.take();

    let mut model: PhotoZ<B> = config.model.init(device);
    let (mean, std) = feature_scaling(all.magnitudes.clone().inner());
    model.feature_mean = Param::from_tensor(Tensor::from_inner(mean)).set_require_grad(false);
    model.feature_std = Param::from_tensor(Tensor::from_inner(std)).set_require_grad(false);
    let mut optimizer = AdamWConfig::new()
        .with_weight_decay(config.weight_decay)
        .init();

    let n = train.len();
    let steps_per_epoch = n.div_ceil(config.batch_size);
    let total_steps = config.epochs.max(1) * steps_per_epoch;
    let mut order: Vec<u32> = (0..n as u32).collect();
    let mut best: Option<(f32, usize, PhotoZ<B::InnerBackend>)> = None;
    let mut reports = Vec::new();
    let mut step = 0;
    // At least one epoch, so there is always a model to return.
    for epoch in 1..=config.epochs.max(1) {
        rng.shuffle(&mut order);
        let mut train_loss = 0.0;
        let mut lr = 0.0;
        for chunk in order.chunks(config.batch_size) {
            let index = Tensor::<B, 1, Int>::from_data(
                TensorData::new(
                    chunk.iter().map(|&i| i64::from(i)).collect::<Vec<_>>(),
                    [chunk.len()],
                ),
                device,
            );
            // Shown half the time, and only where the object has a cutout.
            let cutouts = all.cutouts.as_ref().map(|(images, has)| {
                let keep: Vec<f32> = chunk
                    .iter()
                    .map(|_| f32::from(rng.unit() < config.cutout_keep))
                    .collect();
                (
                    images.clone().select(0, index.clone()),
                    Tensor::from_data(TensorData::new(keep, [chunk.len(), 1]), device)
                        * has.clone().select(0, index.clone()),
                )
            });
            let batch = Batch {
                magnitudes: all.magnitudes.clone().select(0, index.clone()),
                class: all.class.clone().select(0, index.clone()),
                log1p_z: all.log1p_z.clone().select(0, index.clone()),
                pdf_target: all.pdf_target.clone().select(0, index),
                cutouts,
            };
            let l = loss(&model, &batch, config);
            train_loss += l.clone().into_scalar().elem::<f32>() * chunk.len() as f32;
            let grads = GradientsParams::from_grads(l.backward(), &model);
            lr = one_cycle(step, total_steps, config.learning_rate);
            model = optimizer.step(lr, model, grads);
            step += 1;
        }
        let inference = model.valid();
        let valid_loss = loss(&inference, &valid_batch, config)
            .into_scalar()
            .elem::<f32>();
        let accuracy = |cutouts| {
            let predicted = inference
                .forward_with(valid_batch.magnitudes.clone(), cutouts)
                .class_logits
                .argmax(1)
                .reshape([valid.len()]);
            let correct = predicted
                .equal(valid_batch.class.clone())
                .int()
                .sum()
                .into_scalar()
                .elem::<i64>();
            correct as f32 / valid.len().max(1) as f32
        };
        let valid_class_accuracy = accuracy(None);
        let with_cutouts = valid_cutouts.clone().map(|c| accuracy(Some(c)));
        let report = EpochReport {
            epoch,
            train_loss: train_loss / n as f32,
            valid_loss,
            valid_class_accuracy,
            valid_class_accuracy_with_cutouts: with_cutouts,
            learning_rate: lr,
        };
        on_epoch(&report);
        reports.push(report);
        if best.as_ref().is_none_or(|(l, _, _)| valid_loss < *l) {
            best = Some((valid_loss, epoch, inference));
        } else if best
            .as_ref()
            .is_some_and(|(_, e, _)| epoch - e >= config.patience)
        {
            break;
        }
    }
    let (_, best_epoch, model) = best.expect("at least one epoch");
    Trained {
        model,
        best_epoch,
        epochs: reports,
    }
}
