//! SDSS corrected frames: one band of one field, pixels in nanomaggies, with its WCS.

use super::ImageryError;
use cosmicai_shared::{BANDS, Band};
use fitsrs::{Fits, HDU, Pixels};
use std::collections::BTreeMap;
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

/// The most FITS data a frame file may hold (decompressed): an SDSS frame
/// (2048 x 1489 f32) has 12 MiB.
pub const MAX_FRAME_BYTES: u64 = 256 << 20;

/// One band of one field.
pub struct Frame {
    pub path: PathBuf,
    pub band: Band,
    pub width: usize,
    pub height: usize,
    /// Row-major, `height` rows of `width` pixels (FITS order: x fastest).
    pub pixels: Vec<f32>,
    wcs: wcs::WCS,
}

impl Frame {
    /// Reads HDU 0 of a `.fits` or `.fits.bz2` file.
    pub fn open(path: &Path, band: Band) -> Result<Frame, ImageryError> {
        Frame::read(path, band, path.extension().is_some_and(|e| e == "bz2"))
    }

    /// Checks that a file, whatever its name, is a whole bzip2 stream holding a
    /// frame this module can read (a FITS image with a usable WCS): what a
    /// download must be before it enters a frame cache.
    pub fn check_compressed(path: &Path, band: Band) -> Result<(), ImageryError> {
        Frame::read(path, band, true).map(drop)
    }

    fn read(path: &Path, band: Band, bz2: bool) -> Result<Frame, ImageryError> {
        let bad = |problem: String| ImageryError::Frame {
            path: path.to_path_buf(),
            problem,
        };
        let io = |source| ImageryError::Io {
            path: path.to_path_buf(),
            error: source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let too_big = || {
            bad(format!(
                "holds more than {} MiB of FITS data, the most a frame may have (an SDSS frame has 12 MiB)",
                MAX_FRAME_BYTES >> 20
            ))
        };
        // Read at most one byte past the limit: a bzip2 bomb (kilobytes that
        // expand to gigabytes) stops there.
        let mut bytes = Vec::new();
        if bz2 {
            bzip2::read::BzDecoder::new(std::io::BufReader::new(file))
                .take(MAX_FRAME_BYTES + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| bad(format!("not a readable bzip2 stream: {e}")))?;
        } else {
            file.take(MAX_FRAME_BYTES + 1)
                .read_to_end(&mut bytes)
                .map_err(io)?;
        }
        if bytes.len() as u64 > MAX_FRAME_BYTES {
            return Err(too_big());
        }
        // fitsrs multiplies the header's axis lengths unchecked (it overflows on
        // NAXIS1 = NAXIS2 = 2^32), so the primary header is checked first.
        check_primary_sizes(&bytes).map_err(bad)?;
        // fitsrs and wcs-rs index header strings by byte offsets and panic on
        // some malformed cards (a lone quote, for one) that the checks above
        // let through: their panic is this file's error, not the process's end.
        let (width, height, wcs, pixels) =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decode(bytes)))
                .map_err(|_| bad("the FITS reader failed on this header".into()))?
                .map_err(bad)?;
        Ok(Frame {
            path: path.to_path_buf(),
            band,
            width,
            height,
            pixels,
            wcs,
        })
    }

    /// Zero-based pixel position (x = column, y = row) of a sky position in degrees.
    ///
    /// Found by Newton's method on [`Frame::sky_of`]: wcs-rs 0.4.2's own forward
    /// projection does not round-trip with its inverse on SDSS frames (whose CD
    /// matrix is rotated by 90°): it was off by up to half a pixel, while the
    /// inverse agrees with astropy to 1e-11 degrees.
    pub fn pixel_of(&self, ra: f64, dec: f64) -> Option<(f64, f64)> {
        let lonlat = wcs::LonLat::new(ra.to_radians(), dec.to_radians());
        let start = self.wcs.proj(&lonlat).map(|p| (p.x() - 1.0, p.y() - 1.0));
        let (mut x, mut y) = start.filter(|(x, y)| x.is_finite() && y.is_finite())?;
        let cos_dec = dec.to_radians().cos();
        // Offset on the sky from (x, y) to the target, in degrees of arc.
        let offset = |x: f64, y: f64| -> Option<(f64, f64)> {
            let (r, d) = self.sky_of(x, y)?;
            let dra = (ra - r + 540.0).rem_euclid(360.0) - 180.0;
            Some((dra * cos_dec, dec - d))
        };
        for _ in 0..20 {
            let (fx, fy) = offset(x, y)?;
            let (ax, ay) = offset(x + 1.0, y)?;
            let (bx, by) = offset(x, y + 1.0)?;
            // Columns of the Jacobian: how the offset changes per pixel in x and in y.
            let (j11, j21, j12, j22) = (fx - ax, fy - ay, fx - bx, fy - by);
            let det = j11 * j22 - j12 * j21;
            if det == 0.0 || !det.is_finite() {
                return None;
            }
            let dx = (fx * j22 - j12 * fy) / det;
            let dy = (j11 * fy - fx * j21) / det;
            x += dx;
            y += dy;
            if dx.abs() < 1e-9 && dy.abs() < 1e-9 {
                break;
            }
        }
        (x.is_finite() && y.is_finite()).then_some((x, y))
    }

    /// Sky position (degrees) of a zero-based pixel position.
    pub fn sky_of(&self, x: f64, y: f64) -> Option<(f64, f64)> {
        let xy = wcs::ImgXY::new(x + 1.0, y + 1.0);
        self.wcs
            .unproj(&xy)
            .map(|l| (l.lon().to_degrees().rem_euclid(360.0), l.lat().to_degrees()))
    }

    /// The pixel at (x, y), or `None` outside the frame.
    pub fn at(&self, x: i64, y: i64) -> Option<f32> {
        (x >= 0 && y >= 0 && (x as usize) < self.width && (y as usize) < self.height)
            .then(|| self.pixels[y as usize * self.width + x as usize])
    }
}

