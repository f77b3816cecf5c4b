//! Which fields to fetch: the catalog's objects counted per imaging field, and
//! the fields chosen by count, by objects covered, and by the disk budget.

use super::SdssField;
use crate::catalog::Catalog;
use serde::Serialize;
use std::collections::HashMap;

/// What one SDSS frame takes on disk, compressed, for planning before its size is
/// known: the bundled field's five frames average 3.26 MB, SDSS says 3 to 4 MB.
pub const ESTIMATED_FRAME_BYTES: u64 = 3_400_000;

/// How many catalog objects lie on one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FieldCount {
    pub field: SdssField,
    pub objects: usize,
    /// Objects with a spectroscopic redshift: what a labelled image set gains.
    pub labelled: usize,
}

/// Every field the catalogs name, most labelled objects first (then most
/// objects, then field order, so a plan is the same on every machine).
pub fn count_fields(catalogs: &[Catalog]) -> Vec<FieldCount> {
    // Keyed as the frame files are named: two reruns of one field would be two
    // downloads to the same file (the first rerun seen is the one fetched).
    let mut counts: HashMap<(u32, u8, u32), FieldCount> = HashMap::new();
    for catalog in catalogs {
        for (object, field) in catalog.objects.iter().zip(&catalog.fields) {
            let Some(field) = *field else { continue };
            let key = (field.run, field.camcol, field.field);
            let count = counts.entry(key).or_insert(FieldCount {
                field,
                objects: 0,
                labelled: 0,
            });
            count.objects += 1;
            count.labelled += usize::from(object.redshift.is_finite());
        }
    }
    let mut counts: Vec<FieldCount> = counts.into_values().collect();
    counts.sort_by(|a, b| {
        (b.labelled, b.objects)
            .cmp(&(a.labelled, a.objects))
            .then(a.field.cmp(&b.field))
    });
    counts
}

/// How many fields a fetch asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// Every field the catalogs name (the budget still applies).
    All,
    /// The fields holding the most labelled objects.
    Fields(usize),
    /// As few fields as cover at least this many objects, richest first.
    Objects(usize),
}

/// A chosen set of fields, and what the budget left out.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub fields: Vec<FieldCount>,
    /// Fields the selection wanted that the budget had no room for.
    pub over_budget: usize,
    /// Bytes the plan expects to download (fields not yet cached, estimated).
    pub estimated_bytes: u64,
}

impl Plan {
    pub fn objects(&self) -> usize {
        self.fields.iter().map(|f| f.objects).sum()
    }
    pub fn labelled(&self) -> usize {
        self.fields.iter().map(|f| f.labelled).sum()
    }
}

/// Chooses fields from `counts` (as [`count_fields`] orders them). Fields for
/// which `cached` says every wanted frame is present cost nothing; the others are
/// estimated at [`ESTIMATED_FRAME_BYTES`] for each of `bands` frames and taken
/// while the cache's `cache_bytes` plus the plan stay within `budget`.
pub fn choose(
    counts: &[FieldCount],
    selection: Selection,
    bands: usize,
    cache_bytes: u64,
    budget: u64,
    cached: impl Fn(&SdssField) -> bool,
) -> Plan {
    let wanted: Vec<FieldCount> = match selection {
        Selection::All => counts.to_vec(),
        Selection::Fields(n) => counts.iter().take(n).copied().collect(),
        Selection::Objects(n) => {
            // Fields by objects held, so the fewest fields cover `n`.
            let mut by_objects = counts.to_vec();
            by_objects.sort_by(|a, b| b.objects.cmp(&a.objects).then(a.field.cmp(&b.field)));
            let mut covered = 0;
            by_objects
                .into_iter()
                .take_while(|f| {
                    let take = covered < n;
                    covered += f.objects;
                    take
                })
                .collect()
        }
    };
    let field_bytes = bands as u64 * ESTIMATED_FRAME_BYTES;
    let mut plan = Plan {
        fields: Vec::new(),
        over_budget: 0,
        estimated_bytes: 0,
    };
    for field in wanted {
        if cached(&field.field) {
            plan.fields.push(field);
        } else if cache_bytes + plan.estimated_bytes + field_bytes <= budget {
            plan.estimated_bytes += field_bytes;
            plan.fields.push(field);
        } else {
            plan.over_budget += 1;
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(run: u32, objects: usize, labelled: usize) -> FieldCount {
        FieldCount {
            field: SdssField {
                run,
                rerun: 301,
                camcol: 1,
                field: 11,
            },
            objects,
            labelled,
        }
    }

    #[test]
    fn fields_objects_and_budget_choose_as_documented() {
        let counts = [
            count(1, 5, 5),
            count(2, 9, 3),
            count(3, 2, 2),
            count(4, 1, 0),
        ];
        let runs = |p: &Plan| p.fields.iter().map(|f| f.field.run).collect::<Vec<_>>();
        let big = u64::MAX / 2;
        assert_eq!(
            runs(&choose(&counts, Selection::Fields(2), 5, 0, big, |_| false)),
            [1, 2]
        );
        // 10 objects: field 2 (9) then field 1 (5); the fewest fields, not the order given.
        assert_eq!(
            runs(&choose(&counts, Selection::Objects(10), 5, 0, big, |_| {
                false
            })),
            [2, 1]
        );
        assert_eq!(
            runs(&choose(&counts, Selection::Objects(9), 5, 0, big, |_| {
                false
            })),
            [2]
        );
        assert_eq!(
            runs(&choose(&counts, Selection::All, 5, 0, big, |_| false)).len(),
            4
        );
        // Room for two fields after what the cache already holds; a cached field is free.
        let field = 5 * ESTIMATED_FRAME_BYTES;
        let plan = choose(&counts, Selection::All, 5, 1000, 2 * field + 1000, |f| {
            f.run == 3
        });
        assert_eq!(runs(&plan), [1, 2, 3]);
        assert_eq!((plan.over_budget, plan.estimated_bytes), (1, 2 * field));
        assert_eq!(
            choose(&counts, Selection::All, 5, 0, field - 1, |_| false)
                .fields
                .len(),
            0
        );
    }
}
