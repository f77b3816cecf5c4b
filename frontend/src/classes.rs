//! How the explorer shows a class: its colour on the map and the plots, and
//! its word. The sky's columns carry classes as letters ([`Class::letter`]).

use cosmicai_shared::Class;

/// A class's colour, on the map and the plots.
pub fn colour(class: Class) -> [u8; 3] {
    match class {
        Class::Galaxy => [255, 196, 84],
        Class::Star => [110, 170, 255],
        Class::Qso => [255, 92, 205],
        Class::Unknown => [140, 140, 140],
    }
}

/// The colour of a class letter from the sky's columns.
pub fn colour_of_letter(letter: u8) -> [u8; 3] {
    colour(Class::from_letter(letter))
}

/// A class in words, for the legend and the hover line.
pub fn word(class: Class) -> &'static str {
    match class {
        Class::Galaxy => "galaxy",
        Class::Star => "star",
        Class::Qso => "quasar",
        Class::Unknown => "unlabelled",
    }
}