/// The five bands of one field.
pub struct Field {
    /// `RUN-CAMCOL-FIELD`, e.g. `002820-3-0122`.
    pub name: String,
    /// Indexed by `Band::index()` (u, g, r, i, z).
    pub frames: Vec<Frame>,
}

impl Field {
    pub fn band(&self, band: Band) -> &Frame {
        &self.frames[band.index()]
    }
}

/// A checked FITS file's first image: its size, WCS and pixels.
fn decode(bytes: Vec<u8>) -> Result<(usize, usize, wcs::WCS, Vec<f32>), String> {
    let mut fits = Fits::from_reader(Cursor::new(bytes));
    let hdu = match fits.next() {
        Some(Ok(HDU::Primary(hdu))) => hdu,
        Some(Ok(_)) => return Err("first HDU is not an image".into()),
        Some(Err(e)) => return Err(format!("not a FITS file: {e}")),
        None => return Err("empty FITS file".into()),
    };
    let (width, height) = match hdu.get_header().get_xtension().get_naxis() {
        [w, h] if *w > 0 && *h > 0 => (*w as usize, *h as usize),
        other => return Err(format!("expected a 2-D image, found axes {other:?}")),
    };
    let wcs = hdu
        .wcs()
        .map_err(|e| format!("no usable WCS in the header: {e}"))?;
    let pixels: Vec<f32> = match fits.get_data(&hdu).pixels() {
        Pixels::F32(it) => it.collect(),
        Pixels::F64(it) => it.map(|v| v as f32).collect(),
        _ => {
            return Err("pixels are not floating point (BITPIX -32 or -64)".into());
        }
    };
    if pixels.len() != width * height {
        return Err(format!(
            "truncated: {} of {} pixels",
            pixels.len(),
            width * height
        ));
    }
    Ok((width, height, wcs, pixels))
}

