//! The HTTP API's request and response bodies (`/api/...`), shared by the
//! server and the browser.

use crate::run::{Device, RankMeasure, RunStatus};
use crate::{Class, Provenance};
use serde::{Deserialize, Serialize};

/// Every error the API returns: a message that names the input at fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiError {
    pub error: String,
}

/// `/api/health`: the server is up, with what it serves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    pub objects: usize,
    pub version: String,
    /// [`crate::API_FINGERPRINT`] of the server's build (empty from a server
    /// older than it).
    #[serde(default)]
    pub api: String,
}

/// A prediction of one model for one object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Prediction {
    pub model: String,
    pub redshift: f32,
    /// σ_z, for a model that gives a redshift distribution (PhotoZ).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redshift_sigma: Option<f32>,
    /// Null for a model that predicts no class (AstroMAE).
    pub class: Option<Class>,
    /// Probabilities of GALAXY, STAR, QSO; null without a class prediction.
    pub class_probabilities: Option<[f32; 3]>,
}

impl Prediction {
    /// Model `model`'s prediction `p`, with its class only when the model has one.
    pub fn of(
        model: impl Into<String>,
        p: &crate::model::Prediction,
        predicts_class: bool,
    ) -> Self {
        Prediction {
            model: model.into(),
            redshift: p.redshift,
            redshift_sigma: p.redshift_sigma,
            class: predicts_class.then_some(p.class),
            class_probabilities: predicts_class.then_some(p.class_probability),
        }
    }
}

/// `GET /api/models`: a model the server can run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelEntry {
    /// What `model` in `POST /api/runs` takes: `photoz` (shipped), or `FAMILY:FILE`
    /// for a model given to `cosmicai serve --model` or put in the data directory's
    /// `models/` folder (the file name, never its path).
    pub name: String,
    /// `photoz` or `astromae`.
    pub family: String,
    pub predicts_class: bool,
    /// Whether runs need partitions with cutouts.
    pub reads_images: bool,
    /// Size of the weight file.
    pub bytes: u64,
}

/// One object in a listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ObjectSummary {
    /// Stable id (below 2^53, exact in JSON).
    pub id: i64,
    /// Degrees; null when unknown.
    pub ra: Option<f64>,
    pub dec: Option<f64>,
    pub class: Class,
    /// Spectroscopic redshift; null when unknown.
    pub redshift: Option<f32>,
    /// u, g, r, i, z asinh magnitudes.
    pub magnitudes: [f32; 5],
    pub provenance: Provenance,
    /// Name of the source (catalog, SDSS field, renderer run).
    pub source: String,
    pub has_image: bool,
}

/// Objects per class in a filtered listing (before paging).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClassCounts {
    pub galaxy: usize,
    pub star: usize,
    pub qso: usize,
    pub unknown: usize,
}

/// A page of `GET /api/objects`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ObjectPage {
    /// Objects matching the filters.
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
    pub counts: ClassCounts,
    pub objects: Vec<ObjectSummary>,
}

/// `GET /api/sky`: every object with a position, as columns (one entry per
/// object in each), for the sky map and the colour plots. Compact: about 70 bytes
/// per object.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SkyPoints {
    pub ids: Vec<i64>,
    /// Degrees.
    pub ra: Vec<f32>,
    pub dec: Vec<f32>,
    /// One letter per object: `G`alaxy, `S`tar, `Q`SO or `U`nknown.
    pub classes: String,
    /// Spectroscopic redshift; null when unknown.
    pub redshift: Vec<Option<f32>>,
    /// One letter per object: `r`eal or `s`ynthetic (renderings sit at their
    /// source object's position).
    pub provenance: String,
    /// r asinh magnitude; null when unknown.
    #[serde(default)]
    pub r: Vec<Option<f32>>,
    /// u−g, g−r, r−i, to 0.001 (for the colour plots); null when a band is unknown.
    #[serde(default)]
    pub colours: Vec<Option<[f32; 3]>>,
}

