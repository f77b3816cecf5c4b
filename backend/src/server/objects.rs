//! The object index: every object of the served datasets in memory, with the
//! shipped model's prediction; images stay in the (memory-mapped) partitions.

use anyhow::Result;
use cosmicai_engine::dataset::list_partitions;
use cosmicai_engine::imagery::cutout::valid_fraction;
use cosmicai_engine::partition::{ObjectRow, PartitionFile, Source};
use cosmicai_shared::api::{ClassCounts, ObjectSummary, Prediction, SkyPoints};
use cosmicai_shared::{Class, Provenance};
use std::collections::HashMap;
use std::path::Path;

/// The datasets under the data directory that the explorer browses, in order:
/// an object in two takes the first one's entry, so a catalog object whose real
/// cutout was fetched from the SDSS archive (`fetched/`, see `archive`) shows it.
pub const DATASETS: [&str; 4] = ["fetched", "catalog", "real", "synthetic"];

pub struct Entry {
    pub summary: ObjectSummary,
    pub source_detail: String,
    pub prediction: Prediction,
    pub valid_fraction: Option<f32>,
    file: usize,
    row: usize,
}

/// The fields the listing filters on, as columns, so a query is one tight
/// branch-free pass (about 9 bytes per object) instead of a walk over entries.
#[derive(Default)]
struct Columns {
    redshift: Vec<f32>,
    r: Vec<f32>,
    /// u−g, g−r and r−i, for the colour cuts that the explorer's plots make.
    colours: Vec<[f32; 3]>,
    /// Bits 0-1: the class's slot in `Class::ALL`; bit 2: synthetic; bit 3: has an image.
    tag: Vec<u8>,
    /// Object positions in each sort order, made once at load so a sorted page
    /// is a walk that stops after `offset + limit` matches.
    by_redshift: Vec<u32>,
    by_redshift_desc: Vec<u32>,
    by_r: Vec<u32>,
    /// See [`Sort::Showcase`].
    showcase: Vec<u32>,
}

const SYNTHETIC: u8 = 1 << 2;
const HAS_IMAGE: u8 = 1 << 3;

fn class_slot(class: Class) -> u8 {
    Class::ALL.iter().position(|&c| c == class).unwrap_or(3) as u8
}

impl Columns {
    fn push(
        &mut self,
        redshift: f32,
        magnitudes: [f32; 5],
        class: Class,
        provenance: Provenance,
        has_image: bool,
    ) {
        self.redshift.push(redshift);
        self.r.push(magnitudes[2]);
        self.colours.push(colours(magnitudes));
        let synthetic = if provenance == Provenance::Synthetic {
            SYNTHETIC
        } else {
            0
        };
        let image = if has_image { HAS_IMAGE } else { 0 };
        self.tag.push(class_slot(class) | synthetic | image);
    }

    fn sort_orders(&mut self) {
        let z = &self.redshift;
        let all = || (0..z.len() as u32).collect::<Vec<u32>>();
        // Objects without a redshift go last in both directions.
        let finite_first =
            |a: u32, b: u32| z[b as usize].is_finite().cmp(&z[a as usize].is_finite());
        self.by_redshift = all();
        self.by_redshift
            .sort_by(|&a, &b| finite_first(a, b).then(z[a as usize].total_cmp(&z[b as usize])));
        self.by_redshift_desc = all();
        self.by_redshift_desc
            .sort_by(|&a, &b| finite_first(a, b).then(z[b as usize].total_cmp(&z[a as usize])));
        let r = &self.r;
        self.by_r = all();
        self.by_r
            .sort_by(|&a, &b| r[a as usize].total_cmp(&r[b as usize]));
        self.showcase = showcase_order(&self.tag);
    }
}

pub struct ObjectIndex {
    pub objects: Vec<Entry>,
    /// `GET /api/sky`'s body, made once: the index does not change while serving.
    pub sky: axum::body::Bytes,
    columns: Columns,
    by_id: HashMap<i64, usize>,
    files: Vec<PartitionFile>,
}

