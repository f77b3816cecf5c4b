//! The object index: every object of the served datasets in memory, with the
//! shipped model's prediction; images stay in the (memory-mapped) partitions.

use anyhow::Result;
use cosmicai_engine::dataset::list_partitions;
use cosmicai_engine::imagery::cutout::valid_fraction;
use cosmicai_engine::partition::PartitionFile;
use cosmicai_shared::api::{ClassCounts, ObjectSummary, Prediction};
use cosmicai_shared::{Class, Provenance};
use std::collections::HashMap;
use std::path::Path;

/// The datasets under the data directory that the explorer browses, in order.
pub const DATASETS: [&str; 3] = ["catalog", "real", "synthetic"];

pub struct Entry {
    pub summary: ObjectSummary,
    pub source_detail: String,
    pub prediction: Prediction,
    pub valid_fraction: Option<f32>,
    file: usize,
    row: usize,
}

/// The fields the listing filters on, packed, so a query scans 16 bytes per object.
#[derive(Clone, Copy)]
struct Key {
    redshift: f32,
    r: f32,
    class: Class,
    provenance: Provenance,
    has_image: bool,
}

pub struct ObjectIndex {
    pub objects: Vec<Entry>,
    keys: Vec<Key>,
    by_id: HashMap<i64, usize>,
    files: Vec<PartitionFile>,
}

impl ObjectIndex {
    /// Reads every partition of [`DATASETS`] under `data_dir` and predicts every object.
    pub fn load(data_dir: &Path) -> Result<ObjectIndex> {
        let model = crate::models::load_photoz(None)?;
        let mut index = ObjectIndex {
            objects: Vec::new(),
            keys: Vec::new(),
            by_id: HashMap::new(),
            files: Vec::new(),
        };
        for dataset in DATASETS {
            let dir = data_dir.join(dataset);
            if !dir.is_dir() {
                continue;
            }
            for path in list_partitions(&dir)? {
                let file = PartitionFile::open(&path)?;
                let part = file.catalog();
                let predictions = cosmicai_engine::predict::predict_photoz::<crate::models::Cpu>(
                    &model,
                    &part.magnitudes,
                    4096,
                    &Default::default(),
                );
                let file_index = index.files.len();
                for (row, p) in predictions.iter().enumerate() {
                    let id = part.object_id[row];
                    if index.by_id.contains_key(&id) {
                        continue; // the first dataset that holds an object wins
                    }
                    let source = &part.sources[part.source[row] as usize];
                    let provenance = source.provenance;
                    let has_image = file.image_size().is_some();
                    let valid = match (has_image, provenance) {
                        (false, _) => None,
                        (true, Provenance::Synthetic) => Some(1.0),
                        (true, Provenance::Real) => {
                            Some(valid_fraction(&file.images(row..row + 1)))
                        }
                    };
                    let finite = |v: f64| v.is_finite().then_some(v);
                    index.by_id.insert(id, index.objects.len());
                    index.keys.push(Key {
                        redshift: part.redshift[row],
                        r: part.magnitudes[row][2],
                        class: part.class[row],
                        provenance,
                        has_image,
                    });
                    index.objects.push(Entry {
                        summary: ObjectSummary {
                            id,
                            ra: finite(part.ra[row]),
                            dec: finite(part.dec[row]),
                            class: part.class[row],
                            redshift: part.redshift[row].is_finite().then_some(part.redshift[row]),
                            magnitudes: part.magnitudes[row],
                            provenance,
                            source: source.name.clone(),
                            has_image,
                        },
                        source_detail: source.detail.clone(),
                        prediction: Prediction {
                            model: "photoz (shipped)".into(),
                            redshift: p.redshift,
                            class: p.class,
                            class_probabilities: p.class_probability,
                        },
                        valid_fraction: valid,
                        file: file_index,
                        row,
                    });
                }
                index.files.push(file);
            }
        }
        anyhow::ensure!(
            !index.objects.is_empty(),
            "no objects under {} (expected partitions in {})",
            data_dir.display(),
            DATASETS.join(", ")
        );
        Ok(index)
    }

    pub fn get(&self, id: i64) -> Option<&Entry> {
        self.by_id.get(&id).map(|&i| &self.objects[i])
    }

    /// The `[5, size, size]` cutout of `entry` and its size, when it has one.
    pub fn image(&self, entry: &Entry) -> Option<(Vec<f32>, usize)> {
        let file = &self.files[entry.file];
        let (h, _) = file.image_size()?;
        Some((file.images(entry.row..entry.row + 1), h))
    }

    pub fn image_size(&self, entry: &Entry) -> Option<usize> {
        self.files[entry.file].image_size().map(|(h, _)| h)
    }
}

