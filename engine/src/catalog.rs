//! Real SDSS spectroscopic catalogs in CSV.
//!
//! Two schemas are read, with case-insensitive column names:
//! SkyServer exports (`objid,ra,dec,u,g,r,i,z,...,class,redshift`) and the
//! SDSS17 table (`obj_ID,alpha,delta,u,g,r,i,z,...,class,redshift`). A `.gz`
//! file is decompressed on the fly. Rows that cannot be trusted are skipped and
//! counted by reason; a missing required column is an error. Lines longer than
//! [`MAX_LINE_BYTES`] and gzip streams that expand past [`MAX_EXPANSION`] are refused.

use crate::archive::SdssField;
use crate::partition::{ObjectRow, object_id};
use cosmicai_shared::Class;
use flate2::read::MultiGzDecoder;
use serde::Serialize;
use std::cell::Cell;
use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{BufReader, ErrorKind, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Magnitudes at or beyond these are not measurements (SDSS writes -9999 for "none").
const MIN_MAGNITUDE: f32 = 0.0;
const MAX_MAGNITUDE: f32 = 35.0;

/// Which of the two known layouts a file uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Schema {
    /// SkyServer SQL export: `objid, ra, dec, ...`.
    Skyserver,
    /// SDSS17 table: `obj_ID, alpha, delta, ...`.
    Sdss17,
}

impl Schema {
    pub const fn name(self) -> &'static str {
        match self {
            Schema::Skyserver => "SkyServer",
            Schema::Sdss17 => "SDSS17",
        }
    }
}

/// Why a row was left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// A magnitude of -9999 (or below -999): SDSS's "no measurement".
    SentinelMagnitude,
    /// A magnitude <= 0 or >= 35.
    ImpossibleMagnitude,
    /// A magnitude that is not a number.
    UnreadableMagnitude,
    MissingClass,
    UnknownClass,
    /// RA/Dec missing, not numbers, or outside the sky.
    BadCoordinates,
    /// Fewer fields than the header.
    ShortRow,
    /// Same position (to 1e-6 deg) as an object already read.
    DuplicatePosition,
}

impl SkipReason {
    pub fn describe(self) -> &'static str {
        match self {
            SkipReason::SentinelMagnitude => "sentinel magnitude (-9999: no measurement)",
            SkipReason::ImpossibleMagnitude => "impossible magnitude (<= 0 or >= 35)",
            SkipReason::UnreadableMagnitude => "magnitude is not a number",
            SkipReason::MissingClass => "missing class",
            SkipReason::UnknownClass => "class is not GALAXY, STAR or QSO",
            SkipReason::BadCoordinates => "missing or impossible RA/Dec",
            SkipReason::ShortRow => "row has fewer fields than the header",
            SkipReason::DuplicatePosition => "duplicate of an object already read (same RA/Dec)",
        }
    }
}

/// Rows skipped for one reason, with the first line where it happened.
#[derive(Debug, Clone, Serialize)]
pub struct SkipCount {
    pub rows: usize,
    pub first_line: u64,
}

/// What reading one catalog file did.
#[derive(Debug, Clone, Serialize)]
pub struct CatalogReport {
    pub file: PathBuf,
    pub schema: Schema,
    /// Data rows read (header excluded).
    pub rows: usize,
    pub kept: usize,
    /// Kept rows whose redshift was empty or not a number (stored as unknown).
    pub unknown_redshift: usize,
    pub skipped: BTreeMap<SkipReason, SkipCount>,
}

impl CatalogReport {
    pub fn skipped_rows(&self) -> usize {
        self.skipped.values().map(|s| s.rows).sum()
    }
}

/// A catalog file that cannot be read at all.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog {}: cannot read: {source}", file.display())]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("catalog {}: line {line}: {message}", file.display())]
    Csv {
        file: PathBuf,
        line: u64,
        message: String,
    },
    #[error("catalog {}: missing required column `{column}` (columns found: {found})", file.display())]
    MissingColumn {
        file: PathBuf,
        column: String,
        found: String,
    },
}

/// Column positions of the fields we use.
struct Columns {
    ra: usize,
    dec: usize,
    mags: [usize; 5],
    class: usize,
    redshift: Option<usize>,
    /// run, rerun, camcol, field: the SDSS imaging field a row was measured on.
    field: Option<[usize; 4]>,
}