impl ObjectIndex {
    /// Reads every partition of [`DATASETS`] under `data_dir` and predicts every object.
    pub fn load(data_dir: &Path) -> Result<ObjectIndex> {
        let model = crate::models::load_photoz(None)?;
        let mut index = ObjectIndex {
            objects: Vec::new(),
            sky: Default::default(),
            columns: Columns::default(),
            by_id: HashMap::new(),
            files: Vec::new(),
        };
        for dataset in DATASETS {
            let dir = data_dir.join(dataset);
            if !dir.is_dir() {
                continue;
            }
            // An empty folder is an empty dataset (`fetched/` before any fetch).
            let paths = match list_partitions(&dir) {
                Err(cosmicai_engine::dataset::DatasetError::NoPartitions(_)) => Vec::new(),
                paths => paths?,
            };
            for path in paths {
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
                    let has_image = square_side(&file).is_some();
                    let valid = match (has_image, provenance) {
                        (false, _) => None,
                        (true, Provenance::Synthetic) => Some(1.0),
                        (true, Provenance::Real) => {
                            Some(valid_fraction(&file.images(row..row + 1)))
                        }
                    };
                    let finite = |v: f64| v.is_finite().then_some(v);
                    index.by_id.insert(id, index.objects.len());
                    index.columns.push(
                        part.redshift[row],
                        part.magnitudes[row],
                        part.class[row],
                        provenance,
                        has_image,
                    );
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
                        prediction: Prediction::of("photoz (shipped)", p, true),
                        valid_fraction: valid,
                        file: file_index,
                        row,
                    });
                }
                index.files.push(file);
            }
        }
        index.columns.sort_orders();
        index.sky = serde_json::to_vec(&index.sky_points())?.into();
        anyhow::ensure!(
            !index.objects.is_empty(),
            "no objects under {} (expected partitions in {})",
            data_dir.display(),
            DATASETS.join(", ")
        );
        Ok(index)
    }

    /// Every object with a position, for the sky map.
    fn sky_points(&self) -> SkyPoints {
        let mut sky = SkyPoints::default();
        // The colours as the filter column holds them, so both count the same objects.
        for (e, &c) in self.objects.iter().zip(&self.columns.colours) {
            let o = &e.summary;
            let (Some(ra), Some(dec)) = (o.ra, o.dec) else {
                continue;
            };
            if !(ra.is_finite() && dec.is_finite()) {
                continue;
            }
            sky.ids.push(o.id);
            sky.ra.push(ra as f32);
            sky.dec.push(dec as f32);
            sky.classes.push(char::from(o.class.letter()));
            sky.redshift.push(o.redshift.filter(|z| z.is_finite()));
            let r = o.magnitudes[2];
            sky.r.push(r.is_finite().then_some(r));
            sky.colours
                .push(c.iter().all(|v| v.is_finite()).then_some(c));
            sky.provenance
                .push(if o.provenance == Provenance::Synthetic {
                    's'
                } else {
                    'r'
                });
        }
        sky
    }

    pub fn get(&self, id: i64) -> Option<&Entry> {
        self.by_id.get(&id).map(|&i| &self.objects[i])
    }

    /// Object `i`'s catalog row (no image) and its source, as its partition holds them.
    pub fn catalog_row(&self, i: usize) -> (ObjectRow, &Source) {
        let entry = &self.objects[i];
        let part = self.files[entry.file].catalog();
        (
            part.row(entry.row),
            &part.sources[part.source[entry.row] as usize],
        )
    }

    /// The `[5, size, size]` cutout of `entry` and its size, when it has one;
    /// an error when its partition changed on disk since the server started.
    pub fn image(
        &self,
        entry: &Entry,
    ) -> Result<Option<(Vec<f32>, usize)>, cosmicai_engine::partition::PartitionError> {
        let file = &self.files[entry.file];
        let Some(side) = square_side(file) else {
            return Ok(None);
        };
        Ok(Some((file.read_images(entry.row..entry.row + 1)?, side)))
    }

    pub fn image_size(&self, entry: &Entry) -> Option<usize> {
        square_side(&self.files[entry.file])
    }
}