/// Checks that the primary header's BITPIX and NAXISn describe no more data
/// than `bytes` holds, with every product checked; reads at most 36 header
/// blocks (1,296 cards, SDSS frames have about 150).
fn check_primary_sizes(bytes: &[u8]) -> Result<(), String> {
    const CARD: usize = 80;
    const MAX_CARDS: usize = 36 * 36;
    if !bytes.starts_with(b"SIMPLE  =") {
        return Err("not a FITS file (it does not start with SIMPLE)".into());
    }
    let (mut bitpix, mut axes) = (None, Vec::new());
    let mut naxis = None;
    for (i, card) in bytes.chunks(CARD).take(MAX_CARDS).enumerate() {
        // FITS headers are printable ASCII (FITS 4.0, section 4.1.1).
        if let Some(b) = card.iter().find(|b| !(0x20..=0x7e).contains(*b)) {
            return Err(format!(
                "header card {} holds byte 0x{b:02x}: FITS headers are printable ASCII",
                i + 1
            ));
        }
        let text = String::from_utf8_lossy(card);
        let key = text.get(..8).unwrap_or("").trim_end();
        if key == "END" {
            let bitpix: i64 = bitpix.ok_or("the header has no BITPIX")?;
            if ![8, 16, 32, 64, -32, -64].contains(&bitpix) {
                return Err(format!("BITPIX {bitpix} is not one FITS defines"));
            }
            let n = naxis.ok_or("the header has no NAXIS")?;
            if axes.len() != n {
                return Err(format!(
                    "NAXIS is {n} but {} axis lengths are given",
                    axes.len()
                ));
            }
            let size = axes
                .iter()
                .try_fold(bitpix.unsigned_abs() / 8, |size: u64, axis: &u64| {
                    size.checked_mul(*axis)
                });
            return match size {
                Some(size) if size <= bytes.len() as u64 => Ok(()),
                _ => Err(format!(
                    "header says {} pixels of {} bits, more than its {} bytes hold",
                    axes.iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join(" x "),
                    bitpix.unsigned_abs(),
                    bytes.len()
                )),
            };
        }
        let value = || {
            text.get(10..)
                .and_then(|v| v.split('/').next())
                .map(str::trim)
                .unwrap_or("")
        };
        let number = |what: &str| {
            value()
                .parse::<i64>()
                .map_err(|_| format!("{what} is not a whole number: {:?}", value()))
        };
        match key {
            "BITPIX" => bitpix = Some(number("BITPIX")?),
            "NAXIS" => {
                let n = number("NAXIS")?;
                if !(0..=999).contains(&n) {
                    return Err(format!("NAXIS {n} is outside 0 to 999"));
                }
                naxis = Some(n as usize);
            }
            k if k.starts_with("NAXIS") => {
                let n = number(k)?;
                axes.push(u64::try_from(n).map_err(|_| format!("{k} {n} is negative"))?);
            }
            // The pixels are read as they are stored (fitsrs applies no scale),
            // as SDSS frames' nanomaggies: a scaled image or another unit would
            // be read as wrong fluxes with no word.
            "BSCALE" | "BZERO" => {
                let wanted = if key == "BSCALE" { 1.0 } else { 0.0 };
                let found = value()
                    .parse::<f64>()
                    .map_err(|_| format!("{key} is not a number: {:?}", value()))?;
                if found != wanted {
                    return Err(format!(
                        "{key} is {found}: scaled pixels are not read (SDSS frames have BSCALE 1, BZERO 0)"
                    ));
                }
            }
            "BUNIT" => {
                // A quoted string, which may hold '/' (a comment's mark elsewhere).
                let raw = text.get(10..).unwrap_or("").trim_start();
                let unit = raw
                    .strip_prefix('\'')
                    .and_then(|r| r.split('\'').next())
                    .unwrap_or_else(value)
                    .trim();
                if !unit.is_empty() && !unit.to_ascii_lowercase().starts_with("nanomagg") {
                    return Err(format!(
                        "BUNIT is {unit:?}: pixels are read as nanomaggies, as SDSS frames give them"
                    ));
                }
            }
            _ => {}
        }
    }
    Err("no END card in the first 36 header blocks".into())
}

/// `frame-r-002820-3-0122.fits.bz2` → (`r`, `002820-3-0122`).
fn parse_frame_name(name: &str) -> Option<(Band, String)> {
    let rest = name.strip_prefix("frame-")?;
    let stem = rest
        .strip_suffix(".fits.bz2")
        .or_else(|| rest.strip_suffix(".fits"))?;
    let (band, field) = stem.split_once('-')?;
    let band = BANDS
        .into_iter()
        .find(|b| band.len() == 1 && b.letter() == band.chars().next().unwrap_or(' '))?;
    Some((band, field.to_string()))
}

/// The five frame files of one field, not yet read (a frame is 12 MiB in memory:
/// a directory of many fields is read one field at a time).
pub struct FieldFiles {
    /// `RUN-CAMCOL-FIELD`, e.g. `002820-3-0122`.
    pub name: String,
    /// Indexed by `Band::index()`.
    pub paths: [PathBuf; 5],
}

impl FieldFiles {
    pub fn open(&self) -> Result<Field, ImageryError> {
        let frames = BANDS
            .into_iter()
            .map(|band| Frame::open(&self.paths[band.index()], band))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Field {
            name: self.name.clone(),
            frames,
        })
    }
}

