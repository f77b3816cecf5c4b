//! SDSS corrected frames: one band of one field, pixels in nanomaggies, with its WCS.

use super::ImageryError;
use cosmicai_shared::{BANDS, Band};
use fitsrs::{Fits, HDU, Pixels};
use std::collections::BTreeMap;
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

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
        let bad = |problem: String| ImageryError::Frame {
            path: path.to_path_buf(),
            problem,
        };
        let raw = std::fs::read(path).map_err(|source| ImageryError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let bytes = if path.extension().is_some_and(|e| e == "bz2") {
            let mut out = Vec::with_capacity(raw.len() * 4);
            bzip2::read::BzDecoder::new(raw.as_slice())
                .read_to_end(&mut out)
                .map_err(|e| bad(format!("not a readable bzip2 stream: {e}")))?;
            out
        } else {
            raw
        };
        let mut fits = Fits::from_reader(Cursor::new(bytes));
        let hdu = match fits.next() {
            Some(Ok(HDU::Primary(hdu))) => hdu,
            Some(Ok(_)) => return Err(bad("first HDU is not an image".into())),
            Some(Err(e)) => return Err(bad(format!("not a FITS file: {e}"))),
            None => return Err(bad("empty FITS file".into())),
        };
        let (width, height) = match hdu.get_header().get_xtension().get_naxis() {
            [w, h] if *w > 0 && *h > 0 => (*w as usize, *h as usize),
            other => return Err(bad(format!("expected a 2-D image, found axes {other:?}"))),
        };
        let wcs = hdu
            .wcs()
            .map_err(|e| bad(format!("no usable WCS in the header: {e}")))?;
        let pixels: Vec<f32> = match fits.get_data(&hdu).pixels() {
            Pixels::F32(it) => it.collect(),
            Pixels::F64(it) => it.map(|v| v as f32).collect(),
            _ => {
                return Err(bad(
                    "pixels are not floating point (BITPIX -32 or -64)".into()
                ));
            }
        };
        if pixels.len() != width * height {
            return Err(bad(format!(
                "truncated: {} of {} pixels",
                pixels.len(),
                width * height
            )));
        }
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

/// Every complete field in `dir`, in name order. A field missing a band is an error naming it.
pub fn open_fields(dir: &Path) -> Result<Vec<Field>, ImageryError> {
    let entries = std::fs::read_dir(dir).map_err(|source| ImageryError::Io {
        path: dir.to_path_buf(),
        source,
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
    found
        .into_iter()
        .map(|(name, paths)| {
            let frames = BANDS
                .into_iter()
                .map(|band| match &paths[band.index()] {
                    Some(p) => Frame::open(p, band),
                    None => Err(ImageryError::Field {
                        path: dir.to_path_buf(),
                        problem: format!("field {name} has no {} frame", band.letter()),
                    }),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Field { name, frames })
        })
        .collect()
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
}