/// The side of a partition's cutouts when they are square: the views and
/// `/api/cutouts` show square cutouts only (a partition may hold others, which
/// are then served as objects without an image).
fn square_side(file: &PartitionFile) -> Option<usize> {
    file.image_size().filter(|(h, w)| h == w).map(|(h, _)| h)
}

/// What a first page should show: labelled objects with real images, then
/// labelled synthetic renderings, then labelled objects without an image, then
/// unlabelled detections; within each tier the classes take turns (galaxy,
/// star, quasar, ...), so a page shows the sky's variety, not one class.
fn showcase_order(tags: &[u8]) -> Vec<u32> {
    let tier = |tag: u8| -> usize {
        let labelled = tag & 3 != 3;
        match (labelled, tag & HAS_IMAGE != 0, tag & SYNTHETIC != 0) {
            (true, true, false) => 0,
            (true, true, true) => 1,
            (true, false, _) => 2,
            (false, _, _) => 3,
        }
    };
    // tiers x class slots, each in id order
    let mut lists = vec![vec![Vec::new(); 4]; 4];
    for (i, &tag) in tags.iter().enumerate() {
        lists[tier(tag)][(tag & 3) as usize].push(i as u32);
    }
    let mut order = Vec::with_capacity(tags.len());
    for tier in lists {
        let longest = tier.iter().map(Vec::len).max().unwrap_or(0);
        for k in 0..longest {
            order.extend(tier.iter().filter_map(|class| class.get(k)));
        }
    }
    order
}

/// Filters and order of `GET /api/objects`, parsed from the query string.
#[derive(Debug, Default)]
pub struct ObjectQuery {
    pub class: Option<Class>,
    pub z_min: Option<f32>,
    pub z_max: Option<f32>,
    pub r_min: Option<f32>,
    pub r_max: Option<f32>,
    /// Colour cuts (`ug_min`, `ug_max`, `gr_min`, …): u−g, g−r, r−i.
    pub colour_min: [Option<f32>; 3],
    pub colour_max: [Option<f32>; 3],
    pub provenance: Option<Provenance>,
    pub has_image: Option<bool>,
    /// Only these objects, in this order (`ids=1,2,3`; at most [`MAX_LIMIT`]).
    pub ids: Option<Vec<i64>>,
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
    /// Labelled objects with images first, the classes taking turns (the
    /// explorer's first page); see `showcase_order`.
    Showcase,
}

/// Most objects one page returns.
pub const MAX_LIMIT: usize = 1000;