/// `GET /api/settings`: what the explorer needs to know of this server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServerSettings {
    /// SDSS SkyServer's JPEG cutout service (`?ra=&dec=&scale=&width=&height=`),
    /// for the optional colour thumbnails of objects without a cutout; the
    /// browser loads them, and only when the user turns them on.
    pub skyserver_jpeg: String,
    /// Whether the server fetches real cutouts from the SDSS archive (`--archive`).
    pub archive: bool,
}

/// `GET /api/objects/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ObjectDetail {
    pub object: ObjectSummary,
    /// How the source was made.
    pub source_detail: String,
    /// Cutout side in pixels, when the object has an image.
    pub image_size: Option<usize>,
    /// Share of the cutout inside the survey frames (real cutouts can be cut off).
    pub valid_fraction: Option<f32>,
    /// Predictions stored by the server (the shipped model).
    pub predictions: Vec<Prediction>,
    /// On a server started with `--archive`, for a catalog object whose SDSS
    /// field is known: where its real cutout from the archive stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<ArchiveCutout>,
}

/// A real cutout cut on demand from the SDSS archive's frames
/// (`POST /api/objects/{id}/fetch` starts it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ArchiveCutout {
    /// The SDSS field its frames come from, `RUN-CAMCOL-FIELD`.
    pub field: String,
    pub state: ArchiveState,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ArchiveState {
    /// Not asked for yet.
    Available,
    /// Waiting behind other objects' fetches.
    Queued,
    /// Its five frames are being fetched, or the cutout cut.
    Fetching,
    /// The cutout is served as the object's image (real, from the archive).
    Ready,
    /// The last attempt failed (`error` says why); asking again retries.
    Failed,
}

/// Where a run executes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Target {
    #[default]
    Local,
    Aws,
}

/// `POST /api/runs` and `POST /api/estimate`: a run as the launcher describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RunLaunch {
    #[serde(default)]
    pub target: Target,
    /// Dataset folder inside the server's data directory (default `catalog`).
    #[serde(default)]
    pub data_prefix: Option<String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub file_limit: Option<usize>,
    /// Ranks (workers): 1 to 100,000; a local run takes at most 10,000.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 100000))]
    pub world_size: usize,
    /// Objects per batch: 1 to 16,384.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 16384))]
    pub batch_size: usize,
    #[serde(default)]
    pub device: Device,
    /// `fp32` (default), or `bf16` / `f16` on device cuda.
    #[serde(default)]
    pub precision: crate::run::Precision,
    /// Memory per rank in MB (128 to 10,240; default 2048).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 128, maximum = 10240))]
    pub memory_mb: Option<u32>,
    /// Times a failed rank is started again (0 to 10).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(maximum = 10))]
    pub retries: u32,
    /// Seconds a rank may run (see [`crate::run::RunRequest::timeout_s`]).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(exclusive_minimum = 0, maximum = 604800))]
    pub timeout_s: Option<f64>,
    /// A name from `GET /api/models` (default `photoz`).
    #[serde(default)]
    pub model: Option<String>,
    /// Target `aws` only: partitions already in S3 (ours, or CAI's `.pt`):
    /// this folder of the deployment's bucket, or `s3://BUCKET/FOLDER` (the
    /// deployment's bucket, or its `InputBucket`). They run where they are:
    /// nothing is uploaded, and `data_prefix` is not read.
    #[serde(default)]
    pub s3_data: Option<String>,
}

/// A run as listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunInfo {
    pub id: String,
    /// Unix seconds.
    pub created_at: i64,
    pub status: RunStatus,
    pub world_size: usize,
    pub batch_size: usize,
    pub device: String,
    /// The data folder of a local run, or `s3://BUCKET/FOLDER` of a run on S3.
    pub data_prefix: String,
    pub result_path: String,
    pub objects: Option<usize>,
    pub duration_s: Option<f64>,
    pub cost_usd: Option<f64>,
    /// Why a run that ended without a summary ended so (refused, failed or
    /// cancelled before one; interrupted): its summary says the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The model it ran (`photoz`, `astromae:PATH`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The number format it computed in, where not fp32 (`bf16`, `f16`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<String>,
    /// Whether it can be resumed (`POST /api/runs/{id}/resume`, `cosmicai run
    /// --resume`): a run that ended without every rank's results, whose plan
    /// is in its result_path (an AWS run's copied back with its results; the
    /// API says so of an AWS run only where the server has an AWS deployment).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resumable: bool,
    /// Whether it ran on AWS (Step Functions and Lambda, or Batch for CUDA).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub on_aws: bool,
}

