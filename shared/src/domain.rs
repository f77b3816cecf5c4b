//! The vocabulary of the survey: object classes, photometric bands, provenance.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Spectroscopic class of an SDSS object.
///
/// The numeric codes are the ones stored in partition files (`class` tensor).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "UPPERCASE")]
pub enum Class {
    Galaxy,
    Star,
    Qso,
    /// No spectroscopic class (for example sources detected in an image).
    Unknown,
}

impl Class {
    /// All classes, in code order.
    pub const ALL: [Class; 4] = [Class::Galaxy, Class::Star, Class::Qso, Class::Unknown];

    /// The byte stored in partition files.
    pub const fn code(self) -> u8 {
        match self {
            Class::Galaxy => 0,
            Class::Star => 1,
            Class::Qso => 2,
            Class::Unknown => 255,
        }
    }

    /// The class of a stored byte, or `None` for a byte no class uses.
    pub const fn from_code(code: u8) -> Option<Class> {
        match code {
            0 => Some(Class::Galaxy),
            1 => Some(Class::Star),
            2 => Some(Class::Qso),
            255 => Some(Class::Unknown),
            _ => None,
        }
    }

    /// The one letter the sky's columns carry for the class (`G`, `S`, `Q`,
    /// `U`: its name's first), so the server and the explorer agree.
    pub const fn letter(self) -> u8 {
        match self {
            Class::Galaxy => b'G',
            Class::Star => b'S',
            Class::Qso => b'Q',
            Class::Unknown => b'U',
        }
    }

    /// The class of a letter from [`Class::letter`]; any other is `Unknown`.
    pub const fn from_letter(letter: u8) -> Class {
        match letter {
            b'G' => Class::Galaxy,
            b'S' => Class::Star,
            b'Q' => Class::Qso,
            _ => Class::Unknown,
        }
    }

    /// The name SDSS uses (`GALAXY`, `STAR`, `QSO`), or `UNKNOWN`.
    pub const fn name(self) -> &'static str {
        match self {
            Class::Galaxy => "GALAXY",
            Class::Star => "STAR",
            Class::Qso => "QSO",
            Class::Unknown => "UNKNOWN",
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Class {
    type Err = String;

    /// Case-insensitive SDSS class names; `QUASAR` is accepted for `QSO`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "GALAXY" => Ok(Class::Galaxy),
            "STAR" => Ok(Class::Star),
            "QSO" | "QUASAR" => Ok(Class::Qso),
            "UNKNOWN" => Ok(Class::Unknown),
            _ => Err(format!(
                "unknown class '{s}' (expected GALAXY, STAR or QSO)"
            )),
        }
    }
}

/// One of the five SDSS photometric bands, in survey order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Band {
    U,
    G,
    R,
    I,
    Z,
}

/// The band order used everywhere: magnitudes `[N,5]` and images `[N,5,H,W]`.
pub const BANDS: [Band; 5] = [Band::U, Band::G, Band::R, Band::I, Band::Z];

impl Band {
    pub const fn letter(self) -> char {
        match self {
            Band::U => 'u',
            Band::G => 'g',
            Band::R => 'r',
            Band::I => 'i',
            Band::Z => 'z',
        }
    }

    /// Position of the band in `BANDS`.
    pub const fn index(self) -> usize {
        match self {
            Band::U => 0,
            Band::G => 1,
            Band::R => 2,
            Band::I => 3,
            Band::Z => 4,
        }
    }
}

/// Where an object's data came from. Accuracy is only ever claimed on `Real`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Provenance {
    /// Measured by the survey (catalog values, cutouts of real frames).
    Real,
    /// Made by CosmicAI's renderer; never used to claim accuracy.
    Synthetic,
}

impl Provenance {
    pub const fn name(self) -> &'static str {
        match self {
            Provenance::Real => "real",
            Provenance::Synthetic => "synthetic",
        }
    }
}

impl fmt::Display for Provenance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Provenance {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "real" => Ok(Provenance::Real),
            "synthetic" => Ok(Provenance::Synthetic),
            other => Err(format!(
                "unknown provenance '{other}' (expected real or synthetic)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_letters_are_their_names_first_and_read_back() {
        for class in Class::ALL {
            assert_eq!(class.letter(), class.name().as_bytes()[0]);
            assert_eq!(Class::from_letter(class.letter()), class);
        }
        assert_eq!(Class::from_letter(b'x'), Class::Unknown);
    }

    #[test]
    fn class_codes_round_trip_and_reject_unused_bytes() {
        for class in Class::ALL {
            assert_eq!(Class::from_code(class.code()), Some(class));
        }
        assert_eq!(Class::from_code(3), None);
    }

    #[test]
    fn class_names_parse_case_insensitively() {
        assert_eq!("galaxy".parse::<Class>(), Ok(Class::Galaxy));
        assert_eq!(" QSO ".parse::<Class>(), Ok(Class::Qso));
        assert!("comet".parse::<Class>().unwrap_err().contains("comet"));
    }
}
