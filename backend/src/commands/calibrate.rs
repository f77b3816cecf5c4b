//! `cosmicai calibrate`: seeing and sky noise per band, measured on real frames.

use anyhow::{Context, Result, bail};
use clap::Args;
use cosmicai_engine::imagery::calibrate::{Calibration, measure_field};
use cosmicai_engine::imagery::frame::open_fields;
use std::path::PathBuf;

#[derive(Args)]
#[command(
    after_help = "Example (how assets/imagery/calibration.json was made):\n  \
    cosmicai calibrate --frames assets/fields/2820-3-0122 --out assets/imagery/calibration.json\n\n\
    Seeing: adaptive second moments of bright, round, isolated sources, taken at the stellar\n\
    locus. Noise: 1.4826 x MAD of each frame. `cosmicai synth` renders with these."
)]
pub struct CalibrateArgs {
    /// Directory of SDSS frames (one or more fields).
    #[arg(long)]
    pub frames: PathBuf,
    /// Write the calibration JSON here (the directory must hold exactly one field).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: CalibrateArgs) -> Result<()> {
    let fields = open_fields(&args.frames)?;
    let calibrations: Vec<Calibration> =
        fields.iter().map(measure_field).collect::<Result<_, _>>()?;
    if let Some(out) = &args.out {
        let [one] = calibrations.as_slice() else {
            bail!(
                "{} holds {} fields; --out takes the calibration of exactly one",
                args.frames.display(),
                calibrations.len()
            );
        };
        let json = serde_json::to_string_pretty(one)? + "\n";
        cosmicai_engine::partition::write_atomically(out, json.as_bytes())
            .with_context(|| format!("writing {}", out.display()))?;
    }
    if args.json {
        return crate::output::emit(&(serde_json::to_string(&calibrations)? + "\n"));
    }
    let mut text = String::new();
    for c in &calibrations {
        crate::line!(text, "{}:", c.measured_on);
        for b in &c.bands {
            crate::line!(
                text,
                "  {}  PSF FWHM {:.2} px ({:.2}\") from {} stars, sky noise {:.4} nanomaggies/px",
                b.band.letter(),
                b.psf_fwhm_px,
                b.psf_fwhm_px * c.pixel_scale_arcsec,
                b.stars,
                b.sky_sigma_nmgy
            );
        }
    }
    crate::output::emit(&text)
}
