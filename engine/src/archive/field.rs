//! An SDSS imaging field (run, rerun, camcol, field) and where its frames live.

use cosmicai_shared::Band;
use serde::Serialize;
use std::fmt;

/// One SDSS imaging field: the unit the archive serves frames in (one per band).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct SdssField {
    pub run: u32,
    pub rerun: u32,
    pub camcol: u8,
    pub field: u32,
}

impl SdssField {
    /// A field from catalog text, or `None` where a value is not a field number
    /// SDSS could have written (runs and fields have at most 6 and 4 digits,
    /// camera columns are 1 to 6).
    pub fn parse(run: &str, rerun: &str, camcol: &str, field: &str) -> Option<SdssField> {
        // SkyServer exports sometimes write integers as floats ("2820.0").
        let number = |text: &str, max: u32| -> Option<u32> {
            let value: f64 = text.trim().parse().ok()?;
            (value.fract() == 0.0 && (0.0..=f64::from(max)).contains(&value))
                .then_some(value as u32)
        };
        let camcol = number(camcol, 6).filter(|&c| c >= 1)?;
        Some(SdssField {
            run: number(run, 999_999).filter(|&r| r >= 1)?,
            rerun: number(rerun, 999_999)?,
            camcol: camcol as u8,
            field: number(field, 9_999)?,
        })
    }

    /// `002820-3-0122`: the field's part of a frame's file name.
    pub fn name(&self) -> String {
        format!("{:06}-{}-{:04}", self.run, self.camcol, self.field)
    }

    /// `frame-r-002820-3-0122.fits.bz2`.
    pub fn frame_file(&self, band: Band) -> String {
        format!("frame-{}-{}.fits.bz2", band.letter(), self.name())
    }

    /// The frame's path under the archive's `frames/` root, as the Science Archive
    /// Server lays it out: `301/2820/3/frame-r-002820-3-0122.fits.bz2`.
    pub fn frame_path(&self, band: Band) -> String {
        format!(
            "{}/{}/{}/{}",
            self.rerun,
            self.run,
            self.camcol,
            self.frame_file(band)
        )
    }
}

impl fmt::Display for SdssField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (rerun {})", self.name(), self.rerun)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_archive_layout() {
        let field = SdssField::parse("2820", "301", "3", "122").unwrap();
        assert_eq!(field.frame_file(Band::R), "frame-r-002820-3-0122.fits.bz2");
        assert_eq!(
            field.frame_path(Band::U),
            "301/2820/3/frame-u-002820-3-0122.fits.bz2"
        );
        assert_eq!(
            SdssField::parse("752.0", "301", "4", "267").unwrap().run,
            752
        );
    }

    #[test]
    fn impossible_values_are_not_fields() {
        for (run, rerun, camcol, field) in [
            ("0", "301", "3", "122"),
            ("2820", "301", "7", "122"),
            ("2820", "301", "0", "122"),
            ("2820", "301", "3", "10000"),
            ("2820.5", "301", "3", "122"),
            ("-1", "301", "3", "122"),
            ("1e300", "301", "3", "122"),
            ("NaN", "301", "3", "122"),
            ("", "301", "3", "122"),
            ("2820", "../..", "3", "122"),
        ] {
            assert_eq!(
                SdssField::parse(run, rerun, camcol, field),
                None,
                "{run} {rerun} {camcol} {field}"
            );
        }
    }
}
