//! The run registry: every run and rank in an SQLite file in the data directory.
//!
//! It survives restarts; a run whose coordinator died (crash, kill) is marked
//! `interrupted` the next time the registry is opened, never left `running`.

use anyhow::{Context, Result};
use cosmicai_engine::pipeline::RunSummary;
use cosmicai_shared::api::RunInfo;
use cosmicai_shared::run::{RankMeasure, RunRequest, RunStatus};
use rusqlite::{Connection, params};
use std::path::Path;

pub struct Registry {
    db: Connection,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,
    status TEXT NOT NULL,
    world_size INTEGER NOT NULL,
    batch_size INTEGER NOT NULL,
    device TEXT NOT NULL,
    data_prefix TEXT NOT NULL,
    result_path TEXT NOT NULL,
    coordinator_pid INTEGER NOT NULL,
    request_json TEXT NOT NULL,
    objects INTEGER,
    duration_s REAL,
    cost_usd REAL,
    summary_json TEXT
);
CREATE TABLE IF NOT EXISTS ranks (
    run_id TEXT NOT NULL REFERENCES runs(id),
    rank INTEGER NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    duration_s REAL,
    peak_rss_mb REAL,
    objects INTEGER,
    error TEXT,
    PRIMARY KEY (run_id, rank)
);";

impl Registry {
    /// Opens (creating if needed) `path`, and marks runs whose coordinator is gone as interrupted.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let db = Connection::open(path)
            .with_context(|| format!("opening run registry {}", path.display()))?;
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        db.execute_batch(SCHEMA)
            .with_context(|| format!("preparing run registry {}", path.display()))?;
        let registry = Registry { db };
        registry.mark_interrupted()?;
        Ok(registry)
    }

    fn mark_interrupted(&self) -> Result<()> {
        let mut stmt = self
            .db
            .prepare("SELECT id, coordinator_pid FROM runs WHERE status = 'running'")?;
        let running: Vec<(String, i64)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        for (id, pid) in running {
            if !process_alive(pid) {
                self.db.execute(
                    "UPDATE runs SET status = 'interrupted' WHERE id = ?1",
                    params![id],
                )?;
                self.db.execute("UPDATE ranks SET status = 'interrupted' WHERE run_id = ?1 AND status = 'running'", params![id])?;
            }
        }
        Ok(())
    }

    pub fn start(&self, id: &str, request: &RunRequest) -> Result<()> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        self.db.execute(
            "INSERT INTO runs (id, created_at, status, world_size, batch_size, device, data_prefix, result_path, coordinator_pid, request_json)
             VALUES (?1, ?2, 'running', ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                id,
                now,
                request.world_size as i64,
                request.batch_size as i64,
                serde_json::to_value(request.device)?.as_str().unwrap_or("cpu"),
                request.data_prefix,
                request.result_path,
                i64::from(std::process::id()),
                serde_json::to_string(request)?
            ],
        )?;
        Ok(())
    }

    pub fn rank_update(
        &self,
        run_id: &str,
        rank: usize,
        status: &str,
        measure: Option<&RankMeasure>,
        attempts: u32,
        error: Option<&str>,
    ) -> Result<()> {
        self.db.execute(
            "INSERT INTO ranks (run_id, rank, status, attempts, duration_s, peak_rss_mb, objects, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT(run_id, rank) DO UPDATE SET status = ?3, attempts = ?4, duration_s = ?5, peak_rss_mb = ?6, objects = ?7, error = ?8",
            params![
                run_id,
                rank as i64,
                status,
                i64::from(attempts),
                measure.map(|m| m.duration_s),
                measure.map(|m| m.peak_rss_mb),
                measure.map(|m| m.objects as i64),
                error
            ],
        )?;
        Ok(())
    }

    pub fn finish(&self, summary: &RunSummary) -> Result<()> {
        self.db.execute(
            "UPDATE runs SET status = ?2, objects = ?3, duration_s = ?4, cost_usd = ?5, summary_json = ?6 WHERE id = ?1",
            params![
                summary.run_id,
                summary.status.name(),
                summary.objects as i64,
                summary.duration_s,
                summary.cost_usd,
                serde_json::to_string(summary)?
            ],
        )?;
        Ok(())
    }

    pub fn fail(&self, id: &str, error: &str) -> Result<()> {
        self.db.execute(
            "UPDATE runs SET status = 'failed', summary_json = ?2 WHERE id = ?1",
            params![id, serde_json::json!({ "error": error }).to_string()],
        )?;
        Ok(())
    }

    /// All runs, newest first.
    pub fn list(&self) -> Result<Vec<RunInfo>> {
        let mut stmt = self.db.prepare(
            "SELECT id, created_at, status, world_size, batch_size, device, data_prefix, result_path, objects, duration_s, cost_usd
             FROM runs ORDER BY created_at DESC, id DESC",
        )?;
        let rows = stmt.query_map([], |r| {
            let status: String = r.get(2)?;
            Ok(RunInfo {
                id: r.get(0)?,
                created_at: r.get(1)?,
                status: RunStatus::parse(&status).unwrap_or(RunStatus::Failed),
                world_size: r.get::<_, i64>(3)? as usize,
                batch_size: r.get::<_, i64>(4)? as usize,
                device: r.get(5)?,
                data_prefix: r.get(6)?,
                result_path: r.get(7)?,
                objects: r.get::<_, Option<i64>>(8)?.map(|n| n as usize),
                duration_s: r.get(9)?,
                cost_usd: r.get(10)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

fn process_alive(pid: i64) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    pid > 0 && pid <= i64::from(i32::MAX) && unsafe { libc::kill(pid as i32, 0) } == 0
}
