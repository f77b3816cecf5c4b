//! PhotoZ's redshift distribution p(z): a probability for each of [`BINS`]
//! bins of ln(1 + z) from 0 to ln(1 + [`Z_MAX`]), and how one is read.
//!
//! The point estimate is where the distribution holds the most mass within
//! |Δz| / (1 + z_spec) < 0.15 (the outlier bound photo-z work counts against), then
//! the mean inside that window; its outlier chance is the mass outside that bound
//! around the point reported. A galaxy the class head is unsure of has two
//! bumps, the galaxy's and the quasar's; the point lands on the bump more
//! likely to be right, not between them nor on the class head's pick.
//! σ_z is the half-width, in z, of the narrowest interval around the point that
//! holds 68.3% of the mass, less the widths the representation adds: the
//! training targets spread each redshift over [`TARGET_WIDTH`], so the head
//! learns the posterior convolved with that Gaussian, and the bins add their own.

/// Number of bins of ln(1 + z).
pub const BINS: usize = 256;
/// The highest redshift the bins cover (SDSS quasars reach about 7).
pub const Z_MAX: f32 = 7.2;
/// Width (in ln(1 + z)) of the Gaussian each training redshift is spread over:
/// under a bin, so the learnt distribution's width is the model's uncertainty,
/// not the target's.
pub const TARGET_WIDTH: f32 = 0.008;
/// The outlier bound |Δz| / (1 + z_spec) < 0.15 of photo-z metrics, around a
/// point t = ln(1 + z_pred), in ln(1 + z_spec): from t - ln(1.15) up to t - ln(0.85).
pub const WINDOW_BELOW: f32 = 0.139_761_94; // ln(1.15)
pub const WINDOW_ABOVE: f32 = 0.162_518_93; // -ln(0.85)
/// Objects whose chance of an outlier (mass outside the window) is above this are
/// flagged as high-risk.
pub const HIGH_RISK: f64 = 0.2;

/// Centre of bin `i`, in ln(1 + z).
pub fn centre(i: usize) -> f32 {
    i as f32 * step()
}

fn step() -> f32 {
    Z_MAX.ln_1p() / (BINS - 1) as f32
}

/// The training target of a redshift: a Gaussian of [`TARGET_WIDTH`] over the bins,
/// summing to 1 (stars' slightly negative redshifts land on the first bin).
pub fn target(z: f32) -> [f32; BINS] {
    let t = z.max(-0.99).ln_1p().clamp(0.0, Z_MAX.ln_1p());
    let mut out = [0.0; BINS];
    let mut sum = 0.0;
    for (i, o) in out.iter_mut().enumerate() {
        let d = (centre(i) - t) / TARGET_WIDTH;
        *o = (-0.5 * d * d).exp();
        sum += *o;
    }
    out.iter_mut().for_each(|o| *o /= sum);
    out
}

/// What a redshift distribution says about one object.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    pub redshift: f32,
    /// Half the width of the narrowest interval around `redshift` holding 68.3%
    /// of the mass, in z.
    pub sigma: f32,
    /// The mass outside |Δz| / (1 + z) < 0.15 of the point estimate: the model's
    /// own chance that the point is an outlier.
    pub outlier_probability: f32,
}

/// Reads one object's distribution (`probability.len() == BINS`, summing to about 1).
/// NaN everywhere when the input is not a distribution.
pub fn read(probability: &[f32]) -> Reading {
    read_as(probability, false)
}

/// [`read`], for an object the class head takes for a quasar (`quasar`): its
/// σ_z is then at least half the half-width that holds 95.45% of the mass. A
/// quasar's p(z) often has a second peak (one emission line taken for another)
/// that the 68.3% interval around the point leaves out, and its σ_z was
/// overconfident: in 5-fold CV of the replica, 63% of SDSS17 quasars within 1σ
/// and 83% within 2σ before, 71% and 88% after (`tools/photoz_experiments.py
/// --sigma-rule max-for-qso`). Galaxies taken for quasars, the outliers, get the
/// wider σ too. The rest keep the 68.3% reading.
pub fn read_as(probability: &[f32], quasar: bool) -> Reading {
    let nan = Reading {
        redshift: f32::NAN,
        sigma: f32::NAN,
        outlier_probability: f32::NAN,
    };
    let total: f32 = probability.iter().sum();
    if probability.len() != BINS || !total.is_finite() || total <= 0.0 {
        return nan;
    }
    // cumulative[i] = mass of bins before i.
    let mut cumulative = Vec::with_capacity(BINS + 1);
    cumulative.push(0.0f32);
    for p in probability {
        cumulative.push(cumulative.last().copied().unwrap_or(0.0) + p / total);
    }
    let (below, above) = (
        (WINDOW_BELOW / step()).round() as usize,
        (WINDOW_ABOVE / step()).round() as usize,
    );
    // The bins an outlier-free point at bin i would let z_spec lie in.
    let span = |i: usize| (i.saturating_sub(below), (i + above + 1).min(BINS));
    let mass = |i: usize| {
        let (a, b) = span(i);
        cumulative[b] - cumulative[a]
    };
    let (mut best, mut best_mass) = (0, -1.0);
    for i in 0..BINS {
        if mass(i) > best_mass {
            (best, best_mass) = (i, mass(i));
        }
    }
    let (a, b) = span(best);
    let weighted: f32 = (a..b).map(|i| probability[i] / total * centre(i)).sum();
    let log1p_z = weighted / best_mass.max(f32::MIN_POSITIVE);
    // The outlier chance of the point reported, not of the window that found it.
    let point_bin = ((log1p_z / step()).round().max(0.0) as usize).min(BINS - 1);
    let redshift = log1p_z.exp_m1();
    let sigma_holding =
        |q| without_added_widths(radius_holding(&cumulative, redshift, q), redshift);
    let mut sigma = sigma_holding(ONE_SIGMA);
    if quasar {
        sigma = sigma.max(0.5 * sigma_holding(TWO_SIGMA));
    }
    Reading {
        redshift,
        sigma,
        outlier_probability: (1.0 - mass(point_bin)).clamp(0.0, 1.0),
    }
}