/// The fields of a frame directory: those with all five bands, and those a
/// band short (a fetch that failed or was cut short, or `--bands` chose fewer).
pub struct FieldListing {
    pub complete: Vec<FieldFiles>,
    /// `RUN-CAMCOL-FIELD` and the bands it lacks.
    pub incomplete: Vec<(String, Vec<Band>)>,
}

/// Every field in `dir`, in name order, without reading them. Only a directory
/// with no frame at all is an error; fields short of a band are listed apart.
pub fn list_fields(dir: &Path) -> Result<FieldListing, ImageryError> {
    let entries = std::fs::read_dir(dir).map_err(|source| ImageryError::Io {
        path: dir.to_path_buf(),
        error: source,
    })?;
    let mut found: BTreeMap<String, [Option<PathBuf>; 5]> = BTreeMap::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some((band, field)) = parse_frame_name(&name) {
            found.entry(field).or_default()[band.index()] = Some(entry.path());
        }
    }
    if found.is_empty() {
        return Err(ImageryError::Field {
            path: dir.to_path_buf(),
            problem: "no SDSS frames here (expected frame-{u,g,r,i,z}-RUN-CAMCOL-FIELD.fits[.bz2])"
                .into(),
        });
    }
    let mut listing = FieldListing {
        complete: Vec::new(),
        incomplete: Vec::new(),
    };
    for (name, paths) in found {
        match paths {
            [Some(u), Some(g), Some(r), Some(i), Some(z)] => listing.complete.push(FieldFiles {
                name,
                paths: [u, g, r, i, z],
            }),
            paths => {
                let missing = BANDS
                    .into_iter()
                    .filter(|b| paths[b.index()].is_none())
                    .collect();
                listing.incomplete.push((name, missing));
            }
        }
    }
    Ok(listing)
}

/// Every field in `dir`, read, in name order. A field missing a band is an
/// error naming it: calibration and synthesis want exactly the fields given.
pub fn open_fields(dir: &Path) -> Result<Vec<Field>, ImageryError> {
    let listing = list_fields(dir)?;
    if let Some((name, missing)) = listing.incomplete.first() {
        return Err(ImageryError::Field {
            path: dir.to_path_buf(),
            problem: format!(
                "field {name} has no {} frame",
                missing.first().map_or('?', |b| b.letter())
            ),
        });
    }
    listing.complete.iter().map(FieldFiles::open).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_names() {
        assert_eq!(
            parse_frame_name("frame-r-002820-3-0122.fits.bz2"),
            Some((Band::R, "002820-3-0122".into()))
        );
        assert_eq!(
            parse_frame_name("frame-z-1-2-3.fits"),
            Some((Band::Z, "1-2-3".into()))
        );
        assert_eq!(parse_frame_name("frame-x-1-2-3.fits"), None);
        assert_eq!(parse_frame_name("psField-002820-3-0122.fit"), None);
    }

    /// A primary header of `cards` (each padded to 80), 1 x 1 pixel of f32.
    fn header(cards: &[&str]) -> Vec<u8> {
        let mut all = vec![
            "SIMPLE  =                    T",
            "BITPIX  =                  -32",
            "NAXIS   =                    2",
            "NAXIS1  =                    1",
            "NAXIS2  =                    1",
        ];
        all.extend_from_slice(cards);
        all.push("END");
        let mut bytes: Vec<u8> = all
            .iter()
            .flat_map(|c| format!("{c:<80}").into_bytes())
            .collect();
        bytes.resize(2880 + 2880, 0);
        bytes
    }

    #[test]
    fn scaled_pixels_and_other_units_are_refused_by_name() {
        // As an SDSS frame's header has them.
        let sdss = [
            "BZERO   =              0.00000 /Set by MRD_SCALE",
            "BSCALE  =              1.00000 /Set by MRD_SCALE",
            "BUNIT   = 'nanomaggy'          / 1 nanomaggy = 3.631e-6 Jy",
        ];
        assert_eq!(check_primary_sizes(&header(&sdss)), Ok(()));
        assert_eq!(check_primary_sizes(&header(&[])), Ok(()));
        let e = check_primary_sizes(&header(&["BSCALE  =                  2.5"])).unwrap_err();
        assert!(e.contains("BSCALE is 2.5"), "{e}");
        let e = check_primary_sizes(&header(&["BZERO   =                32768"])).unwrap_err();
        assert!(e.contains("BZERO is 32768"), "{e}");
        let e = check_primary_sizes(&header(&["BUNIT   = 'MJy/sr'"])).unwrap_err();
        assert!(e.contains("MJy/sr") && e.contains("nanomaggies"), "{e}");
    }
}
