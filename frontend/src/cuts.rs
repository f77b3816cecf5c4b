//! Cuts: the selection that links Explore, the plots and the sky. A cut is a
//! class, a provenance, and ranges on redshift, r magnitude and the colours
//! u−g, g−r, r−i, written in the link's query with the API's own parameter names
//! (`#/plots?gr_min=0.3&gr_max=0.8&class=GALAXY`), so each page reads the same
//! selection and `GET /api/objects` lists exactly it.

/// A quantity an object can be cut on, with its plot axis.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Axis {
    Ug,
    Gr,
    Ri,
    R,
    Z,
}

impl Axis {
    pub const ALL: [Axis; 5] = [Axis::Ug, Axis::Gr, Axis::Ri, Axis::R, Axis::Z];

    /// The name in query parameters (`NAME_min`, `NAME_max`).
    pub fn key(self) -> &'static str {
        match self {
            Axis::Ug => "ug",
            Axis::Gr => "gr",
            Axis::Ri => "ri",
            Axis::R => "r",
            Axis::Z => "z",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Axis::Ug => "u − g",
            Axis::Gr => "g − r",
            Axis::Ri => "r − i",
            Axis::R => "r magnitude",
            Axis::Z => "spectroscopic z",
        }
    }

    /// The plot's range and tick step: where nearly all of the bundled catalogs'
    /// objects lie (quasars beyond z = 2 are counted, not drawn).
    pub fn range(self) -> (f32, f32, f32) {
        match self {
            Axis::Ug => (-0.5, 3.5, 0.5),
            Axis::Gr => (-0.5, 2.0, 0.5),
            Axis::Ri => (-0.5, 1.5, 0.5),
            Axis::R => (13.0, 23.0, 2.0),
            Axis::Z => (0.0, 2.0, 0.5),
        }
    }

    /// Its place in [`Axis::ALL`] (and in [`Values`]).
    pub fn slot(self) -> usize {
        Axis::ALL.iter().position(|&a| a == self).unwrap_or(0)
    }
}

/// One object's values on every axis, in [`Axis::ALL`]'s order (None: unknown).
pub type Values = [Option<f32>; 5];

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Cuts {
    /// `GALAXY`, `STAR`, `QSO` or `UNKNOWN`.
    pub class: Option<String>,
    /// `real` or `synthetic`.
    pub provenance: Option<String>,
    /// Per axis, in [`Axis::ALL`]'s order: lower and upper bounds.
    pub ranges: [(Option<f32>, Option<f32>); 5],
}

impl Cuts {
    /// The cuts in the current link.
    pub fn from_link() -> Cuts {
        let number = |key: String| {
            crate::hash_param(&key)
                .and_then(|v| v.parse::<f32>().ok())
                .filter(|v| v.is_finite())
        };
        let word = |key: &str| crate::hash_param(key).filter(|v| !v.is_empty());
        Cuts {
            class: word("class").map(|c| c.to_ascii_uppercase()),
            provenance: word("provenance").map(|p| p.to_ascii_lowercase()),
            ranges: Axis::ALL.map(|a| {
                (
                    number(format!("{}_min", a.key())),
                    number(format!("{}_max", a.key())),
                )
            }),
        }
    }

    pub fn range(&self, axis: Axis) -> (Option<f32>, Option<f32>) {
        self.ranges[axis.slot()]
    }

    /// Sets an axis's range (bounds rounded to 0.001, as the link carries them).
    pub fn set(&mut self, axis: Axis, lo: Option<f32>, hi: Option<f32>) {
        let round = |v: f32| (v * 1000.0).round() / 1000.0;
        self.ranges[axis.slot()] = (lo.map(round), hi.map(round));
    }

    pub fn is_empty(&self) -> bool {
        *self == Cuts::default()
    }

    /// The cuts as `key=value` query pairs (the API's and the link's).
    pub fn query(&self) -> Vec<String> {
        let mut pairs = Vec::new();
        if let Some(c) = &self.class {
            pairs.push(format!("class={c}"));
        }
        if let Some(p) = &self.provenance {
            pairs.push(format!("provenance={p}"));
        }
        for a in Axis::ALL {
            let (lo, hi) = self.range(a);
            if let Some(lo) = lo {
                pairs.push(format!("{}_min={lo}", a.key()));
            }
            if let Some(hi) = hi {
                pairs.push(format!("{}_max={hi}", a.key()));
            }
        }
        pairs
    }

    /// In words, for the pages that show them.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(c) = &self.class {
            parts.push(c.to_ascii_lowercase());
        }
        if let Some(p) = &self.provenance {
            parts.push(p.clone());
        }
        for a in Axis::ALL {
            match self.range(a) {
                (Some(lo), Some(hi)) => parts.push(format!("{} {lo} to {hi}", a.label())),
                (Some(lo), None) => parts.push(format!("{} ≥ {lo}", a.label())),
                (None, Some(hi)) => parts.push(format!("{} ≤ {hi}", a.label())),
                (None, None) => {}
            }
        }
        parts.join("; ")
    }

    /// Whether each object passes, for objects given as columns.
    pub fn passing(&self, classes: &[u8], synthetic: &[bool], values: &[Values]) -> Vec<bool> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| self.passes(classes[i], synthetic[i], v))
            .collect()
    }

    /// Whether an object passes: `class` is its letter (`G`, `S`, `Q`, `U`). An
    /// unknown value fails any range on it, as in the API.
    pub fn passes(&self, class: u8, synthetic: bool, values: &Values) -> bool {
        if let Some(c) = &self.class
            && c.as_bytes().first() != Some(&class)
        {
            return false;
        }
        match self.provenance.as_deref() {
            Some("real") if synthetic => return false,
            Some("synthetic") if !synthetic => return false,
            _ => {}
        }
        self.ranges.iter().zip(values).all(|(&(lo, hi), v)| {
            if lo.is_none() && hi.is_none() {
                return true;
            }
            v.is_some_and(|v| lo.is_none_or(|lo| v >= lo) && hi.is_none_or(|hi| v <= hi))
        })
    }
}

/// Every object's values from the sky columns, in [`Axis::ALL`]'s order.
pub fn values(points: &cosmicai_shared::api::SkyPoints) -> Vec<Values> {
    (0..points.ids.len())
        .map(|i| {
            let c = points.colours.get(i).copied().flatten();
            [
                c.map(|c| c[0]),
                c.map(|c| c[1]),
                c.map(|c| c[2]),
                points.r.get(i).copied().flatten(),
                points.redshift.get(i).copied().flatten(),
            ]
        })
        .collect()
}