/// What the run's event stream (`GET /api/runs/{id}/events`, Server-Sent Events) says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RunEvent {
    RankStarted {
        rank: usize,
        attempt: u32,
    },
    RankReady {
        rank: usize,
    },
    RankObjects {
        rank: usize,
        objects: usize,
    },
    RankFinished {
        measure: RankMeasure,
    },
    RankFailed {
        rank: usize,
        attempt: u32,
        error: String,
        retrying: bool,
    },
    /// The run ended; `status` is final.
    Finished {
        status: RunStatus,
    },
    /// The run could not go on (bad data, store error).
    Error {
        error: String,
    },
}

/// `POST /api/runs`, `POST /api/sweeps`: what was started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Created {
    pub id: String,
}

/// `POST /api/selections`: the objects a box on the sky map picked, by id. The
/// query string filters them (or, without ids, every object) exactly as it filters
/// `GET /api/objects`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SelectionRequest {
    #[serde(default)]
    pub ids: Option<Vec<i64>>,
}

/// A selection written as a dataset: a run takes `data_prefix` as its data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Selection {
    /// `selections/NAME`, named by its objects (the same selection gives the same name).
    pub data_prefix: String,
    pub objects: usize,
    pub partitions: usize,
    pub counts: ClassCounts,
}

/// `GET /api/runs/{id}/results`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunResults {
    /// `summary.json`: status, metrics on real labels, per-rank measures, cost.
    pub summary: crate::run::RunSummary,
    /// Predicted against spectroscopic redshift for labelled objects (at most 20,000).
    pub scatter: Vec<ScatterPoint>,
}

/// `GET /api/model`: the shipped PhotoZ the browser runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelInfo {
    pub name: String,
    pub bytes: usize,
    /// FNV-1a 64 of the weights, hex: the cache key of `/api/model/weights`.
    pub hash: String,
    pub weights_url: String,
    /// The model card (data, split, metrics on real labels).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub card: serde_json::Value,
}

/// One point of the results scatter plot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScatterPoint {
    pub z_spec: f32,
    pub z_pred: f32,
    pub class: Class,
    /// The object, so the explorer can open an outlier.
    #[serde(default)]
    pub id: Option<i64>,
}

/// `POST /api/sweeps`: the same run over several world sizes and devices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SweepLaunch {
    /// 1 to 8 world sizes, each 1 to 64.
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 8))]
    pub world_sizes: Vec<usize>,
    /// cpu and/or cuda (default cpu).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_items = 2))]
    pub devices: Vec<Device>,
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 16384))]
    pub batch_size: usize,
    #[serde(default)]
    pub data_prefix: Option<String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub file_limit: Option<usize>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 128, maximum = 10240))]
    pub memory_mb: Option<u32>,
    /// A name from `GET /api/models` (default `photoz`).
    #[serde(default)]
    pub model: Option<String>,
}

/// One run of a sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SweepRow {
    pub world_size: usize,
    pub device: Device,
    pub run_id: String,
    pub status: RunStatus,
    pub objects: usize,
    pub duration_s: f64,
    #[serde(default)]
    pub samples_per_s: f64,
    pub cost_usd: f64,
}

/// `GET /api/sweeps/{id}`: the runs done so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SweepInfo {
    pub id: String,
    /// running, finished, cancelled, failed, or interrupted (its server
    /// stopped while it ran).
    pub state: String,
    /// Runs planned in all.
    pub planned: usize,
    pub rows: Vec<SweepRow>,
    pub error: Option<String>,
    /// The run going on now, whose page streams its progress.
    #[serde(default)]
    pub running: Option<String>,
}
