//! The partition: CosmicAI's unit of data and of work.
//!
//! One partition is one safetensors file (see `docs/partition-format.md`):
//! columns of equal length `N`, one row per object, plus string metadata that
//! says which survey, bands, units and sources the objects come from. Images
//! are optional: a catalog-only partition (magnitudes, no pixels) is valid.

mod error;
mod read;
mod write;

pub use error::PartitionError;
pub use read::{PartitionFile, read_partition};
pub use write::{
    create_dir_synced, rename_synced, temp_file_in, write_atomically, write_partition,
};

use cosmicai_shared::{Class, Provenance};
use serde::{Deserialize, Serialize};

/// Value of the `format` metadata key; other safetensors files are rejected.
pub const FORMAT: &str = "cosmicai.partition";
/// Value of the `format_version` metadata key this code reads and writes.
pub const FORMAT_VERSION: &str = "1";
/// Band order of `magnitudes` and `images`, as written in the `bands` key.
pub const BANDS_KEY: &str = "u,g,r,i,z";
/// File extension of partition files.
pub const EXTENSION: &str = "safetensors";

/// Where a group of objects came from. Each object points at one source.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Source {
    /// Short name, e.g. the catalog file name or the SDSS field.
    pub name: String,
    pub provenance: Provenance,
    /// Free text: survey release, how it was made.
    #[serde(default)]
    pub detail: String,
}

/// Per-file description of the pixels and magnitudes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionMeta {
    pub survey: String,
    /// Arcseconds per pixel of the images (SDSS: 0.396).
    pub pixel_scale_arcsec: f64,
    /// Unit of image pixels (SDSS corrected frames: nanomaggies).
    pub image_units: String,
}

impl Default for PartitionMeta {
    fn default() -> Self {
        PartitionMeta {
            survey: "SDSS".into(),
            pixel_scale_arcsec: 0.396,
            image_units: "nanomaggies".into(),
        }
    }
}

/// Cutouts of every object: `[N, 5, height, width]` f32, band order u,g,r,i,z.
#[derive(Debug, Clone, PartialEq)]
pub struct Images {
    pub height: usize,
    pub width: usize,
    /// `N * 5 * height * width` values, object-major.
    pub pixels: Vec<f32>,
}

impl Images {
    pub fn empty(height: usize, width: usize) -> Self {
        Images {
            height,
            width,
            pixels: Vec::new(),
        }
    }

    /// Number of f32 values one object's cutout takes.
    pub fn values_per_object(&self) -> usize {
        5 * self.height * self.width
    }

    /// The 5-band cutout of object `i`.
    pub fn object(&self, i: usize) -> &[f32] {
        let n = self.values_per_object();
        &self.pixels[i * n..(i + 1) * n]
    }
}

/// A partition in memory: columns of one row per object.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Partition {
    pub meta: PartitionMeta,
    pub sources: Vec<Source>,
    /// Stable identifier (see [`object_id`]); below 2^53 so JSON and JavaScript keep it exact.
    pub object_id: Vec<i64>,
    /// Right ascension and declination, degrees (J2000); NaN when unknown.
    pub ra: Vec<f64>,
    pub dec: Vec<f64>,
    /// ugriz SDSS asinh magnitudes, always finite.
    pub magnitudes: Vec<[f32; 5]>,
    /// Spectroscopic redshift; NaN when unknown.
    pub redshift: Vec<f32>,
    pub class: Vec<Class>,
    /// Index into `sources`.
    pub source: Vec<u32>,
    pub images: Option<Images>,
}

/// One object's catalog values, as a row of a [`Partition`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ObjectRow {
    pub object_id: i64,
    pub ra: f64,
    pub dec: f64,
    pub magnitudes: [f32; 5],
    pub redshift: f32,
    pub class: Class,
}

impl Partition {
    /// An empty partition whose objects will all come from `sources`.
    pub fn new(meta: PartitionMeta, sources: Vec<Source>) -> Self {
        Partition {
            meta,
            sources,
            ..Default::default()
        }
    }

    /// `objects` made-up galaxies, with blank `side` x `side` cutouts where a
    /// side is given: for tests and benches of what reads partitions, not
    /// their values (marked synthetic).
    #[doc(hidden)]
    pub fn blank(objects: usize, side: Option<usize>) -> Self {
        let source = Source {
            name: "blank".into(),
            provenance: Provenance::Synthetic,
            detail: "made-up objects for tests".into(),
        };
        let mut p = Partition::new(PartitionMeta::default(), vec![source]);
        for i in 0..objects {
            let row = ObjectRow {
                object_id: i as i64 + 1,
                ra: 10.0,
                dec: 0.0,
                magnitudes: [19.0; 5],
                redshift: 0.1,
                class: Class::Galaxy,
            };
            p.push(row, 0);
        }
        p.images = side.map(|side| Images {
            height: side,
            width: side,
            pixels: vec![0.0; objects * 5 * side * side],
        });
        p
    }

    pub fn len(&self) -> usize {
        self.object_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.object_id.is_empty()
    }

    /// Appends one object from source number `source` (an index into `sources`).
    pub fn push(&mut self, row: ObjectRow, source: u32) {
        self.object_id.push(row.object_id);
        self.ra.push(row.ra);
        self.dec.push(row.dec);
        self.magnitudes.push(row.magnitudes);
        self.redshift.push(row.redshift);
        self.class.push(row.class);
        self.source.push(source);
    }

    /// Object `i` as a row.
    pub fn row(&self, i: usize) -> ObjectRow {
        ObjectRow {
            object_id: self.object_id[i],
            ra: self.ra[i],
            dec: self.dec[i],
            magnitudes: self.magnitudes[i],
            redshift: self.redshift[i],
            class: self.class[i],
        }
    }

    /// Provenance of object `i`, through its source.
    pub fn provenance(&self, i: usize) -> Provenance {
        self.sources[self.source[i] as usize].provenance
    }

    /// Index of `source` in this partition's sources, adding it if new.
    pub fn source_index(&mut self, source: &Source) -> u32 {
        match self.sources.iter().position(|s| s == source) {
            Some(i) => i as u32,
            None => {
                self.sources.push(source.clone());
                (self.sources.len() - 1) as u32
            }
        }
    }
}

/// Bytes one object takes in a partition file, excluding the header.
pub fn bytes_per_object(image_size: Option<(usize, usize)>) -> usize {
    // object_id i64, ra f64, dec f64, magnitudes 5xf32, redshift f32, class u8, source u32
    let catalog = 8 + 8 + 8 + 20 + 4 + 1 + 4;
    catalog + image_size.map_or(0, |(h, w)| 5 * h * w * 4)
}

/// A stable object identifier from the sky position.
///
/// The public catalogs we ship had their 64-bit SDSS objids mangled into
/// floats by spreadsheets, so ids are derived from RA/Dec rounded to 1e-6 deg
/// (0.0036"): the same object gets the same id in every import, whatever the
/// row order. FNV-1a, truncated to 53 bits so it is exact in JSON numbers.
pub fn object_id(ra: f64, dec: f64) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let ra_micro = (ra * 1e6).round() as i64;
    let dec_micro = (dec * 1e6).round() as i64;
    for byte in ra_micro
        .to_le_bytes()
        .into_iter()
        .chain(dec_micro.to_le_bytes())
    {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash & ((1u64 << 53) - 1)) as i64
}
