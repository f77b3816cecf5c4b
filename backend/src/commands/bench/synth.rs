//! `cosmicai bench synth`: the renderer's speed, synthetic cutouts per second per core.

use anyhow::Result;
use clap::Args;
use std::time::Instant;

#[derive(Args)]
pub struct SynthBenchArgs {
    #[arg(long, default_value = "assets/catalogs/skyserver_dr14.csv.gz")]
    pub catalog: std::path::PathBuf,
    #[arg(long, default_value_t = 32)]
    pub size: usize,
    #[arg(long, default_value_t = 20_000)]
    pub objects: usize,
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    #[arg(long)]
    pub json: bool,
}

pub fn bench_synth(args: SynthBenchArgs) -> Result<()> {
    use cosmicai_engine::imagery::calibrate::Calibration;
    use cosmicai_engine::imagery::synth::{Renderer, Scratch};
    use rayon::prelude::*;
    if args.threads == 0 || args.objects == 0 || !(8..=512).contains(&args.size) {
        anyhow::bail!("--threads and --objects must be at least 1 and --size 8 to 512");
    }
    let catalog: Vec<_> =
        cosmicai_engine::catalog::read_catalogs(std::slice::from_ref(&args.catalog), |_, _| {})?
            .into_iter()
            .flat_map(|c| c.objects)
            .collect();
    anyhow::ensure!(
        !catalog.is_empty(),
        "{} holds no objects",
        args.catalog.display()
    );
    let renderer = Renderer::new(&Calibration::bundled(), args.size, 0);
    let per_object = 5 * args.size * args.size;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build()?;
    let mut pixels = vec![0.0f32; 4096 * per_object];
    let start = Instant::now();
    let mut done = 0;
    while done < args.objects {
        let n = 4096.min(args.objects - done);
        pool.install(|| {
            pixels[..n * per_object]
                .par_chunks_mut(per_object)
                .enumerate()
                .for_each_init(Scratch::default, |scratch, (k, out)| {
                    let i = done + k;
                    renderer.render(i as u64, &catalog[i % catalog.len()], scratch, out)
                })
        });
        done += n;
    }
    let seconds = start.elapsed().as_secs_f64();
    std::hint::black_box(&pixels);
    let per_s = args.objects as f64 / seconds;
    let figures = serde_json::json!({
        "size": args.size,
        "objects": args.objects,
        "threads": args.threads,
        "seconds": seconds,
        "cutouts_per_s": per_s,
        "cutouts_per_s_per_core": per_s / args.threads as f64,
    });
    let text = if args.json {
        figures.to_string()
    } else {
        format!(
            "{} synthetic {}x{} cutouts on {} threads in {:.2} s: {:.0} cutouts/s ({:.0} per core)",
            args.objects,
            args.size,
            args.size,
            args.threads,
            seconds,
            per_s,
            per_s / args.threads as f64
        )
    };
    crate::output::emit(&(text + "\n"))
}
