//! One rank: its partitions through the model, in batches.

use super::download::{Wanted, download};
use super::{Payload, PipelineError, Stores, predictions_key, rank_key};
use crate::partition::{Partition, PartitionFile};
use crate::predict::{Cutouts, Prediction};
use crate::redshift_model::RedshiftModel;
use burn::prelude::*;
use cosmicai_model::astromae::AstroMae;
use cosmicai_shared::run::{RankResult, SystemInfo};
use cosmicai_shared::{Class, Provenance};
use safetensors::tensor::{Dtype, TensorView};
use std::time::Instant;

/// Progress a rank reports while it works.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RankEvent {
    /// Objects done so far.
    Objects(usize),
    /// Every batch is done: the rank's files are written next.
    Writing,
}

/// Every object's labels and prediction, as stored in `predictions/<rank>.safetensors`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RankPredictions {
    pub object_id: Vec<i64>,
    pub redshift: Vec<f32>,
    pub class: Vec<Class>,
    pub predicted: Vec<Prediction>,
    /// Whether the object came from the renderer: its labels drew its image,
    /// so it is never scored (empty: none did).
    pub synthetic: Vec<bool>,
    /// Where each object was read: its partition (an index into the rank's
    /// `data_path`) and its row there (empty in files written before them).
    pub partition: Vec<u32>,
    pub row: Vec<u32>,
}

impl RankPredictions {
    /// Whether object `i` came from the renderer.
    pub fn is_synthetic(&self, i: usize) -> bool {
        self.synthetic.get(i).copied().unwrap_or(false)
    }
}

/// What a rank's batches add up to.
#[derive(Default)]
struct Tally {
    batches: usize,
    bits: u64,
    seconds: f64,
    with_cutouts: usize,
    /// Bytes read from a remote store, and the GETs that took.
    downloaded: u64,
    gets: u64,
}

/// Rows gathered for the next batch, from one or more of the rank's files.
#[derive(Default)]
struct Batch {
    /// The files they come from (named in errors).
    keys: Vec<String>,
    magnitudes: Vec<[f32; 5]>,
    pixels: Vec<f32>,
    image_size: Option<(usize, usize)>,
    object_id: Vec<i64>,
    redshift: Vec<f32>,
    class: Vec<Class>,
    synthetic: Vec<bool>,
    partition: Vec<u32>,
    row: Vec<u32>,
}

impl Batch {
    fn len(&self) -> usize {
        self.magnitudes.len()
    }

    fn is_empty(&self) -> bool {
        self.magnitudes.is_empty()
    }

    /// Rows `rows` of partition `key`, with their `pixels` (empty without cutouts).
    fn take(
        &mut self,
        (index, key): (usize, &str),
        catalog: &Partition,
        rows: std::ops::Range<usize>,
        pixels: Vec<f32>,
    ) {
        if self.keys.last().is_none_or(|last| last != key) {
            self.keys.push(key.to_string());
        }
        self.magnitudes
            .extend_from_slice(&catalog.magnitudes[rows.clone()]);
        // A batch from one file keeps its read as it is: no second copy.
        if self.pixels.is_empty() {
            self.pixels = pixels;
        } else {
            self.pixels.extend_from_slice(&pixels);
        }
        self.object_id
            .extend_from_slice(&catalog.object_id[rows.clone()]);
        self.redshift
            .extend_from_slice(&catalog.redshift[rows.clone()]);
        self.class.extend_from_slice(&catalog.class[rows.clone()]);
        self.synthetic.extend(
            rows.clone()
                .map(|i| catalog.provenance(i) == Provenance::Synthetic),
        );
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        self.partition.extend(rows.clone().map(|_| index));
        self.row
            .extend(rows.map(|i| u32::try_from(i).unwrap_or(u32::MAX)));
    }

    /// "partition KEY" or "partitions A, B": where the batch's rows come from.
    fn partitions(&self) -> String {
        match &self.keys[..] {
            [one] => format!("partition {one}"),
            many => format!("partitions {}", many.join(", ")),
        }
    }

    /// Moves the rows' labels into `out` (after their predictions) and empties the batch.
    fn hand_on(&mut self, out: &mut RankPredictions) {
        out.object_id.append(&mut self.object_id);
        out.redshift.append(&mut self.redshift);
        out.class.append(&mut self.class);
        out.synthetic.append(&mut self.synthetic);
        out.partition.append(&mut self.partition);
        out.row.append(&mut self.row);
        self.keys.clear();
        self.magnitudes.clear();
        self.pixels = Vec::new();
    }
}