impl Columns {
    fn find(file: &Path, header: &csv::StringRecord) -> Result<(Columns, Schema), CatalogError> {
        let names: Vec<String> = header
            .iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .collect();
        let position = |alternatives: &[&str]| {
            names
                .iter()
                .position(|n| alternatives.contains(&n.as_str()))
        };
        let require = |alternatives: &[&str]| {
            position(alternatives).ok_or_else(|| CatalogError::MissingColumn {
                file: file.to_path_buf(),
                column: alternatives.join("` or `"),
                found: header.iter().collect::<Vec<_>>().join(","),
            })
        };
        let schema = if position(&["alpha"]).is_some() || position(&["obj_id"]).is_some() {
            Schema::Sdss17
        } else {
            Schema::Skyserver
        };
        let columns = Columns {
            ra: require(&["ra", "alpha"])?,
            dec: require(&["dec", "delta"])?,
            mags: [
                require(&["u"])?,
                require(&["g"])?,
                require(&["r"])?,
                require(&["i"])?,
                require(&["z"])?,
            ],
            class: require(&["class"])?,
            redshift: position(&["redshift", "z_spec", "specz"]),
            field: match (
                position(&["run", "run_id"]),
                position(&["rerun", "rerun_id"]),
                position(&["camcol", "cam_col"]),
                position(&["field", "field_id"]),
            ) {
                (Some(run), Some(rerun), Some(camcol), Some(field)) => {
                    Some([run, rerun, camcol, field])
                }
                _ => None,
            },
        };
        Ok((columns, schema))
    }

    /// One CSV row as an object, or the reason to skip it.
    fn parse(&self, record: &csv::StringRecord) -> Result<(ObjectRow, bool), SkipReason> {
        let field = |i: usize| record.get(i).ok_or(SkipReason::ShortRow);
        let mut magnitudes = [0f32; 5];
        for (m, &col) in magnitudes.iter_mut().zip(&self.mags) {
            let value: f32 = field(col)?
                .trim()
                .parse()
                .map_err(|_| SkipReason::UnreadableMagnitude)?;
            if value <= -999.0 {
                return Err(SkipReason::SentinelMagnitude);
            }
            if !value.is_finite() || value <= MIN_MAGNITUDE || value >= MAX_MAGNITUDE {
                return Err(SkipReason::ImpossibleMagnitude);
            }
            *m = value;
        }
        let coordinate = |i: usize, range: std::ops::RangeInclusive<f64>| {
            field(i)?
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|v| range.contains(v))
                .ok_or(SkipReason::BadCoordinates)
        };
        let ra = coordinate(self.ra, 0.0..=360.0)?;
        let dec = coordinate(self.dec, -90.0..=90.0)?;
        let class_text = field(self.class)?.trim();
        if class_text.is_empty() {
            return Err(SkipReason::MissingClass);
        }
        let class: Class = class_text.parse().map_err(|_| SkipReason::UnknownClass)?;
        if class == Class::Unknown {
            return Err(SkipReason::MissingClass);
        }
        let redshift = match self.redshift {
            Some(col) => field(col)?
                .trim()
                .parse::<f32>()
                .ok()
                // Sentinels (-9999) and impossible values are no label.
                .filter(|z| crate::metrics::LABELS.contains(z)),
            None => None,
        };
        let row = ObjectRow {
            object_id: object_id(ra, dec),
            ra,
            dec,
            magnitudes,
            redshift: redshift.unwrap_or(f32::NAN),
            class,
        };
        Ok((row, redshift.is_some()))
    }

    /// The imaging field a row names, if the catalog has the columns and the
    /// row's values are field numbers.
    fn field(&self, record: &csv::StringRecord) -> Option<SdssField> {
        let [run, rerun, camcol, field] = self.field?.map(|i| record.get(i));
        SdssField::parse(run?, rerun?, camcol?, field?)
    }
}

/// One catalog file read into memory.
#[derive(Debug)]
pub struct Catalog {
    pub objects: Vec<ObjectRow>,
    /// The imaging field of each object (same order as `objects`), where the
    /// catalog names one: what `cosmicai fetch` downloads frames for.
    pub fields: Vec<Option<SdssField>>,
    pub report: CatalogReport,
}

/// Reads the objects of many catalog files, skipping duplicates across them.
///
/// `progress` is told the number of data rows read so far in the current file.
/// The longest CSV line accepted: a catalog row is about 200 bytes.
pub const MAX_LINE_BYTES: usize = 1 << 20;
/// How many times a gzip catalog may expand (CSV of numbers expands 2 to 5
/// times; a bomb of repeated bytes a thousand times), checked past 64 MiB.
pub const MAX_EXPANSION: u64 = 100;
const EXPANSION_CHECKED_FROM: u64 = 64 << 20;

/// Bytes read through a reader (the compressed side of a gzip stream).
struct Counted<R> {
    inner: R,
    read: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.set(self.read.get() + n as u64);
        Ok(n)
    }
}

