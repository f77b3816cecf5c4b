//! `cosmicai runs --predictions RUN_ID`: a run's per-object predictions as one
//! CSV table (partition and row, the labels, the prediction), what a CAI user
//! reaches for after `combined_data.json`'s per-rank figures.

use anyhow::{Context, Result, bail};
use cosmicai_engine::pipeline::{
    PayloadOf, RankPredictions, predictions_key, rank_key, read_payload, read_predictions,
};
use cosmicai_engine::store::{LocalStore, ObjectStore, StoreError};
use cosmicai_shared::run::{RankResult, RunSummary};
use std::io::Write;
use std::path::Path;

/// The table's columns, in order.
const HEADER: &str = "rank,partition,row,object_id,class,redshift,predicted_redshift,predicted_redshift_sigma,outlier_probability,predicted_class,p_galaxy,p_star,p_qso,synthetic";

/// What was written: objects, and ranks with and without predictions.
pub struct Exported {
    pub objects: usize,
    pub ranks: usize,
    pub ranks_without: usize,
}

/// Writes run `run_id`'s predictions (under data folder `data`) to `out`, or to
/// standard output; a file is written aside and renamed, so it is whole or absent.
pub fn export(data: &Path, run_id: &str, out: Option<&Path>) -> Result<Exported> {
    let (_, run, info) = crate::registry::open_run(data, run_id)?;
    let store = LocalStore::new(data);
    let result_path = &run.request.result_path;
    // A run refused at Initialize (its result_path another run's) keeps a row
    // naming that path: only a plan of its own there makes the files its own.
    match read_payload(&store, result_path, Some(run_id))? {
        PayloadOf::Its(_) => {}
        PayloadOf::OtherRun(other) => bail!(
            "run {run_id} has no predictions: its result_path '{result_path}' holds run {other}'s (run {run_id} ended {} without writing there)",
            info.status.name()
        ),
        PayloadOf::Missing => bail!(
            "run {run_id} has no predictions: its result_path '{result_path}' holds no plan of it (it ended {} before Initialize wrote one)",
            info.status.name()
        ),
        PayloadOf::Unreadable(why) => bail!(
            "run {run_id}: {}: {why}",
            cosmicai_engine::pipeline::payload_key(result_path)
        ),
    }
    // AstroMAE predicts no class: its class columns would be noise.
    let predicts_class = run.request.model_spec().is_ok_and(|m| m.predicts_class());
    // Ranks that failed wrote no trustworthy predictions (as Summarize and the
    // results API judge them).
    let failed: std::collections::HashSet<usize> = store
        .get(&cosmicai_engine::store::join(result_path, "summary.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<RunSummary>(&b).ok())
        .filter(|s| s.run_id == run_id)
        .map(|s| s.failed_ranks.into_iter().collect())
        .unwrap_or_default();
    let ranks = run.request.world_size;
    let bar = indicatif::ProgressBar::new(ranks as u64).with_message("predictions");
    let write_to = |sink: &mut dyn Write| -> Result<Exported> {
        writeln!(sink, "{HEADER}")?;
        let mut done = Exported {
            objects: 0,
            ranks: 0,
            ranks_without: 0,
        };
        for rank in 0..ranks {
            bar.inc(1);
            if failed.contains(&rank) {
                done.ranks_without += 1;
                continue;
            }
            let key = predictions_key(result_path, rank);
            let predictions = match store.get(&key).map(|b| read_predictions(&b)) {
                Ok(Ok(p)) => p,
                // A rank's unreadable file fails that rank, not the table.
                Ok(Err(e)) => {
                    bar.suspend(|| crate::say!("{key}: {e}: left out"));
                    done.ranks_without += 1;
                    continue;
                }
                // Planned no file, or it never wrote one.
                Err(StoreError::NotFound { .. }) => {
                    done.ranks_without += 1;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let data_path = store
                .get(&rank_key(result_path, rank))
                .ok()
                .and_then(|b| serde_json::from_slice::<RankResult>(&b).ok())
                .map(|r| r.data_path)
                .unwrap_or_default();
            write_rank(sink, rank, &predictions, &data_path, predicts_class)?;
            done.objects += predictions.object_id.len();
            done.ranks += 1;
        }
        sink.flush()?;
        Ok(done)
    };
    let done = match out {
        None => write_to(&mut std::io::BufWriter::new(std::io::stdout().lock()))?,
        Some(path) => {
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let temp = cosmicai_engine::partition::temp_file_in(dir)
                .with_context(|| format!("--out {}", path.display()))?;
            let mut file = std::io::BufWriter::new(temp.as_file());
            let done = write_to(&mut file)?;
            drop(file);
            temp.as_file().sync_all()?;
            temp.persist(path)
                .map_err(|e| e.error)
                .with_context(|| format!("--out {}", path.display()))?;
            std::fs::File::open(dir)?.sync_all()?;
            done
        }
    };
    bar.finish_and_clear();
    Ok(done)
}

/// One rank's rows. Quoted where a partition key holds a comma or a quote.
fn write_rank(
    sink: &mut dyn Write,
    rank: usize,
    p: &RankPredictions,
    data_path: &[String],
    predicts_class: bool,
) -> Result<()> {
    let number = |v: f32| {
        if v.is_finite() {
            v.to_string()
        } else {
            String::new()
        }
    };
    for (i, predicted) in p.predicted.iter().enumerate() {
        let partition = p
            .partition
            .get(i)
            .and_then(|&k| data_path.get(k as usize))
            .map_or_else(String::new, |key| quoted(key));
        let row = p.row.get(i).map_or_else(String::new, u32::to_string);
        let (class, probabilities) = if predicts_class {
            let [g, s, q] = predicted.class_probability;
            (
                predicted.class.name().to_string(),
                format!("{},{},{}", number(g), number(s), number(q)),
            )
        } else {
            (String::new(), ",,".to_string())
        };
        writeln!(
            sink,
            "{rank},{partition},{row},{},{},{},{},{},{},{class},{probabilities},{}",
            p.object_id[i],
            p.class.get(i).map_or("", |c| c.name()),
            p.redshift.get(i).map_or_else(String::new, |&z| number(z)),
            number(predicted.redshift),
            predicted.redshift_sigma.map_or_else(String::new, number),
            predicted
                .outlier_probability
                .map_or_else(String::new, number),
            u8::from(p.is_synthetic(i)),
        )?;
    }
    Ok(())
}

/// A CSV field: as it is, or in quotes with its quotes doubled.
fn quoted(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_with_commas_or_quotes_are_quoted() {
        assert_eq!(quoted("data/p0.pt"), "data/p0.pt");
        assert_eq!(quoted("data/a,b.pt"), "\"data/a,b.pt\"");
        assert_eq!(quoted("say \"hi\".pt"), "\"say \"\"hi\"\".pt\"");
    }
}