/// Runs rank `rank` of `payload` with `model`, reading its partitions from
/// `stores.data` and writing its result and predictions to `stores.results`.
/// `on_event` hears of each batch done; an error from it stops the rank there,
/// before anything is written (a rank out of time must not write late).
pub fn infer_rank<B: Backend>(
    stores: Stores,
    payload: &Payload,
    rank: usize,
    model: &RedshiftModel<B>,
    device: &B::Device,
    system: SystemInfo,
    mut on_event: impl FnMut(RankEvent) -> Result<(), PipelineError>,
) -> Result<RankResult, PipelineError>
where
    AstroMae<B>: Sync,
{
    let request = &payload.request;
    let keys = payload.ranks.get(rank).ok_or_else(|| {
        PipelineError::Other(format!(
            "rank {rank} is not in the plan of {} ranks",
            payload.ranks.len()
        ))
    })?;
    let mut out = RankPredictions::default();
    let mut batch = Batch::default();
    let mut tally = Tally::default();
    // Batches run across the rank's files, as CAI's one DataLoader over them
    // does: only the rank's last batch is partial.
    let mut run = |batch: &mut Batch, out: &mut RankPredictions, tally: &mut Tally| {
        let t = Instant::now();
        let predicted = model
            .predict(
                &batch.magnitudes,
                batch.image_size.map(|(height, width)| Cutouts {
                    pixels: &batch.pixels,
                    height,
                    width,
                }),
                request.batch_size,
                device,
            )
            .map_err(|e| PipelineError::Other(format!("{}: {e}", batch.partitions())))?;
        tally.seconds += t.elapsed().as_secs_f64();
        tally.batches += 1;
        tally.bits += batch.magnitudes.len() as u64 * 5 * 32 + batch.pixels.len() as u64 * 32;
        tally.with_cutouts += predicted.with_cutouts;
        out.predicted.extend(predicted.predictions);
        batch.hand_on(out);
        on_event(RankEvent::Objects(out.object_id.len()))
    };
    for (index, key) in keys.iter().enumerate() {
        // Remote objects are streamed to a temporary file (never whole in memory), so
        // partitions are always memory-mapped.
        let temp;
        let path = match stores.data.local_path(key) {
            Some(p) => p,
            None => {
                let size = payload
                    .files
                    .iter()
                    .find(|(k, _)| k == key)
                    .map_or(0, |(_, s)| *s);
                // CAI's `.pt` files are zip archives, read whole.
                let wanted = if model.reads_cutouts() || crate::cai::is_cai_key(key) {
                    Wanted::Whole
                } else {
                    Wanted::Catalog
                };
                let got = download(stores.data, key, size, wanted)?;
                tally.downloaded += got.bytes;
                tally.gets += got.gets;
                temp = got.file;
                temp.path().to_path_buf()
            }
        };
        let Some(file) = RankPartition::open(&path, key)? else {
            continue;
        };
        let catalog = file.catalog();
        // Pixels are read only for a model that looks at them.
        let image_size = file.image_size().filter(|_| model.reads_cutouts());
        // Cutouts of another size (or none) cannot share a batch.
        if !batch.is_empty() && batch.image_size != image_size {
            run(&mut batch, &mut out, &mut tally)?;
        }
        batch.image_size = image_size;
        let mut start = 0;
        while start < file.len() {
            let end = (start + request.batch_size - batch.len()).min(file.len());
            let t = Instant::now();
            let pixels = image_size
                .map(|_| file.images(start..end))
                .unwrap_or_default();
            batch.take((index, key), catalog, start..end, pixels);
            tally.seconds += t.elapsed().as_secs_f64();
            start = end;
            if batch.len() >= request.batch_size {
                run(&mut batch, &mut out, &mut tally)?;
            }
        }
    }
    if !batch.is_empty() {
        run(&mut batch, &mut out, &mut tally)?;
    }
    let Tally {
        batches,
        bits,
        seconds,
        with_cutouts,
        downloaded,
        gets,
    } = tally;
    let objects = out.object_id.len();
    let seconds = seconds.max(1e-9);
    let result = RankResult {
        rank,
        run_id: payload.run_id.clone(),
        total_time_s: seconds,
        memory_mb: crate::system::peak_rss_mb(),
        // CAI's formula: its time over objects / batch_size, a fractional count
        // of batches (a last, partial batch counts for its share).
        execution_time_per_batch_s: if objects > 0 {
            seconds / (objects as f64 / request.batch_size.max(1) as f64)
        } else {
            0.0
        },
        num_batches: batches,
        batch_size: request.batch_size,
        device: request.device,
        precision: request.precision,
        throughput_bps: bits as f64 / seconds,
        sample_persec: objects as f64 / seconds,
        result_path: request.result_path.clone(),
        data_path: keys.clone(),
        objects,
        objects_with_cutouts: with_cutouts,
        model: request.model.clone(),
        kernels: model.kernels(device),
        downloaded_bytes: downloaded,
        partition_gets: gets,
        system,
    };
    on_event(RankEvent::Writing)?;
    let store = stores.results;
    store.put(
        &predictions_key(&request.result_path, rank),
        &encode_predictions(&out)?,
    )?;
    let json =
        serde_json::to_vec_pretty(&result).map_err(|e| PipelineError::Other(e.to_string()))?;
    store.put(&rank_key(&request.result_path, rank), &json)?;
    Ok(result)
}