/// Filters and order of `GET /api/objects`, parsed from the query string.
#[derive(Debug, Default)]
pub struct ObjectQuery {
    pub class: Option<Class>,
    pub z_min: Option<f32>,
    pub z_max: Option<f32>,
    pub r_min: Option<f32>,
    pub r_max: Option<f32>,
    pub provenance: Option<Provenance>,
    pub has_image: Option<bool>,
    pub sort: Sort,
    pub offset: usize,
    pub limit: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub enum Sort {
    #[default]
    Id,
    Redshift,
    RedshiftDesc,
    RMag,
}

/// Most objects one page returns.
pub const MAX_LIMIT: usize = 1000;

impl ObjectQuery {
    /// Parses the query parameters; an error names the parameter and what is wrong.
    pub fn parse(params: &HashMap<String, String>) -> Result<ObjectQuery, String> {
        fn number<T: std::str::FromStr>(
            params: &HashMap<String, String>,
            key: &str,
        ) -> Result<Option<T>, String> {
            params
                .get(key)
                .map(|v| {
                    v.trim()
                        .parse::<T>()
                        .map_err(|_| format!("{key}={v:?} is not a number"))
                })
                .transpose()
        }
        let finite = |key: &str, v: Option<f32>| match v {
            Some(x) if !x.is_finite() => Err(format!("{key} must be finite")),
            other => Ok(other),
        };
        let class = match params.get("class").map(|c| c.to_ascii_uppercase()) {
            None => None,
            Some(c) => Some(
                Class::ALL
                    .into_iter()
                    .find(|k| k.name() == c)
                    .ok_or_else(|| format!("class={c:?}: use GALAXY, STAR, QSO or UNKNOWN"))?,
            ),
        };
        let provenance = match params.get("provenance").map(|p| p.to_ascii_lowercase()) {
            None => None,
            Some(p) if p == "real" => Some(Provenance::Real),
            Some(p) if p == "synthetic" => Some(Provenance::Synthetic),
            Some(p) => return Err(format!("provenance={p:?}: use real or synthetic")),
        };
        let has_image = match params.get("has_image").map(String::as_str) {
            None => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(v) => return Err(format!("has_image={v:?}: use true or false")),
        };
        let sort = match params.get("sort").map(String::as_str) {
            None | Some("id") => Sort::Id,
            Some("redshift") => Sort::Redshift,
            Some("-redshift") => Sort::RedshiftDesc,
            Some("r") => Sort::RMag,
            Some(v) => return Err(format!("sort={v:?}: use id, redshift, -redshift or r")),
        };
        let limit = number::<usize>(params, "limit")?.unwrap_or(60);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(format!("limit={limit}: use 1 to {MAX_LIMIT}"));
        }
        Ok(ObjectQuery {
            class,
            z_min: finite("z_min", number(params, "z_min")?)?,
            z_max: finite("z_max", number(params, "z_max")?)?,
            r_min: finite("r_min", number(params, "r_min")?)?,
            r_max: finite("r_max", number(params, "r_max")?)?,
            provenance,
            has_image,
            sort,
            offset: number(params, "offset")?.unwrap_or(0),
            limit,
        })
    }

    fn matches(&self, k: &Key) -> bool {
        let z = k.redshift;
        let z_ok = (self.z_min.is_none() && self.z_max.is_none())
            || (z.is_finite()
                && self.z_min.is_none_or(|lo| z >= lo)
                && self.z_max.is_none_or(|hi| z <= hi));
        z_ok && self.class.is_none_or(|c| k.class == c)
            && self.r_min.is_none_or(|lo| k.r >= lo)
            && self.r_max.is_none_or(|hi| k.r <= hi)
            && self.provenance.is_none_or(|p| k.provenance == p)
            && self.has_image.is_none_or(|h| k.has_image == h)
    }

    /// The page of matching objects, the number of matches and their counts per class.
    pub fn select<'a>(
        &self,
        index: &'a ObjectIndex,
    ) -> (Vec<&'a ObjectSummary>, usize, ClassCounts) {
        let mut counts = ClassCounts::default();
        let mut hits: Vec<u32> = Vec::new();
        for (i, k) in index.keys.iter().enumerate() {
            if !self.matches(k) {
                continue;
            }
            match k.class {
                Class::Galaxy => counts.galaxy += 1,
                Class::Star => counts.star += 1,
                Class::Qso => counts.qso += 1,
                Class::Unknown => counts.unknown += 1,
            }
            hits.push(i as u32);
        }
        let key = |i: &u32| index.keys[*i as usize];
        match self.sort {
            Sort::Id => {}
            Sort::Redshift => hits.sort_by(|a, b| key(a).redshift.total_cmp(&key(b).redshift)),
            // Objects without a redshift go last either way.
            Sort::RedshiftDesc => hits.sort_by(|a, b| {
                let z = |i: &u32| {
                    Some(key(i).redshift)
                        .filter(|z| z.is_finite())
                        .unwrap_or(f32::NEG_INFINITY)
                };
                z(b).total_cmp(&z(a))
            }),
            Sort::RMag => hits.sort_by(|a, b| key(a).r.total_cmp(&key(b).r)),
        }
        let total = hits.len();
        let page = hits
            .iter()
            .skip(self.offset)
            .take(self.limit)
            .map(|&i| &index.objects[i as usize].summary)
            .collect();
        (page, total, counts)
    }
}
