//! `serve --archive`: real cutouts, on demand, for catalog objects that have none.
//!
//! The Object page asks (`POST /api/objects/{id}/fetch`); one object at a time,
//! on this module's own thread, the object's field's five frames come from the
//! SDSS archive into `DATA/frames` (a frame cache, kept within its budget by
//! evicting the least recently used frames), then its cutout is cut and written
//! to `DATA/fetched/ID.safetensors`, which the index loads as the object's image
//! at the next start. Without `--archive` nothing leaves the machine.

use super::error::Error;
use anyhow::{Context, Result};
use axum::http::StatusCode;
use cosmicai_engine::archive::fetch::{FetchOptions, FrameJob, Outcome, check_archive, fetch};
use cosmicai_engine::archive::plan::ESTIMATED_FRAME_BYTES;
use cosmicai_engine::archive::{FrameCache, SdssField};
use cosmicai_engine::catalog::read_catalogs;
use cosmicai_engine::imagery::ingest::cut_catalog;
use cosmicai_engine::partition::{
    Images, ObjectRow, Partition, PartitionFile, PartitionMeta, Source, write_partition,
};
use cosmicai_shared::api::{ArchiveCutout, ArchiveState};
use cosmicai_shared::{BANDS, Provenance};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

/// Cutout side in pixels, as the served real cutouts.
const SIZE: usize = 64;
/// Objects waiting at most; more asks get 429 (each may cost a 17 MB field).
const MAX_QUEUED: usize = 32;

/// The objects this server can fetch real cutouts for, and their fetches.
pub struct Archive {
    options: FetchOptions,
    cache: FrameCache,
    /// `DATA/fetched`: one partition per fetched object.
    out: PathBuf,
    /// Catalog objects whose row names their SDSS field.
    objects: HashMap<i64, (ObjectRow, SdssField)>,
    jobs: Mutex<Jobs>,
    wake: Condvar,
}

#[derive(Default)]
struct Jobs {
    queue: VecDeque<i64>,
    state: HashMap<i64, Job>,
}

#[derive(Clone)]
enum Job {
    Queued,
    Fetching,
    Ready(PathBuf),
    Failed(String),
}

impl Archive {
    /// The archive at `url` (checked), with the fields `catalogs` name and the
    /// cutouts fetched before (`DATA/fetched`); starts the fetching thread.
    pub fn start(
        url: &str,
        budget: u64,
        catalogs: &[PathBuf],
        data_dir: &Path,
    ) -> Result<Arc<Archive>> {
        let archive = check_archive(url).map_err(|e| anyhow::anyhow!("--archive: {e}"))?;
        anyhow::ensure!(
            budget >= 5 * ESTIMATED_FRAME_BYTES,
            "--archive-budget {budget}: one field takes about {} bytes",
            5 * ESTIMATED_FRAME_BYTES
        );
        let mut objects = HashMap::new();
        for catalog in read_catalogs(catalogs, |_, _| {}).context("--archive-catalog")? {
            for (row, field) in catalog.objects.iter().zip(&catalog.fields) {
                if let Some(field) = field {
                    objects.entry(row.object_id).or_insert((*row, *field));
                }
            }
        }
        let out = data_dir.join("fetched");
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        let mut jobs = Jobs::default();
        for id in fetched_ids(&out) {
            jobs.state.insert(id, Job::Ready(cutout_path(&out, id)));
        }
        let this = Arc::new(Archive {
            options: FetchOptions {
                archive,
                budget,
                ..FetchOptions::default()
            },
            cache: FrameCache::open(&data_dir.join("frames"))
                .with_context(|| format!("creating {}", data_dir.join("frames").display()))?,
            out,
            objects,
            jobs: Mutex::new(jobs),
            wake: Condvar::new(),
        });
        let worker = this.clone();
        std::thread::Builder::new()
            .name("archive".into())
            .spawn(move || worker.work())
            .context("starting the archive thread")?;
        Ok(this)
    }

    /// Catalog objects with a known field.
    pub fn objects(&self) -> usize {
        self.objects.len()
    }

    fn jobs(&self) -> std::sync::MutexGuard<'_, Jobs> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where object `id`'s real cutout stands; `None` when its field is unknown.
    pub fn status(&self, id: i64) -> Option<ArchiveCutout> {
        let (_, field) = self.objects.get(&id)?;
        let (state, error) = match self.jobs().state.get(&id) {
            None => (ArchiveState::Available, None),
            Some(Job::Queued) => (ArchiveState::Queued, None),
            Some(Job::Fetching) => (ArchiveState::Fetching, None),
            Some(Job::Ready(_)) => (ArchiveState::Ready, None),
            Some(Job::Failed(e)) => (ArchiveState::Failed, Some(e.clone())),
        };
        Some(ArchiveCutout {
            field: field.name(),
            state,
            error,
        })
    }

