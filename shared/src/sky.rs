//! The whole sky on a page: the Hammer–Aitoff projection, equal-area like the
//! Mollweide maps astronomers know, with a closed form both ways (no iteration).
//!
//! RA 180° sits in the middle and RA grows to the left, as on the sky seen from
//! inside; the map is an ellipse 4√2 wide and 2√2 high.

use std::f64::consts::SQRT_2;

/// Half the map's width and height, in projection units.
pub const HALF_WIDTH: f64 = 2.0 * SQRT_2;
pub const HALF_HEIGHT: f64 = SQRT_2;

/// (x, y) of a point at `ra`, `dec` (degrees); x in ±2√2 (east to the left), y in ±√2.
pub fn project(ra: f64, dec: f64) -> (f64, f64) {
    let lambda = (180.0 - ra.rem_euclid(360.0)).to_radians();
    let phi = dec.clamp(-90.0, 90.0).to_radians();
    let d = (1.0 + phi.cos() * (lambda / 2.0).cos()).sqrt();
    (
        2.0 * SQRT_2 * phi.cos() * (lambda / 2.0).sin() / d,
        SQRT_2 * phi.sin() / d,
    )
}

/// (ra, dec) in degrees of the map point (x, y), or `None` off the ellipse.
pub fn unproject(x: f64, y: f64) -> Option<(f64, f64)> {
    if (x / HALF_WIDTH).powi(2) + (y / HALF_HEIGHT).powi(2) > 1.0 {
        return None;
    }
    let z = (1.0 - (x / 4.0).powi(2) - (y / 2.0).powi(2)).sqrt();
    let lambda = 2.0 * (z * x / (2.0 * (2.0 * z * z - 1.0))).atan();
    // atan's branch: past ±90° of longitude the denominator changes sign.
    let lambda = if 2.0 * z * z - 1.0 < 0.0 {
        lambda + if x >= 0.0 { 2.0 } else { -2.0 } * std::f64::consts::PI
    } else {
        lambda
    };
    let phi = (z * y).clamp(-1.0, 1.0).asin();
    Some((
        (180.0 - lambda.to_degrees()).rem_euclid(360.0),
        phi.to_degrees(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_centre_poles_and_edges_land_where_the_map_says() {
        let near = |(x, y): (f64, f64), (ex, ey): (f64, f64)| {
            assert!(
                (x - ex).abs() < 1e-9 && (y - ey).abs() < 1e-9,
                "({x}, {y}) not ({ex}, {ey})"
            )
        };
        near(project(180.0, 0.0), (0.0, 0.0));
        near(project(0.0, 90.0), (0.0, SQRT_2));
        near(project(123.0, -90.0), (0.0, -SQRT_2));
        // RA 90° is east of the centre: left.
        assert!(project(90.0, 0.0).0 > 0.0 && project(270.0, 0.0).0 < 0.0);
        // Just east of RA 0: the left edge (the projection is steep there).
        let (x, y) = project(0.000_001, 0.0);
        assert!((x - HALF_WIDTH).abs() < 1e-6 && y == 0.0, "{x} {y}");
    }

    #[test]
    fn unproject_inverts_project_across_the_sky() {
        for ra in (5..360).step_by(25) {
            for dec in (-85..=85).step_by(17) {
                let (x, y) = project(f64::from(ra), f64::from(dec));
                let (r, d) = unproject(x, y).unwrap();
                assert!(
                    (r - f64::from(ra)).abs() < 1e-6 && (d - f64::from(dec)).abs() < 1e-6,
                    "{ra} {dec} -> {r} {d}"
                );
            }
        }
        assert_eq!(unproject(3.0, 0.0), None);
    }

    #[test]
    fn equal_areas_hold_equal_shares_of_the_map() {
        // A uniform sky: a band's share of the ellipse equals its share of the sphere.
        let (mut inside, mut band, n) = (0usize, 0usize, 400);
        for i in 0..n {
            for j in 0..n {
                let x = (i as f64 + 0.5) / n as f64 * 2.0 * HALF_WIDTH - HALF_WIDTH;
                let y = (j as f64 + 0.5) / n as f64 * 2.0 * HALF_HEIGHT - HALF_HEIGHT;
                if let Some((_, dec)) = unproject(x, y) {
                    inside += 1;
                    band += usize::from(dec > 30.0);
                }
            }
        }
        // Above dec 30°: (1 - sin 30°) / 2 = 25% of the sphere.
        let share = band as f64 / inside as f64;
        assert!((share - 0.25).abs() < 0.005, "{share}");
    }
}