impl ObjectQuery {
    /// Parses the query parameters; an error names the parameter and what is wrong.
    pub fn parse(params: &HashMap<String, String>) -> Result<ObjectQuery, String> {
        // A mistyped key (`clas=STAR`) would widen the query to every object:
        // refused by name instead.
        if let Some(key) = params
            .keys()
            .filter(|k| !QUERY_KEYS.contains(&k.as_str()))
            .min()
        {
            return Err(format!(
                "{key}: not a parameter of this query (use {})",
                QUERY_KEYS.join(", ")
            ));
        }
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
            Some("showcase") => Sort::Showcase,
            Some(v) => {
                return Err(format!(
                    "sort={v:?}: use id, redshift, -redshift, r or showcase"
                ));
            }
        };
        let ids = match params.get("ids") {
            None => None,
            Some(list) => {
                let ids = list
                    .split(',')
                    .filter(|s| !s.trim().is_empty())
                    .take(MAX_LIMIT + 1)
                    .map(|s| {
                        s.trim()
                            .parse::<i64>()
                            .map_err(|_| format!("ids: {s:?} is not an object id"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if ids.len() > MAX_LIMIT {
                    return Err(format!("ids: at most {MAX_LIMIT} objects at once"));
                }
                Some(ids)
            }
        };
        let mut colour_min = [None; 3];
        let mut colour_max = [None; 3];
        for (k, name) in COLOUR_NAMES.iter().enumerate() {
            let key = format!("{name}_min");
            colour_min[k] = finite(&key, number(params, &key)?)?;
            let key = format!("{name}_max");
            colour_max[k] = finite(&key, number(params, &key)?)?;
        }
        let limit = number::<usize>(params, "limit")?.unwrap_or(60);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(format!("limit={limit}: use 1 to {MAX_LIMIT}"));
        }
        let z_min = finite("z_min", number(params, "z_min")?)?;
        let z_max = finite("z_max", number(params, "z_max")?)?;
        let r_min = finite("r_min", number(params, "r_min")?)?;
        let r_max = finite("r_max", number(params, "r_max")?)?;
        // A range that holds nothing is a slip, not a question: said, not
        // answered with an empty page.
        let ranges = [("z", z_min, z_max), ("r", r_min, r_max)]
            .into_iter()
            .chain((0..3).map(|k| (COLOUR_NAMES[k], colour_min[k], colour_max[k])));
        for (name, lo, hi) in ranges {
            if let (Some(lo), Some(hi)) = (lo, hi)
                && lo > hi
            {
                return Err(format!(
                    "{name}_min={lo} is above {name}_max={hi}: no object lies between"
                ));
            }
        }
        Ok(ObjectQuery {
            class,
            z_min,
            z_max,
            r_min,
            r_max,
            colour_min,
            colour_max,
            provenance,
            has_image,
            ids,
            sort,
            offset: number(params, "offset")?.unwrap_or(0),
            limit,
        })
    }

    /// The query as one test on the columns; unset bounds accept everything,
    /// including objects without a redshift.
    fn filter(&self) -> Filter {
        let mut mask = 0;
        let mut want = 0;
        if let Some(c) = self.class {
            mask |= 3;
            want |= class_slot(c);
        }
        if let Some(p) = self.provenance {
            mask |= SYNTHETIC;
            want |= if p == Provenance::Synthetic {
                SYNTHETIC
            } else {
                0
            };
        }
        if let Some(h) = self.has_image {
            mask |= HAS_IMAGE;
            want |= if h { HAS_IMAGE } else { 0 };
        }
        Filter {
            mask,
            want,
            z_on: self.z_min.is_some() || self.z_max.is_some(),
            z_lo: self.z_min.unwrap_or(f32::NEG_INFINITY),
            z_hi: self.z_max.unwrap_or(f32::INFINITY),
            r_on: self.r_min.is_some() || self.r_max.is_some(),
            r_lo: self.r_min.unwrap_or(f32::NEG_INFINITY),
            r_hi: self.r_max.unwrap_or(f32::INFINITY),
            colour_on: std::array::from_fn(|k| {
                self.colour_min[k].is_some() || self.colour_max[k].is_some()
            }),
            colour_lo: self.colour_min.map(|v| v.unwrap_or(f32::NEG_INFINITY)),
            colour_hi: self.colour_max.map(|v| v.unwrap_or(f32::INFINITY)),
        }
    }

    /// Every matching object's position in the index, each once, in index order
    /// (the ids' objects when the query names ids).
    pub fn positions(&self, index: &ObjectIndex) -> Vec<usize> {
        let columns = &index.columns;
        let filter = self.filter();
        let mut positions: Vec<usize> = match &self.ids {
            Some(ids) => ids
                .iter()
                .filter_map(|id| index.by_id.get(id).copied())
                .filter(|&i| filter.accepts_at(columns, i))
                .collect(),
            None => (0..columns.tag.len())
                .filter(|&i| filter.accepts_at(columns, i))
                .collect(),
        };
        positions.sort_unstable();
        positions.dedup();
        positions
    }

    /// The page of matching objects, the number of matches and their counts per class.
    pub fn select<'a>(
        &self,
        index: &'a ObjectIndex,
    ) -> (Vec<&'a ObjectSummary>, usize, ClassCounts) {
        let columns = &index.columns;
        let filter = self.filter();
        if let Some(ids) = &self.ids {
            // A given list (a selection on the sky map): its objects, in its order.
            let mut per_slot = [0usize; 4];
            let chosen: Vec<usize> = ids
                .iter()
                .filter_map(|id| index.by_id.get(id).copied())
                .filter(|&i| filter.accepts_at(columns, i))
                .collect();
            for &i in &chosen {
                per_slot[(columns.tag[i] & 3) as usize] += 1;
            }
            let page = chosen
                .iter()
                .skip(self.offset)
                .take(self.limit)
                .map(|&i| &index.objects[i].summary)
                .collect();
            return (page, chosen.len(), counts_of(per_slot));
        }
        // Pass 1, branch-free so it vectorises: counts per class.
        let mut per_slot = [0usize; 4];
        for (i, &tag) in columns.tag.iter().enumerate() {
            per_slot[(tag & 3) as usize] += filter.accepts_at(columns, i) as usize;
        }
        let counts = counts_of(per_slot);
        // Pass 2: walk the requested order until the page is full.
        let accepts = |&i: &u32| {
            let i = i as usize;
            filter.accepts_at(columns, i)
        };
        let pick = |order: &mut dyn Iterator<Item = u32>| -> Vec<&'a ObjectSummary> {
            order
                .skip(self.offset)
                .take(self.limit)
                .map(|i| &index.objects[i as usize].summary)
                .collect()
        };
        let page = match self.sort {
            Sort::Id => pick(&mut (0..columns.tag.len() as u32).filter(accepts)),
            Sort::Redshift => pick(&mut columns.by_redshift.iter().copied().filter(accepts)),
            Sort::RedshiftDesc => {
                pick(&mut columns.by_redshift_desc.iter().copied().filter(accepts))
            }
            Sort::RMag => pick(&mut columns.by_r.iter().copied().filter(accepts)),
            Sort::Showcase => pick(&mut columns.showcase.iter().copied().filter(accepts)),
        };
        (page, per_slot.iter().sum(), counts)
    }
}