/// A partition as a rank reads it: ours, memory-mapped, or one of CAI's `.pt`
/// files read whole (they hold 25 to 100 MB), so a run can read CAI's data where
/// it already is, without converting it first.
enum RankPartition {
    Mapped(PartitionFile),
    Cai(Partition),
}

impl RankPartition {
    /// The partition at `path`, or `None` for a model checkpoint among CAI's
    /// `.pt` files (copied into the bucket with its data, as CAI's folders
    /// keep it): no objects, as a local run's conversion leaves it out.
    fn open(path: &std::path::Path, key: &str) -> Result<Option<Self>, PipelineError> {
        if !crate::cai::is_cai_key(key) {
            return Ok(Some(RankPartition::Mapped(PartitionFile::open(path)?)));
        }
        let name = key.rsplit('/').next().unwrap_or(key);
        match crate::cai::read_cai_partition_named(path, name, None, Class::Unknown) {
            Ok(partition) => Ok(Some(RankPartition::Cai(partition))),
            Err(e) => match crate::cai::model_checkpoint(path) {
                Some(why) => {
                    eprintln!(
                        "partition {key}: a model checkpoint, not a CAI partition ({why}): no objects read from it"
                    );
                    Ok(None)
                }
                None => Err(PipelineError::Other(format!(
                    "partition {key}: {}",
                    e.problem
                ))),
            },
        }
    }

    fn len(&self) -> usize {
        self.catalog().len()
    }

    fn catalog(&self) -> &Partition {
        match self {
            RankPartition::Mapped(file) => file.catalog(),
            RankPartition::Cai(partition) => partition,
        }
    }

    fn image_size(&self) -> Option<(usize, usize)> {
        match self {
            RankPartition::Mapped(file) => file.image_size(),
            RankPartition::Cai(p) => p.images.as_ref().map(|i| (i.height, i.width)),
        }
    }

    fn images(&self, range: std::ops::Range<usize>) -> Vec<f32> {
        match self {
            RankPartition::Mapped(file) => file.images(range),
            RankPartition::Cai(p) => p.images.as_ref().map_or_else(Vec::new, |i| {
                let n = i.values_per_object();
                i.pixels[range.start * n..range.end * n].to_vec()
            }),
        }
    }
}