    /// Queues object `id` (again, after a failure); its status.
    pub fn request(&self, id: i64) -> Result<ArchiveCutout, Error> {
        if !self.objects.contains_key(&id) {
            return Err(Error(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "object {id}: no catalog row names its SDSS field, so its frames cannot be fetched"
                ),
            ));
        }
        {
            let mut jobs = self.jobs();
            match jobs.state.get(&id) {
                None | Some(Job::Failed(_)) => {
                    if jobs.queue.len() >= MAX_QUEUED {
                        return Err(Error(
                            StatusCode::TOO_MANY_REQUESTS,
                            format!(
                                "{MAX_QUEUED} objects are already waiting for their frames; try again later"
                            ),
                        ));
                    }
                    jobs.queue.push_back(id);
                    jobs.state.insert(id, Job::Queued);
                    self.wake.notify_one();
                }
                Some(_) => {}
            }
        }
        self.status(id)
            .ok_or_else(|| Error::internal(format!("object {id}: no status")))
    }

    /// Object `id`'s fetched cutout (`[5, SIZE, SIZE]`) and its side, if ready.
    pub fn cutout(&self, id: i64) -> Option<Result<(Vec<f32>, usize), String>> {
        let path = match self.jobs().state.get(&id) {
            Some(Job::Ready(path)) => path.clone(),
            _ => return None,
        };
        Some(read_cutout(&path))
    }

    /// Takes queued objects one at a time, for the server's lifetime.
    fn work(&self) {
        loop {
            let id = {
                let mut jobs = self.jobs();
                loop {
                    if let Some(id) = jobs.queue.pop_front() {
                        jobs.state.insert(id, Job::Fetching);
                        break id;
                    }
                    jobs = self.wake.wait(jobs).unwrap_or_else(|e| e.into_inner());
                }
            };
            // A panic in the fetch (a frame no reader foresaw) fails this
            // object, not the one thread every later fetch waits on.
            let outcome =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.fetch_one(id)))
                    .unwrap_or_else(|_| Err("its fetch failed unexpectedly (a panic)".into()));
            let job = match outcome {
                Ok(path) => Job::Ready(path),
                Err(e) => {
                    crate::say!("archive: object {id}: {e}");
                    Job::Failed(super::error::redact(&e))
                }
            };
            self.jobs().state.insert(id, job);
        }
    }

    /// The field's frames into the cache (room made first), then the cutout.
    fn fetch_one(&self, id: i64) -> Result<PathBuf, String> {
        let (row, field) = self.objects[&id];
        let _lock = self
            .cache
            .lock()
            .map_err(|e| format!("the frame cache: {e}"))?
            .ok_or(
                "another cosmicai fetch is writing to the frame cache; try again when it ends",
            )?;
        let room = self
            .options
            .budget
            .saturating_sub(5 * ESTIMATED_FRAME_BYTES);
        self.cache
            .evict_to(room, &[field])
            .map_err(|e| format!("making room in the frame cache: {e}"))?;
        let jobs: Vec<FrameJob> = BANDS.map(|band| FrameJob { field, band }).into();
        let report = fetch(&self.cache, &jobs, &self.options, Arc::new(|_| {}))
            .map_err(|e| e.to_string())?;
        for (job, outcome) in &report.frames {
            let name = job.field.frame_file(job.band);
            match outcome {
                Outcome::Cached | Outcome::Downloaded { .. } => {}
                Outcome::Missing { status } => {
                    return Err(format!("the archive has no {name} (HTTP {status})"));
                }
                Outcome::OverBudget => {
                    return Err(format!("{name} does not fit the frame cache's budget"));
                }
                Outcome::Failed { attempts, error } => {
                    return Err(format!("{name}: {error} ({attempts} tries)"));
                }
            }
        }
        self.cache.touch(&field).map_err(|e| e.to_string())?;
        let opened = self
            .cache
            .field_files(&field)
            .open()
            .map_err(|e| e.to_string())?;
        let cutout = cut_catalog(&opened, &[row], SIZE)
            .into_iter()
            .next()
            .ok_or_else(|| {
                format!(
                    "RA {:.5}, Dec {:.5} lies outside field {}'s frames",
                    row.ra,
                    row.dec,
                    field.name()
                )
            })?;
        let mut partition = Partition::new(
            PartitionMeta::default(),
            vec![Source {
                name: "SDSS archive".into(),
                provenance: Provenance::Real,
                detail: format!(
                    "cut from SDSS frames {} (ugriz, nanomaggies) fetched from {}; {:.0}% inside the frames",
                    field.name(),
                    self.options.archive,
                    cutout.valid_fraction * 100.0
                ),
            }],
        );
        partition.push(row, 0);
        partition.images = Some(Images {
            height: SIZE,
            width: SIZE,
            pixels: cutout.pixels,
        });
        let path = cutout_path(&self.out, id);
        write_partition(&path, &partition).map_err(|e| e.to_string())?;
        // The budget holds after each object, this field included when it fits.
        self.cache
            .evict_to(self.options.budget, &[field])
            .map_err(|e| format!("trimming the frame cache: {e}"))?;
        Ok(path)
    }
}

fn cutout_path(out: &Path, id: i64) -> PathBuf {
    out.join(format!("{id}.safetensors"))
}

/// Ids of the cutouts in `DATA/fetched` (files named `ID.safetensors`).
fn fetched_ids(out: &Path) -> Vec<i64> {
    std::fs::read_dir(out)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            name.to_str()?.strip_suffix(".safetensors")?.parse().ok()
        })
        .collect()
}

fn read_cutout(path: &Path) -> Result<(Vec<f32>, usize), String> {
    let file = PartitionFile::open(path).map_err(|e| e.to_string())?;
    match file.image_size() {
        Some((h, w)) if h == w && file.len() == 1 => {
            Ok((file.read_images(0..1).map_err(|e| e.to_string())?, h))
        }
        _ => Err(format!("{}: not one square cutout", path.display())),
    }
}