fn counts_of(per_slot: [usize; 4]) -> ClassCounts {
    ClassCounts {
        galaxy: per_slot[0],
        star: per_slot[1],
        qso: per_slot[2],
        unknown: per_slot[3],
    }
}

/// An [`ObjectQuery`]'s filters in the columns' terms.
struct Filter {
    mask: u8,
    want: u8,
    z_on: bool,
    z_lo: f32,
    z_hi: f32,
    r_on: bool,
    r_lo: f32,
    r_hi: f32,
    colour_on: [bool; 3],
    colour_lo: [f32; 3],
    colour_hi: [f32; 3],
}

impl Filter {
    /// Whether object `i` of the columns passes.
    #[inline]
    fn accepts_at(&self, columns: &Columns, i: usize) -> bool {
        let (z, r, c, tag) = (
            columns.redshift[i],
            columns.r[i],
            columns.colours[i],
            columns.tag[i],
        );
        let within = |on: bool, v: f32, lo: f32, hi: f32| !on | ((v >= lo) & (v <= hi));
        // `&` rather than `&&`: no branches in the counting loop.
        (tag & self.mask == self.want)
            & within(self.z_on, z, self.z_lo, self.z_hi)
            & within(self.r_on, r, self.r_lo, self.r_hi)
            & within(
                self.colour_on[0],
                c[0],
                self.colour_lo[0],
                self.colour_hi[0],
            )
            & within(
                self.colour_on[1],
                c[1],
                self.colour_lo[1],
                self.colour_hi[1],
            )
            & within(
                self.colour_on[2],
                c[2],
                self.colour_lo[2],
                self.colour_hi[2],
            )
    }
}

/// The colours' names in query parameters (`ug_min=0.5`): u−g, g−r, r−i.
pub const COLOUR_NAMES: [&str; 3] = ["ug", "gr", "ri"];

/// Every key an object query takes; the last three page a listing.
pub const QUERY_KEYS: [&str; 17] = [
    "class",
    "z_min",
    "z_max",
    "r_min",
    "r_max",
    "ug_min",
    "ug_max",
    "gr_min",
    "gr_max",
    "ri_min",
    "ri_max",
    "provenance",
    "has_image",
    "ids",
    "sort",
    "offset",
    "limit",
];

/// u−g, g−r and r−i of ugriz magnitudes, to a thousandth of a magnitude (far
/// below their errors; the sky columns carry the same values, so the explorer's
/// plots count exactly what a cut lists). NaN where a magnitude is unknown, so
/// that no cut accepts it.
pub fn colours(m: [f32; 5]) -> [f32; 3] {
    [m[0] - m[1], m[1] - m[2], m[2] - m[3]].map(|v| (v * 1000.0).round() / 1000.0)
}