/// Catalog text with its bounds enforced as it is read, so the CSV reader never
/// buffers an endless line and a gzip bomb stops early.
struct Bounded<R> {
    inner: R,
    /// Bytes since the last newline, and lines so far.
    line_bytes: usize,
    lines: u64,
    out: u64,
    compressed: Option<Rc<Cell<u64>>>,
}

impl<R> Bounded<R> {
    fn new(inner: R, compressed: Option<Rc<Cell<u64>>>) -> Self {
        Bounded {
            inner,
            line_bytes: 0,
            lines: 1,
            out: 0,
            compressed,
        }
    }
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        for &b in &buf[..n] {
            if b == b'\n' {
                self.line_bytes = 0;
                self.lines += 1;
            } else {
                self.line_bytes += 1;
            }
        }
        let refuse = |problem: String| Err(std::io::Error::new(ErrorKind::InvalidData, problem));
        if self.line_bytes > MAX_LINE_BYTES {
            return refuse(format!(
                "line {} is longer than {} MiB: not a catalog row",
                self.lines,
                MAX_LINE_BYTES >> 20
            ));
        }
        self.out += n as u64;
        if let Some(compressed) = &self.compressed
            && self.out > EXPANSION_CHECKED_FROM
            && self.out > MAX_EXPANSION * compressed.get().max(1)
        {
            return refuse(format!(
                "the gzip stream expands more than {MAX_EXPANSION} times ({} MiB from {} KiB): not a catalog",
                self.out >> 20,
                compressed.get() >> 10
            ));
        }
        Ok(n)
    }
}

pub fn read_catalogs(
    files: &[PathBuf],
    mut progress: impl FnMut(&Path, usize),
) -> Result<Vec<Catalog>, CatalogError> {
    let mut seen = HashSet::new();
    files
        .iter()
        .map(|f| read_catalog(f, &mut seen, |rows| progress(f, rows)))
        .collect()
}

/// Reads one catalog; objects whose id is already in `seen` are skipped as duplicates.
pub fn read_catalog(
    file: &Path,
    seen: &mut HashSet<i64>,
    mut progress: impl FnMut(usize),
) -> Result<Catalog, CatalogError> {
    let io = |source| CatalogError::Io {
        file: file.to_path_buf(),
        source,
    };
    let raw = File::open(file).map_err(io)?;
    let input: Box<dyn Read> = if file.extension().is_some_and(|e| e == "gz") {
        let read = Rc::new(Cell::new(0));
        let counted = Counted {
            inner: BufReader::new(raw),
            read: read.clone(),
        };
        // Every member: a concatenated (or bgzip-made) file is one catalog.
        Box::new(Bounded::new(MultiGzDecoder::new(counted), Some(read)))
    } else {
        Box::new(Bounded::new(BufReader::new(raw), None))
    };
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(input);
    let csv_error = |e: csv::Error| CatalogError::Csv {
        file: file.to_path_buf(),
        line: e.position().map_or(0, |p| p.line()),
        message: e.to_string(),
    };
    let header = reader.headers().map_err(csv_error)?.clone();
    if header.iter().all(|h| h.trim().is_empty()) {
        return Err(CatalogError::Csv {
            file: file.to_path_buf(),
            line: 1,
            message: "no header row (empty file?)".into(),
        });
    }
    let (columns, schema) = Columns::find(file, &header)?;

    let mut report = CatalogReport {
        file: file.to_path_buf(),
        schema,
        rows: 0,
        kept: 0,
        unknown_redshift: 0,
        skipped: BTreeMap::new(),
    };
    let mut objects = Vec::new();
    let mut fields = Vec::new();
    let mut record = csv::StringRecord::new();
    while reader.read_record(&mut record).map_err(csv_error)? {
        report.rows += 1;
        if report.rows.is_multiple_of(4096) {
            progress(report.rows);
        }
        let line = record.position().map_or(0, |p| p.line());
        let parsed = columns.parse(&record).and_then(|(row, has_z)| {
            if seen.insert(row.object_id) {
                Ok((row, has_z))
            } else {
                Err(SkipReason::DuplicatePosition)
            }
        });
        match parsed {
            Ok((row, has_z)) => {
                report.unknown_redshift += usize::from(!has_z);
                objects.push(row);
                fields.push(columns.field(&record));
            }
            Err(reason) => {
                report
                    .skipped
                    .entry(reason)
                    .or_insert(SkipCount {
                        rows: 0,
                        first_line: line,
                    })
                    .rows += 1;
            }
        }
    }
    progress(report.rows);
    report.kept = objects.len();
    Ok(Catalog {
        objects,
        fields,
        report,
    })
}