/// A rank's predictions file (the counterpart of [`read_predictions`]).
pub fn encode_predictions(p: &RankPredictions) -> Result<Vec<u8>, PipelineError> {
    let n = p.object_id.len();
    let le = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let ids: Vec<u8> = p.object_id.iter().flat_map(|x| x.to_le_bytes()).collect();
    let z = le(&p.redshift);
    let zp = le(&p.predicted.iter().map(|q| q.redshift).collect::<Vec<_>>());
    let class: Vec<u8> = p.class.iter().map(|c| c.code()).collect();
    let pclass: Vec<u8> = p.predicted.iter().map(|q| q.class.code()).collect();
    let prob = le(&p
        .predicted
        .iter()
        .flat_map(|q| q.class_probability)
        .collect::<Vec<_>>());
    // σ_z and the outlier chance, for models that give a distribution.
    let with_sigma = p.predicted.iter().any(|q| q.redshift_sigma.is_some());
    let sigma = le(&p
        .predicted
        .iter()
        .map(|q| q.redshift_sigma.unwrap_or(f32::NAN))
        .collect::<Vec<_>>());
    let risk = le(&p
        .predicted
        .iter()
        .map(|q| q.outlier_probability.unwrap_or(f32::NAN))
        .collect::<Vec<_>>());
    let mut tensors = vec![
        ("object_id", Dtype::I64, vec![n], &ids),
        ("redshift", Dtype::F32, vec![n], &z),
        ("predicted_redshift", Dtype::F32, vec![n], &zp),
        ("class", Dtype::U8, vec![n], &class),
        ("predicted_class", Dtype::U8, vec![n], &pclass),
        ("class_probability", Dtype::F32, vec![n, 3], &prob),
    ];
    if with_sigma {
        tensors.push(("predicted_redshift_sigma", Dtype::F32, vec![n], &sigma));
        tensors.push(("outlier_probability", Dtype::F32, vec![n], &risk));
    }
    // Only where some object came from the renderer: real data's files are as before.
    let synthetic: Vec<u8> = (0..n).map(|i| u8::from(p.is_synthetic(i))).collect();
    if synthetic.contains(&1) {
        tensors.push(("synthetic", Dtype::U8, vec![n], &synthetic));
    }
    // Where each object was read, for a table of predictions by file and row.
    let u32s = |v: &[u32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let (partition, row) = (u32s(&p.partition), u32s(&p.row));
    if p.partition.len() == n && p.row.len() == n {
        tensors.push(("partition", Dtype::U32, vec![n], &partition));
        tensors.push(("row", Dtype::U32, vec![n], &row));
    }
    let views = tensors
        .into_iter()
        .map(|(name, dtype, shape, data)| TensorView::new(dtype, shape, data).map(|v| (name, v)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PipelineError::Other(e.to_string()))?;
    let bytes =
        safetensors::serialize(views, None).map_err(|e| PipelineError::Other(e.to_string()))?;
    cosmicai_model::weights::canonical_safetensors(bytes).map_err(PipelineError::Other)
}

/// Reads a rank's predictions file.
pub fn read_predictions(bytes: &[u8]) -> Result<RankPredictions, String> {
    let file = safetensors::SafeTensors::deserialize(bytes).map_err(|e| e.to_string())?;
    let column = |name: &str| {
        file.tensor(name)
            .map(|t| t.data().to_vec())
            .map_err(|e| format!("{name}: {e}"))
    };
    let f32s = |b: Vec<u8>| {
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect::<Vec<f32>>()
    };
    let object_id: Vec<i64> = column("object_id")?
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect();
    let redshift = f32s(column("redshift")?);
    let predicted_redshift = f32s(column("predicted_redshift")?);
    let class: Vec<Class> = column("class")?
        .iter()
        .map(|&c| Class::from_code(c).unwrap_or(Class::Unknown))
        .collect();
    let predicted_class = column("predicted_class")?;
    let probability = f32s(column("class_probability")?);
    let n = object_id.len();
    // Optional: files of models without a distribution (and older files) lack them.
    // Optional columns (absent in older files, or for models without them):
    // their bytes where present, of the dtype and length the others have.
    let optional = |name: &str, dtype: Dtype| -> Result<Option<&[u8]>, String> {
        match file.tensor(name) {
            Err(_) => Ok(None),
            Ok(t) if t.dtype() == dtype && t.shape() == [n] => Ok(Some(t.data())),
            Ok(t) => Err(format!(
                "{name}: {:?} {:?}, expected {dtype:?} [{n}]",
                t.dtype(),
                t.shape()
            )),
        }
    };
    let sigma = optional("predicted_redshift_sigma", Dtype::F32)?.map(|b| f32s(b.to_vec()));
    let risk = optional("outlier_probability", Dtype::F32)?.map(|b| f32s(b.to_vec()));
    let synthetic: Vec<bool> = optional("synthetic", Dtype::U8)?
        .map(|b| b.iter().map(|&v| v != 0).collect())
        .unwrap_or_default();
    let u32s = |b: &[u8]| -> Vec<u32> {
        b.chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    let partition = optional("partition", Dtype::U32)?
        .map(u32s)
        .unwrap_or_default();
    let row = optional("row", Dtype::U32)?.map(u32s).unwrap_or_default();
    if [
        redshift.len(),
        predicted_redshift.len(),
        class.len(),
        predicted_class.len(),
        probability.len() / 3,
        sigma.as_ref().map_or(n, Vec::len),
        risk.as_ref().map_or(n, Vec::len),
    ]
    .iter()
    .any(|&l| l != n)
    {
        return Err("columns of different lengths".into());
    }
    let finite = |column: &Option<Vec<f32>>, i: usize| {
        column.as_ref().map(|c| c[i]).filter(|v| v.is_finite())
    };
    let predicted = (0..n)
        .map(|i| Prediction {
            class: Class::from_code(predicted_class[i]).unwrap_or(Class::Unknown),
            class_probability: [
                probability[3 * i],
                probability[3 * i + 1],
                probability[3 * i + 2],
            ],
            redshift: predicted_redshift[i],
            redshift_sigma: finite(&sigma, i),
            outlier_probability: finite(&risk, i),
        })
        .collect();
    Ok(RankPredictions {
        object_id,
        redshift,
        class,
        predicted,
        synthetic,
        partition,
        row,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn predictions(with_sigma: bool) -> RankPredictions {
        let p = Prediction::from_probabilities([0.7, 0.2, 0.1], 0.31);
        let p = if with_sigma {
            p.with_distribution(0.3, 0.02, 0.05)
        } else {
            p
        };
        RankPredictions {
            object_id: vec![7, 8],
            redshift: vec![0.29, f32::NAN],
            class: vec![Class::Galaxy, Class::Unknown],
            predicted: vec![p, p],
            synthetic: Vec::new(),
            partition: vec![0, 1],
            row: vec![4, 0],
        }
    }

    #[test]
    fn renderings_are_marked_and_real_datas_files_are_as_before() {
        let real = encode_predictions(&predictions(false)).unwrap();
        assert!(!String::from_utf8_lossy(&real).contains("synthetic"));
        assert!(!read_predictions(&real).unwrap().is_synthetic(0));
        let mixed = RankPredictions {
            synthetic: vec![false, true],
            ..predictions(false)
        };
        let back = read_predictions(&encode_predictions(&mixed).unwrap()).unwrap();
        assert_eq!(back.synthetic, [false, true]);
        assert_eq!((back.partition, back.row), (vec![0, 1], vec![4, 0]));
        // Files from before the columns read with none.
        let older = RankPredictions {
            partition: Vec::new(),
            row: Vec::new(),
            ..predictions(false)
        };
        let back = read_predictions(&encode_predictions(&older).unwrap()).unwrap();
        assert!(back.partition.is_empty() && back.row.is_empty());
    }

    #[test]
    fn sigma_and_outlier_chance_round_trip_and_files_without_them_still_read() {
        for with_sigma in [true, false] {
            let bytes = encode_predictions(&predictions(with_sigma)).unwrap();
            let back = read_predictions(&bytes).unwrap();
            assert_eq!(back.predicted[1].redshift_sigma, with_sigma.then_some(0.02));
            assert_eq!(
                back.predicted[1].outlier_probability,
                with_sigma.then_some(0.05)
            );
            assert_eq!(
                back.predicted[0].redshift,
                if with_sigma { 0.3 } else { 0.31 }
            );
        }
        // A σ column shorter than the others is refused.
        let sigma = 0.02f32.to_le_bytes().to_vec();
        let full = encode_predictions(&predictions(true)).unwrap();
        let full = safetensors::SafeTensors::deserialize(&full).unwrap();
        let mut views: Vec<(String, safetensors::tensor::TensorView)> = full
            .tensors()
            .into_iter()
            .filter(|(n, _)| n != "predicted_redshift_sigma")
            .collect();
        views.push((
            "predicted_redshift_sigma".into(),
            safetensors::tensor::TensorView::new(Dtype::F32, vec![1], &sigma).unwrap(),
        ));
        let crafted = safetensors::serialize(views, None).unwrap();
        let e = read_predictions(&crafted).unwrap_err();
        assert!(
            e.starts_with("predicted_redshift_sigma") && e.contains("expected F32 [2]"),
            "{e}"
        );
    }
}