/// A radius `r` in z around `z` with the widths the representation adds taken
/// out in quadrature (variances add), in ln(1 + z) where they arise:
/// - the training targets' [`TARGET_WIDTH`]: trained against redshifts spread by
///   it, p(z) is the posterior convolved with that Gaussian. Left in, it widened
///   σ_z by about 13% for DR14's bright low-z galaxies (a core near 0.015) and 4%
///   for SDSS17's (near 0.027);
/// - the bins': reading spreads each bin's mass evenly across it, which adds a
///   bin's width squared over 12 (Sheppard's correction).
///
/// Never under half a bin: finer, the bins cannot say.
fn without_added_widths(r: f32, z: f32) -> f32 {
    let scale = 1.0 + z.max(-0.99); // dz = (1 + z) d ln(1 + z)
    let r = r / scale;
    let added = TARGET_WIDTH * TARGET_WIDTH + step() * step() / 12.0;
    let posterior = (r * r - added).max(0.0).sqrt();
    posterior.max(0.5 * step()) * scale
}

/// The share of a Gaussian within one standard deviation of its mean.
const ONE_SIGMA: f32 = 0.682_689_5;
/// Within two.
const TWO_SIGMA: f32 = 0.954_499_7;

/// The distribution's mass below redshift `z`, linear inside each bin of
/// ln(1 + z) (bin `i` spans centre(i) ± step/2).
fn mass_below(cumulative: &[f32], z: f32) -> f32 {
    let u = (z.max(-0.99).ln_1p() / step() + 0.5).clamp(0.0, BINS as f32);
    let i = (u.floor() as usize).min(BINS - 1);
    let within = (u - i as f32).clamp(0.0, 1.0);
    cumulative[i] + within * (cumulative[i + 1] - cumulative[i])
}

/// The smallest r (in z) whose interval [z - r, z + r] holds a share `q` of the
/// mass: for a Gaussian, its σ at q = 68.3%; for a skewed or two-bump
/// distribution, still the interval around the point that the model gives that
/// chance (half the central 68% would not be centred on the point).
fn radius_holding(cumulative: &[f32], z: f32, q: f32) -> f32 {
    let within = |r: f32| mass_below(cumulative, z + r) - mass_below(cumulative, z - r);
    let (mut lo, mut hi) = (0.0f32, Z_MAX + 1.0);
    for _ in 0..32 {
        let mid = 0.5 * (lo + hi);
        if within(mid) >= q {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_narrow_distribution_reads_back_its_redshift_and_width() {
        for z in [0.05f32, 0.4, 1.2, 3.0] {
            let r = read(&target(z));
            assert!((r.redshift - z).abs() < 0.002 * (1.0 + z), "{z}: {r:?}");
            // A training target alone: the target's width leaves nothing but
            // the floor, half a bin.
            let expected = 0.5 * step() * (1.0 + z);
            assert!((r.sigma - expected).abs() < 1e-3 * expected, "{z}: {r:?}");
            assert!(r.outlier_probability < 1e-3, "{z}: {r:?}");
        }
    }

    #[test]
    fn a_quasars_sigma_reaches_half_way_to_its_second_peak() {
        // 85% of the mass at z = 1, 15% at z = 2.5: the 68.3% interval holds
        // only the first peak, the 95.45% one reaches the second.
        let (first, second) = (target(1.0), target(2.5));
        let p: Vec<f32> = first
            .iter()
            .zip(&second)
            .map(|(a, b)| 0.85 * a + 0.15 * b)
            .collect();
        let (galaxy, quasar) = (read_as(&p, false), read_as(&p, true));
        assert_eq!(galaxy.redshift, quasar.redshift);
        assert!(galaxy.sigma < 0.1, "{galaxy:?}");
        assert!(quasar.sigma > 0.6 && quasar.sigma < 0.9, "{quasar:?}");
        // A single Gaussian peak, wide against the added widths, reads about
        // the same either way (its 95.45% half-width is twice its 68.3% one).
        let one: Vec<f32> = (0..BINS)
            .map(|i| (-0.5 * ((centre(i) - 2f32.ln()) / 0.05).powi(2)).exp())
            .collect();
        let (g, q) = (read_as(&one, false), read_as(&one, true));
        assert!((q.sigma - g.sigma).abs() < 0.05 * g.sigma, "{g:?} {q:?}");
    }

    #[test]
    fn two_bumps_give_the_likelier_one_and_a_wide_sigma() {
        // 55% on a broad quasar bump at z 1.6 (spread over ±0.3 in ln(1+z)),
        // 45% on a sharp galaxy bump at 0.5: the window holds more of the galaxy.
        let mut p = [0.0f32; BINS];
        let broad = (1.6f32).ln_1p();
        let mut broad_sum = 0.0;
        let mut broad_part = [0.0f32; BINS];
        for (i, b) in broad_part.iter_mut().enumerate() {
            let d = (centre(i) - broad) / 0.3;
            *b = (-0.5 * d * d).exp();
            broad_sum += *b;
        }
        let sharp = target(0.5);
        for i in 0..BINS {
            p[i] = 0.55 * broad_part[i] / broad_sum + 0.45 * sharp[i];
        }
        let r = read(&p);
        // The window's mean takes in a little of the broad bump: near 0.5, far from 1.6
        // (and from the mixture's median, about 1.0).
        assert!((r.redshift - 0.5).abs() < 0.05, "{r:?}");
        assert!(r.sigma > 0.3, "{r:?}");
        assert!(r.outlier_probability > 0.4, "{r:?}");
    }

    #[test]
    fn sigma_bounds_the_interval_around_the_point_that_holds_68_percent() {
        // A sharp bump at z 0.3 with a long tail towards higher z (30% of the mass).
        let sharp = target(0.3);
        let mut tail = [0.0f32; BINS];
        let mut sum = 0.0;
        for (i, t) in tail.iter_mut().enumerate() {
            let d = (centre(i) - 0.6f32.ln_1p()) / 0.15;
            *t = (-0.5 * d * d).exp();
            sum += *t;
        }
        let p: Vec<f32> = (0..BINS)
            .map(|i| 0.7 * sharp[i] + 0.3 * tail[i] / sum)
            .collect();
        let r = read(&p);
        let mut cumulative = vec![0.0f32];
        for v in &p {
            cumulative.push(cumulative.last().unwrap() + v);
        }
        let radius = radius_holding(&cumulative, r.redshift, ONE_SIGMA);
        let held = mass_below(&cumulative, r.redshift + radius)
            - mass_below(&cumulative, r.redshift - radius);
        assert!((held - ONE_SIGMA).abs() < 0.01, "{held} held: {r:?}");
        assert_eq!(r.sigma, without_added_widths(radius, r.redshift));
        assert!(r.sigma < radius, "{r:?}");
        // Narrower than half the central 68%, which the tail stretches.
        assert!(r.sigma > 0.0 && r.sigma < 0.2, "{r:?}");
    }

    #[test]
    fn sigma_leaves_out_the_targets_own_width() {
        // A Gaussian of 0.03 in ln(1 + z) around z = 0.4: σ_z is the
        // posterior's 0.03 with the target's 0.008 taken out, in z.
        let centre_ln = 0.4f32.ln_1p();
        let mut p = [0.0f32; BINS];
        for (i, v) in p.iter_mut().enumerate() {
            let d = (centre(i) - centre_ln) / 0.03;
            *v = (-0.5 * d * d).exp();
        }
        let r = read(&p);
        let added = TARGET_WIDTH.powi(2) + step().powi(2) / 12.0;
        let expected = (0.03f32.powi(2) - added).sqrt() * 1.4;
        assert!(
            (r.sigma - expected).abs() < 0.05 * expected,
            "{r:?} vs {expected}"
        );
        assert!(r.sigma < 0.03 * 1.4 * 0.98, "{r:?}");
    }

    #[test]
    fn garbage_reads_as_nan() {
        assert!(read(&[0.0; BINS]).redshift.is_nan());
        assert!(read(&[1.0; 3]).redshift.is_nan());
        let mut p = [0.0; BINS];
        p[0] = f32::NAN;
        assert!(read(&p).sigma.is_nan());
    }
}
