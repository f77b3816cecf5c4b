//! The run registry: every run and rank in an SQLite file in the data directory.
//!
//! It survives restarts; a run whose coordinator died (crash, kill) is marked
//! `interrupted` the next time the registry is opened, never left `running`.
//! A coordinator is known by its pid *and* its start (boot id and start tick),
//! so a recycled pid (a restarted container's server is PID 1 again) is not
//! mistaken for it. The file is in WAL mode with full syncs: readers (the
//! server's pages) do not block the coordinators' writes, and a power cut
//! loses no committed row. The server's sweeps are kept here too, so they are
//! found again after a restart (one that was running then is `interrupted`).

use anyhow::{Context, Result};
use cosmicai_engine::pipeline::RunSummary;
use cosmicai_shared::api::{RunEvent, RunInfo, SweepInfo};
use cosmicai_shared::run::{RankMeasure, RunRequest, RunStatus};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;

pub struct Registry {
    db: Connection,
    /// The data folder it records runs of (their result paths are inside it).
    data_dir: std::path::PathBuf,
}

/// The start of the error of a run that ended but whose row could not be
/// closed then: interrupted, to be closed from its summary at the next open.
pub const UNCLOSED: &str = "the run ended, but its registry row could not be closed";

/// Run `id`'s summary in `result_path` under `data_dir`, where the run wrote
/// one (the last thing a run writes before its row is closed).
pub fn ended_summary(data_dir: &Path, id: &str, result_path: &str) -> Option<RunSummary> {
    if cosmicai_shared::run::check_key(result_path).is_err() {
        return None;
    }
    let bytes = std::fs::read(data_dir.join(result_path).join("summary.json")).ok()?;
    serde_json::from_slice::<RunSummary>(&bytes)
        .ok()
        .filter(|summary| summary.run_id == id)
}

/// Where a run executes on AWS.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AwsExecution {
    pub config: crate::aws::AwsConfig,
    pub execution_arn: String,
}

/// What a launch's `Idempotency-Key` says of it (see [`Registry::claim_launch`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LaunchClaim {
    /// Not seen: this request starts it.
    New,
    /// Seen, and it started this run or sweep.
    Started(String),
    /// Seen, and its start has not ended yet (nor written its run or sweep).
    Starting,
    /// Seen with another body.
    OtherBody,
}

/// How long a launch's key is kept: a day, for clients that retry after a restart.
const LAUNCH_KEY_KEPT_S: i64 = 24 * 3600;
/// How long a key whose start never ended, and wrote no run or sweep (a crash
/// mid-start), blocks retries.
const LAUNCH_PENDING_KEPT_S: i64 = 600;

/// SQL: whether `id_expr` (a column or parameter) names a run or sweep the
/// registry holds, one that a launch's start wrote.
fn has_run_or_sweep(id_expr: &str) -> String {
    format!(
        "(EXISTS (SELECT 1 FROM runs WHERE runs.id = {id_expr}) \
          OR EXISTS (SELECT 1 FROM sweeps WHERE sweeps.id = {id_expr}))"
    )
}

/// What [`Registry::claim`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// This process follows the run now.
    Taken,
    /// A live process (this pid) follows it.
    FollowedBy(i64),
    /// It was asked for interrupted only, and is not (ended, or taken up meanwhile).
    NotInterrupted,
}

/// Ranks of a run by their rows' state ([`Registry::rank_progress`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RankProgress {
    pub succeeded: usize,
    pub failed: usize,
    /// Started (or retrying) and not ended.
    pub running: usize,
    /// Objects the succeeded ranks predicted.
    pub objects: usize,
}

/// A run's row, as a follower needs it.
#[derive(Debug, Clone)]
pub struct StoredRun {
    pub request: RunRequest,
    pub aws: Option<AwsExecution>,
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
    summary_json TEXT,
    aws_json TEXT,
    coordinator_identity TEXT,
    planned TEXT
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
);
CREATE INDEX IF NOT EXISTS runs_newest_first ON runs (created_at, id);
CREATE TABLE IF NOT EXISTS launches (
    key TEXT PRIMARY KEY,
    body_sha256 TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    id TEXT,
    planned_id TEXT
);
CREATE TABLE IF NOT EXISTS sweeps (
    id TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,
    state TEXT NOT NULL,
    info_json TEXT NOT NULL,
    coordinator_pid INTEGER NOT NULL,
    coordinator_identity TEXT
);";

/// The registry's file in a data folder.
pub fn path(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("cosmicai.sqlite")
}

/// The registry of data folder `data_dir`, with run `run_id`'s row (as a
/// follower needs it, and as the API gives it), for a command about one run
/// (resume, follow again, export): a mistyped `--data` makes no folder and no
/// empty registry, and says so.
pub fn open_run(data_dir: &Path, run_id: &str) -> Result<(Registry, StoredRun, RunInfo)> {
    let file = path(data_dir);
    if !file.is_file() {
        anyhow::bail!(
            "run {run_id}: {} holds no run registry (cosmicai.sqlite); --data names the folder the run was started with",
            data_dir.display()
        );
    }
    let registry = Registry::open(&file)?;
    let (Some(run), Some(info)) = (registry.run(run_id)?, registry.info(run_id)?) else {
        anyhow::bail!(
            "run {run_id}: not in the registry of {}",
            data_dir.display()
        );
    };
    Ok((registry, run, info))
}

impl Registry {
    /// Opens the registry of data folder `data_dir` (see [`Registry::open`]).
    pub fn in_folder(data_dir: &Path) -> Result<Self> {
        Self::open(&path(data_dir))
    }

    /// Opens (creating if needed) `path`, and marks runs whose coordinator is gone as interrupted.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_at(path).map_err(|e| {
            // SQLite's "unable to open database file" says nothing of why.
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
            if dir.is_dir() && !writable(dir) {
                e.context(format!(
                    "{} cannot be written here: runs keep their registry (cosmicai.sqlite) and results inside the data folder, so give one this user may write to (a copy of read-only data, say)",
                    dir.display()
                ))
            } else {
                e
            }
        })
    }

    fn open_at(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let db = Connection::open(path)
            .with_context(|| format!("opening run registry {}", path.display()))?;
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        db.pragma_update(None, "journal_mode", "WAL")
            .and_then(|()| db.pragma_update(None, "synchronous", "FULL"))
            .with_context(|| format!("setting up run registry {}", path.display()))?;
        db.execute_batch(SCHEMA)
            .with_context(|| format!("preparing run registry {}", path.display()))?;
        let data_dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let registry = Registry { db, data_dir };
        registry.migrate()?;
        registry.mark_interrupted(&registry.data_dir)?;
        Ok(registry)
    }

    /// Columns added since the first registries were written.
    fn migrate(&self) -> Result<()> {
        for (table, column) in [
            ("runs", "aws_json"),
            ("runs", "coordinator_identity"),
            ("launches", "planned_id"),
            ("runs", "planned"),
        ] {
            let has: bool = self
                .db
                .prepare("SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2")?
                .exists(params![table, column])?;
            if !has {
                self.db
                    .execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} TEXT"))?;
            }
        }
        Ok(())
    }

    /// Runs whose coordinator is gone: interrupted, unless the run's summary
    /// under `data_dir` says it ended (its coordinator wrote it, then died, or
    /// could not write the row): then closed from it.
    fn mark_interrupted(&self, data_dir: &Path) -> Result<()> {
        // One pass over the rows still open: those running, and local runs
        // that ended but could not close their row then (a full disk, left
        // interrupted as such). AWS runs are followed again instead.
        let mut stmt = self.db.prepare(
            "SELECT id, coordinator_pid, coordinator_identity, result_path, aws_json IS NULL, status = 'running' FROM runs \
             WHERE status = 'running' OR (status = 'interrupted' AND aws_json IS NULL AND instr(summary_json, ?1) > 0)",
        )?;
        type Open = (String, i64, Option<String>, String, bool, bool);
        let open: Vec<Open> = stmt
            .query_map(params![UNCLOSED], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })?
            .collect::<Result<_, _>>()?;
        for (id, pid, identity, result_path, local, running) in open {
            if running && coordinator_alive(pid, identity.as_deref()) {
                continue;
            }
            if local && let Some(summary) = ended_summary(data_dir, &id, &result_path) {
                self.finish(&summary)?;
                continue;
            }
            if running {
                // Both or neither: a run left interrupted with ranks still
                // running would never be looked at again.
                let tx = self.db.unchecked_transaction()?;
                tx.execute(
                    "UPDATE runs SET status = 'interrupted' WHERE id = ?1",
                    params![id],
                )?;
                tx.execute("UPDATE ranks SET status = 'interrupted' WHERE run_id = ?1 AND status = 'running'", params![id])?;
                tx.commit()?;
            }
        }
        let mut stmt = self.db.prepare(
            "SELECT id, coordinator_pid, coordinator_identity, info_json FROM sweeps WHERE state = 'running'",
        )?;
        let running: Vec<(String, i64, Option<String>, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
            .collect::<Result<_, _>>()?;
        for (id, pid, identity, json) in running {
            if coordinator_alive(pid, identity.as_deref()) {
                continue;
            }
            let info = match serde_json::from_str::<SweepInfo>(&json) {
                Ok(info) => SweepInfo {
                    state: "interrupted".into(),
                    running: None,
                    error: Some("the server stopped during the sweep".into()),
                    ..info
                },
                // Unreadable, it is still not running.
                Err(_) => SweepInfo {
                    id: id.clone(),
                    state: "interrupted".into(),
                    planned: 0,
                    rows: Vec::new(),
                    error: Some(
                        "the server stopped during the sweep; its stored rows are unreadable"
                            .into(),
                    ),
                    running: None,
                },
            };
            self.db.execute(
                "UPDATE sweeps SET state = 'interrupted', info_json = ?2 WHERE id = ?1",
                params![id, serde_json::to_string(&info)?],
            )?;
        }
        Ok(())
    }

    /// Claims launch `key` (a route and a client's `Idempotency-Key`) for a
    /// request whose body hashes to `body_sha256`, which will start `planned_id`.
    /// Keys are kept a day. A key whose start has not been settled is the run
    /// or sweep it planned once that has a row (its start wrote it, then the
    /// server died before settling), and is let go after 10 minutes without
    /// one (a crash before anything started).
    pub fn claim_launch(
        &self,
        key: &str,
        body_sha256: &str,
        planned_id: &str,
    ) -> Result<LaunchClaim> {
        let now = unix_now();
        let tx = self.db.unchecked_transaction()?;
        tx.execute(
            &format!(
                "DELETE FROM launches WHERE created_at < ?1
                 OR (id IS NULL AND created_at < ?2 AND NOT {})",
                has_run_or_sweep("launches.planned_id")
            ),
            params![now - LAUNCH_KEY_KEPT_S, now - LAUNCH_PENDING_KEPT_S],
        )?;
        let held: Option<(String, Option<String>, Option<String>)> = tx
            .query_row(
                "SELECT body_sha256, id, planned_id FROM launches WHERE key = ?1",
                params![key],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let has_row = |id: &str| -> Result<bool> {
            Ok(tx.query_row(
                &format!("SELECT {}", has_run_or_sweep("?1")),
                params![id],
                |r| r.get(0),
            )?)
        };
        let claim = match held {
            None => {
                tx.execute(
                    "INSERT INTO launches (key, body_sha256, created_at, planned_id)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![key, body_sha256, now, planned_id],
                )?;
                LaunchClaim::New
            }
            Some((held, ..)) if held != body_sha256 => LaunchClaim::OtherBody,
            Some((_, Some(id), _)) => LaunchClaim::Started(id),
            Some((_, None, Some(planned))) if has_row(&planned)? => {
                tx.execute(
                    "UPDATE launches SET id = ?2 WHERE key = ?1",
                    params![key, planned],
                )?;
                LaunchClaim::Started(planned)
            }
            Some(_) => LaunchClaim::Starting,
        };
        tx.commit()?;
        Ok(claim)
    }

    /// Launch `key`, claimed for `planned_id`, started it: a retry with the key
    /// is given it. A claim let go and taken by another start is left to that one.
    pub fn launched(&self, key: &str, planned_id: &str) -> Result<()> {
        self.db.execute(
            "UPDATE launches SET id = ?2 WHERE key = ?1 AND planned_id = ?2",
            params![key, planned_id],
        )?;
        Ok(())
    }

    /// Launch `key`, claimed for `planned_id`, started nothing (it was
    /// refused, or its start panicked): a retry tries again. A key whose run or
    /// sweep was written (a start that panicked after) is kept for it.
    pub fn release_launch(&self, key: &str, planned_id: &str) -> Result<()> {
        self.db.execute(
            &format!(
                "DELETE FROM launches WHERE key = ?1 AND planned_id = ?2 AND id IS NULL
                 AND NOT {}",
                has_run_or_sweep("?2")
            ),
            params![key, planned_id],
        )?;
        Ok(())
    }

    /// Writes sweep `info` as it stands now, run by this process.
    pub fn save_sweep(&self, info: &SweepInfo) -> Result<()> {
        self.db.execute(
            "INSERT INTO sweeps (id, created_at, state, info_json, coordinator_pid, coordinator_identity)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(id) DO UPDATE SET state = ?3, info_json = ?4",
            params![
                info.id,
                unix_now(),
                info.state,
                serde_json::to_string(info)?,
                i64::from(std::process::id()),
                process_identity(std::process::id())
            ],
        )?;
        Ok(())
    }

    /// At most `limit` stored sweeps, newest first.
    pub fn sweeps(&self, limit: i64) -> Result<Vec<SweepInfo>> {
        let mut stmt = self.db.prepare(
            "SELECT id, info_json FROM sweeps ORDER BY created_at DESC, id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map(params![limit], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut sweeps = Vec::new();
        for row in rows {
            let (id, json) = row?;
            // One unreadable row (a newer server's, a damaged file) hides only itself.
            match serde_json::from_str(&json) {
                Ok(sweep) => sweeps.push(sweep),
                Err(e) => crate::say!("warning: sweep {id}: its stored rows are unreadable: {e}"),
            }
        }
        Ok(sweeps)
    }

    /// Stored sweep `id`, by its key.
    pub fn sweep(&self, id: &str) -> Result<Option<SweepInfo>> {
        let json: Option<String> = self
            .db
            .query_row(
                "SELECT info_json FROM sweeps WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )
            .optional()?;
        json.map(|j| {
            serde_json::from_str(&j).with_context(|| format!("sweep {id}: its stored rows"))
        })
        .transpose()
    }

    pub fn start(&self, id: &str, request: &RunRequest) -> Result<()> {
        let now = unix_now();
        // A run has its row from the start, and the planned request replaces
        // what it was given once planning is done (data converted, weights uploaded).
        self.db.execute(
            "INSERT INTO runs (id, created_at, status, world_size, batch_size, device, data_prefix, result_path, coordinator_pid, request_json, coordinator_identity)
             VALUES (?1, ?2, 'running', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT(id) DO UPDATE SET world_size = ?3, batch_size = ?4, device = ?5, data_prefix = ?6, result_path = ?7, request_json = ?9",
            params![
                id,
                now,
                request.world_size as i64,
                request.batch_size as i64,
                serde_json::to_value(request.device)?.as_str().unwrap_or("cpu"),
                // A run on S3 shows its bucket: its data may be another's.
                request.data_location(),
                request.result_path,
                i64::from(std::process::id()),
                serde_json::to_string(request)?,
                process_identity(std::process::id())
            ],
        )?;
        Ok(())
    }

    pub fn set_created_at(&self, id: &str, secs: i64) -> Result<()> {
        self.db.execute(
            "UPDATE runs SET created_at = ?2 WHERE id = ?1",
            params![id, secs],
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

    /// Starts a transaction (until [`Registry::commit`]): a Map's 10,000 rank
    /// rows then cost one sync to disk, not one each.
    pub fn begin(&self) -> Result<()> {
        self.db.execute_batch("BEGIN IMMEDIATE")?;
        Ok(())
    }

    /// Commits the open transaction; if that fails, rolls it back, so the
    /// connection is never left inside a transaction.
    pub fn commit(&self) -> Result<()> {
        if let Err(e) = self.db.execute_batch("COMMIT") {
            let _ = self.db.execute_batch("ROLLBACK");
            return Err(e.into());
        }
        Ok(())
    }

    /// Closes run `summary.run_id` with its summary, and writes every rank's
    /// row from it in the same transaction: a rank update that failed during
    /// the run (reported then) is repaired here, so the rows equal the summary.
    pub fn finish(&self, summary: &RunSummary) -> Result<()> {
        if !self.db.is_autocommit() {
            // A batch of rank rows left open by a failure: this rewrites them all.
            let _ = self.db.execute_batch("ROLLBACK");
        }
        let tx = self.db.unchecked_transaction()?;
        tx.execute(
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
        for m in &summary.per_rank {
            let status = if m.error.is_some() {
                "failed"
            } else {
                "succeeded"
            };
            let measure = m.error.is_none().then_some(m);
            self.rank_update(
                &summary.run_id,
                m.rank,
                status,
                measure,
                m.attempts,
                m.error.as_deref(),
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Records where run `id` executes on AWS (the deployment and the execution's
    /// ARN), so it can be followed again after its launcher stopped.
    pub fn set_aws(&self, id: &str, aws: &AwsExecution) -> Result<()> {
        self.db.execute(
            "UPDATE runs SET aws_json = ?2 WHERE id = ?1",
            params![id, serde_json::to_string(aws)?],
        )?;
        Ok(())
    }

    /// Run `id`'s request and AWS execution, if it has a row (who follows it:
    /// [`Registry::claim`]).
    pub fn run(&self, id: &str) -> Result<Option<StoredRun>> {
        let mut stmt = self
            .db
            .prepare("SELECT request_json, aws_json FROM runs WHERE id = ?1")?;
        let mut rows = stmt.query(params![id])?;
        let Some(row) = rows.next()? else {
            return Ok(None);
        };
        let request: String = row.get(0)?;
        let aws: Option<String> = row.get(1)?;
        Ok(Some(StoredRun {
            request: serde_json::from_str(&request)
                .with_context(|| format!("run {id}: its stored request"))?,
            aws: aws
                .map(|a| serde_json::from_str(&a))
                .transpose()
                .with_context(|| format!("run {id}: its stored AWS execution"))?,
        }))
    }

    /// How far run `id`'s ranks are, as their rows record them (a watcher in
    /// another process reads this; the run's own events are its coordinator's).
    pub fn rank_progress(&self, id: &str) -> Result<RankProgress> {
        let mut stmt = self.db.prepare(
            "SELECT status, COUNT(*), COALESCE(SUM(objects), 0) FROM ranks WHERE run_id = ?1 GROUP BY status",
        )?;
        let rows = stmt.query_map(params![id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?.max(0) as usize,
                r.get::<_, i64>(2)?.max(0) as usize,
            ))
        })?;
        let mut progress = RankProgress::default();
        for row in rows {
            let (status, n, objects) = row?;
            match status.as_str() {
                "succeeded" => {
                    progress.succeeded = n;
                    progress.objects = objects;
                }
                "failed" => progress.failed = n,
                "running" | "retrying" => progress.running += n,
                _ => {}
            }
        }
        Ok(progress)
    }

    /// Run `id`'s ranks as recorded, in rank order, as the events that left
    /// them so: finished ones with their measures, failed ones with their
    /// errors, and one that had started and never ended (its run interrupted)
    /// as started; the first `at_most` ranks. For a page opened on a run this
    /// process does not hold.
    pub fn rank_events(&self, id: &str, at_most: usize) -> Result<Vec<RunEvent>> {
        let mut stmt = self.db.prepare(
            "SELECT rank, status, attempts, duration_s, peak_rss_mb, objects, error FROM ranks WHERE run_id = ?1 ORDER BY rank LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![id, at_most as i64], |r| {
            let rank = r.get::<_, i64>(0)?.max(0) as usize;
            let status: String = r.get(1)?;
            let attempts = r.get::<_, i64>(2)?.clamp(0, i64::from(u32::MAX)) as u32;
            Ok(match status.as_str() {
                "succeeded" => RunEvent::RankFinished {
                    measure: RankMeasure {
                        rank,
                        run_id: id.to_string(),
                        attempts,
                        duration_s: r.get::<_, Option<f64>>(3)?.unwrap_or(0.0),
                        peak_rss_mb: r.get::<_, Option<f64>>(4)?.unwrap_or(0.0),
                        objects: r.get::<_, Option<i64>>(5)?.unwrap_or(0).max(0) as usize,
                        ..Default::default()
                    },
                },
                "failed" => RunEvent::RankFailed {
                    rank,
                    attempt: attempts,
                    error: r
                        .get::<_, Option<String>>(6)?
                        .unwrap_or_else(|| "failed".into()),
                    retrying: false,
                },
                _ => RunEvent::RankStarted {
                    rank,
                    attempt: attempts.max(1),
                },
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Ids of interrupted runs that have an AWS execution, created since `since`
    /// (unix seconds): executions that may have gone on without a follower.
    pub fn interrupted_on_aws(&self, since: i64) -> Result<Vec<String>> {
        let mut stmt = self.db.prepare(
            "SELECT id FROM runs WHERE status = 'interrupted' AND aws_json IS NOT NULL AND created_at >= ?1 ORDER BY created_at",
        )?;
        let ids = stmt.query_map(params![since], |r| r.get(0))?;
        Ok(ids.collect::<Result<_, _>>()?)
    }

    /// Makes this process run `id`'s follower, unless a live one follows it:
    /// then `Some(its pid)`. One write transaction reads and sets the row, so
    /// of two processes claiming the same run (a server starting while
    /// `runs --follow` runs) one wins and the other is told, not both following.
    /// With `interrupted_only` (a server taking up the runs it listed as
    /// interrupted), a run that has ended or been taken up meanwhile is left.
    pub fn claim(&self, id: &str, interrupted_only: bool) -> Result<Claim> {
        let tx = rusqlite::Transaction::new_unchecked(
            &self.db,
            rusqlite::TransactionBehavior::Immediate,
        )?;
        let row: Option<(String, i64, Option<String>)> = tx
            .query_row(
                "SELECT status, coordinator_pid, coordinator_identity FROM runs WHERE id = ?1",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let me = i64::from(std::process::id());
        if let Some((status, pid, identity)) = &row {
            if status == RunStatus::Running.name()
                && *pid != me
                && coordinator_alive(*pid, identity.as_deref())
            {
                return Ok(Claim::FollowedBy(*pid));
            }
            if interrupted_only && status != RunStatus::Interrupted.name() {
                return Ok(Claim::NotInterrupted);
            }
        }
        tx.execute(
            "UPDATE runs SET status = 'running', coordinator_pid = ?2, coordinator_identity = ?3 WHERE id = ?1",
            params![id, me, process_identity(std::process::id())],
        )?;
        tx.commit()?;
        Ok(Claim::Taken)
    }

    /// Makes this process the coordinator of run `id` again, to resume it,
    /// where the run has ended without every rank's results (interrupted,
    /// cancelled, failed, partial); its last attempt's figures go from the row
    /// until this one closes it. One write transaction reads and sets the row:
    /// of two processes resuming the same run one wins, and a run that another
    /// resume finished meanwhile is left as it is.
    pub fn claim_to_resume(&self, id: &str) -> Result<Claim> {
        let tx = rusqlite::Transaction::new_unchecked(
            &self.db,
            rusqlite::TransactionBehavior::Immediate,
        )?;
        let row: Option<(String, i64)> = tx
            .query_row(
                "SELECT status, coordinator_pid FROM runs WHERE id = ?1",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((status, pid)) = row else {
            return Ok(Claim::NotInterrupted);
        };
        let status = RunStatus::parse(&status).unwrap_or(RunStatus::Running);
        if status == RunStatus::Running {
            return Ok(Claim::FollowedBy(pid));
        }
        if !crate::coordinator::may_resume(status) {
            return Ok(Claim::NotInterrupted);
        }
        tx.execute(
            "UPDATE runs SET status = 'running', coordinator_pid = ?2, coordinator_identity = ?3, \
             objects = NULL, duration_s = NULL, cost_usd = NULL, summary_json = NULL WHERE id = ?1",
            params![
                id,
                i64::from(std::process::id()),
                process_identity(std::process::id())
            ],
        )?;
        tx.commit()?;
        Ok(Claim::Taken)
    }

    /// Records that run `id` was planned (its ranks given their partitions;
    /// a local run's Initialize wrote its payload.json, an AWS run's launcher
    /// planned it before its execution started): only such a run can be
    /// resumed, where its plan is in its result path.
    pub fn set_planned(&self, id: &str) -> Result<()> {
        self.db
            .execute("UPDATE runs SET planned = '1' WHERE id = ?1", params![id])?;
        Ok(())
    }

    /// Run `id` lost its follower but may still be running (on AWS).
    pub fn interrupt(&self, id: &str, error: &str) -> Result<()> {
        self.db.execute(
            "UPDATE runs SET status = 'interrupted', summary_json = ?2 WHERE id = ?1",
            params![id, serde_json::json!({ "error": error }).to_string()],
        )?;
        Ok(())
    }

    pub fn fail(&self, id: &str, error: &str) -> Result<()> {
        self.close(id, RunStatus::Failed, error)
    }

    /// Marks run `id` cancelled by its user, with `error` (what stopped it, and
    /// where): one that ended before its summary (in its upload, or on AWS).
    pub fn cancel(&self, id: &str, error: &str) -> Result<()> {
        self.close(id, RunStatus::Cancelled, error)
    }

    fn close(&self, id: &str, status: RunStatus, error: &str) -> Result<()> {
        self.db.execute(
            "UPDATE runs SET status = ?3, summary_json = ?2 WHERE id = ?1",
            params![
                id,
                serde_json::json!({ "error": error }).to_string(),
                status.name()
            ],
        )?;
        Ok(())
    }

    /// Marks run `id` interrupted where it is still running (its coordinator
    /// gave up on it: an AWS run is then followed again, as after a restart).
    pub fn interrupt_if_running(&self, id: &str, error: &str) -> Result<()> {
        self.db.execute(
            "UPDATE runs SET status = 'interrupted', summary_json = ?2 WHERE id = ?1 AND status = 'running'",
            params![id, serde_json::json!({ "error": error }).to_string()],
        )?;
        Ok(())
    }

    /// Closes run `id` as failed where nothing else has closed it. A local run
    /// its recorder left interrupted (a panic unwinding past it) is closed too:
    /// nothing would follow it again. An AWS one stays interrupted, to be followed.
    pub fn fail_if_running(&self, id: &str, error: &str) -> Result<()> {
        self.db.execute(
            "UPDATE runs SET status = 'failed', summary_json = ?2 WHERE id = ?1 AND (status = 'running' OR (status = 'interrupted' AND aws_json IS NULL))",
            params![id, serde_json::json!({ "error": error }).to_string()],
        )?;
        Ok(())
    }

    /// The data folders of the runs still running (their data must stay).
    pub fn running_data_prefixes(&self) -> Result<Vec<String>> {
        let mut stmt = self
            .db
            .prepare("SELECT DISTINCT data_prefix FROM runs WHERE status = 'running'")?;
        let rows = stmt.query_map([], |row| row.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// All runs, newest first.
    pub fn list(&self) -> Result<Vec<RunInfo>> {
        self.page(i64::MAX, None)
    }

    /// At most `limit` runs, newest first, older than run `before` when given
    /// (keyset paging: each page costs its own rows, not a scan of the rest).
    pub fn page(&self, limit: i64, before: Option<&str>) -> Result<Vec<RunInfo>> {
        if let Some(id) = before
            && self.info(id)?.is_none()
        {
            anyhow::bail!(UnknownRun(id.to_string()));
        }
        let mut stmt = self.db.prepare(&format!(
            "SELECT {INFO_COLUMNS} FROM runs
             WHERE ?2 IS NULL OR (created_at, id) < (SELECT created_at, id FROM runs WHERE id = ?2)
             ORDER BY created_at DESC, id DESC LIMIT ?1"
        ))?;
        let rows = stmt.query_map(params![limit, before], |r| run_info(r, &self.data_dir))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Run `id`'s row for the API, by its key (no scan).
    pub fn info(&self, id: &str) -> Result<Option<RunInfo>> {
        let mut stmt = self
            .db
            .prepare(&format!("SELECT {INFO_COLUMNS} FROM runs WHERE id = ?1"))?;
        let mut rows = stmt.query_map(params![id], |r| run_info(r, &self.data_dir))?;
        Ok(rows.next().transpose()?)
    }
}

/// `before` names no run.
#[derive(Debug)]
pub struct UnknownRun(pub String);

impl std::fmt::Display for UnknownRun {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "before={:?}: no such run", self.0)
    }
}

impl std::error::Error for UnknownRun {}

/// The row's columns, and the error of a run closed without a summary (its
/// `summary_json` then holds that alone: a summary, maybe MBs, is not parsed).
const INFO_COLUMNS: &str = "id, created_at, status, world_size, batch_size, device, data_prefix, result_path, objects, duration_s, cost_usd, \
    CASE WHEN substr(summary_json, 1, 9) = '{\"error\":' AND json_valid(summary_json) THEN json_extract(summary_json, '$.error') END, \
    aws_json IS NOT NULL, \
    CASE WHEN json_valid(request_json) THEN json_extract(request_json, '$.model') END, \
    CASE WHEN json_valid(request_json) THEN json_extract(request_json, '$.precision') END, \
    planned IS NOT NULL";

/// A row as [`RunInfo`]; `data_dir` is where its result path is, to tell
/// whether it can be resumed (its plan there).
fn run_info(r: &rusqlite::Row, data_dir: &Path) -> rusqlite::Result<RunInfo> {
    let status: String = r.get(2)?;
    let status = RunStatus::parse(&status).unwrap_or(RunStatus::Failed);
    let on_aws: bool = r.get(12).unwrap_or(false);
    let result_path: String = r.get(7)?;
    // Planned under its own id (a run refused at Initialize names another
    // run's result path), and its plan still there.
    let planned: bool = r.get(15).unwrap_or(false);
    // An AWS run's plan is copied back here with its results once its
    // execution wrote one (its launcher marks it planned before: a start that
    // never reached Initialize has none), and one left interrupted is followed
    // to its end first (its execution may still run).
    let resumable = planned
        && crate::coordinator::may_resume(status)
        && !(on_aws && status == RunStatus::Interrupted)
        && cosmicai_shared::run::check_key(&result_path).is_ok()
        && data_dir
            .join(cosmicai_engine::pipeline::payload_key(&result_path))
            .is_file();
    Ok(RunInfo {
        id: r.get(0)?,
        created_at: r.get(1)?,
        status,
        world_size: r.get::<_, i64>(3)? as usize,
        batch_size: r.get::<_, i64>(4)? as usize,
        device: r.get(5)?,
        data_prefix: r.get(6)?,
        result_path,
        objects: r.get::<_, Option<i64>>(8)?.map(|n| n as usize),
        duration_s: r.get(9)?,
        cost_usd: r.get(10)?,
        error: r
            .get::<_, Option<String>>(11)?
            .or_else(|| (status == RunStatus::Interrupted).then(|| interrupted_why(on_aws))),
        model: r.get(13)?,
        precision: r.get::<_, Option<String>>(14)?.filter(|p| p != "fp32"),
        resumable,
        on_aws,
    })
}

/// Why an interrupted run has no summary, and what to do about it.
fn interrupted_why(on_aws: bool) -> String {
    if on_aws {
        "the process following it stopped before it ended; the execution on AWS may still be going: \
         `cosmicai runs --follow ID` takes it up (a server does by itself)"
            .into()
    } else {
        "its coordinator (the server or the CLI that ran it) stopped before it ended, \
         and its ranks with it; the ranks that finished left their results in its result_path. \
         `cosmicai run --data DATA --resume ID` runs the others and summarizes it (in the explorer: Resume on its page)"
            .into()
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Whether this process may create files in `dir`.
fn writable(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: a NUL-terminated path; access(2) only reads it.
    unsafe { libc::access(c_path.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

fn process_alive(pid: i64) -> bool {
    if pid <= 0 || pid > i64::from(i32::MAX) {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists.
    let sent = unsafe { libc::kill(pid as i32, 0) };
    // EPERM: it exists, under another user (a service's server while a person
    // runs `runs --follow`), and may not be signalled.
    sent == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

pub use cosmicai_engine::system::process_identity;

/// Whether the coordinator recorded as `pid` (and `identity`, where recorded)
/// is still running.
pub fn coordinator_alive(pid: i64, identity: Option<&str>) -> bool {
    if !process_alive(pid) {
        return false;
    }
    match (identity, process_identity(pid as u32)) {
        (Some(identity), Some(now)) => now == identity,
        // Recorded before identities were, or there but unreadable (another
        // user's process where /proc is mounted hidepid): taken as alive.
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_request() -> RunRequest {
        serde_json::from_str(r#"{"batch_size": 1, "world_size": 1, "result_path": "results/x"}"#)
            .unwrap()
    }

    fn status_of(registry: &Registry, id: &str) -> RunStatus {
        let status: String = registry
            .db
            .query_row("SELECT status FROM runs WHERE id = ?1", params![id], |r| {
                r.get(0)
            })
            .unwrap();
        RunStatus::parse(&status).unwrap()
    }

    #[test]
    fn a_run_on_s3_lists_where_its_partitions_are() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(&dir.path().join("r.sqlite")).unwrap();
        let local = RunRequest {
            data_prefix: "catalog".into(),
            ..sample_request()
        };
        let in_place = RunRequest {
            bucket: "stack".into(),
            data_bucket: Some("cai-data".into()),
            data_prefix: "100MB".into(),
            ..sample_request()
        };
        registry.start("local", &local).unwrap();
        registry.start("in-place", &in_place).unwrap();
        let shown = |id: &str| registry.info(id).unwrap().unwrap().data_prefix;
        assert_eq!(shown("local"), "catalog");
        assert_eq!(shown("in-place"), "s3://cai-data/100MB");
        // Local datasets in use are named as folders; a run on S3 names its
        // bucket (a local dataset uploaded for one is no longer read once it is up).
        let mut in_use = registry.running_data_prefixes().unwrap();
        in_use.sort();
        assert_eq!(in_use, ["catalog", "s3://cai-data/100MB"]);
    }

    #[test]
    fn a_local_run_left_interrupted_is_failed_and_an_aws_one_kept_for_following() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(&dir.path().join("r.sqlite")).unwrap();
        for id in ["local", "aws", "done"] {
            registry.start(id, &sample_request()).unwrap();
        }
        registry
            .db
            .execute("UPDATE runs SET aws_json = '{}' WHERE id = 'aws'", [])
            .unwrap();
        registry
            .db
            .execute("UPDATE runs SET status = 'succeeded' WHERE id = 'done'", [])
            .unwrap();
        for id in ["local", "aws"] {
            registry.interrupt(id, "its coordinator stopped").unwrap();
        }
        for id in ["local", "aws", "done"] {
            registry
                .fail_if_running(id, "the run's coordinator panicked")
                .unwrap();
        }
        assert_eq!(status_of(&registry, "local"), RunStatus::Failed);
        assert_eq!(status_of(&registry, "aws"), RunStatus::Interrupted);
        assert_eq!(status_of(&registry, "done"), RunStatus::Succeeded);
    }

    #[test]
    fn a_run_is_claimed_by_one_follower_while_it_lives() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(&dir.path().join("r.sqlite")).unwrap();
        registry.start("run-1", &sample_request()).unwrap();
        let set_follower = |pid: i64, status: &str| {
            registry
                .db
                .execute(
                    "UPDATE runs SET coordinator_pid = ?1, coordinator_identity = NULL, status = ?2 WHERE id = 'run-1'",
                    params![pid, status],
                )
                .unwrap();
        };
        let row = || -> (String, i64) {
            registry
                .db
                .query_row(
                    "SELECT status, coordinator_pid FROM runs WHERE id = 'run-1'",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .unwrap()
        };
        let me = i64::from(std::process::id());
        // Followed by a live process (pid 1 always is): refused, the row as it was.
        set_follower(1, "running");
        assert_eq!(
            registry.claim("run-1", false).unwrap(),
            Claim::FollowedBy(1)
        );
        assert_eq!(row(), ("running".to_string(), 1));
        // Interrupted, or its follower gone: taken by this process.
        set_follower(1, "interrupted");
        assert_eq!(registry.claim("run-1", true).unwrap(), Claim::Taken);
        assert_eq!(row(), ("running".to_string(), me));
        set_follower(i64::from(i32::MAX), "running");
        assert_eq!(registry.claim("run-1", false).unwrap(), Claim::Taken);
        assert_eq!(row(), ("running".to_string(), me));
        // Its own claim again is no conflict; the connection is left out of a transaction.
        assert_eq!(registry.claim("run-1", false).unwrap(), Claim::Taken);
        assert!(registry.db.is_autocommit());
        // A server taking up the runs it listed as interrupted leaves one that
        // ended meanwhile (closed by `runs --follow`, say) as it is.
        set_follower(i64::from(i32::MAX), "succeeded");
        assert_eq!(
            registry.claim("run-1", true).unwrap(),
            Claim::NotInterrupted
        );
        assert_eq!(row(), ("succeeded".to_string(), i64::from(i32::MAX)));
        // `runs --follow` of an ended run follows it again (to copy its results).
        assert_eq!(registry.claim("run-1", false).unwrap(), Claim::Taken);
    }

    #[test]
    fn a_launch_key_gives_its_run_to_retries_and_is_let_go_when_refused_or_stale() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(&dir.path().join("r.sqlite")).unwrap();
        let claim = |key: &str, body: &str, planned: &str| {
            registry.claim_launch(key, body, planned).unwrap()
        };
        assert_eq!(claim("runs k", "a", "run-1"), LaunchClaim::New);
        assert_eq!(claim("runs k", "a", "run-2"), LaunchClaim::Starting);
        assert_eq!(claim("runs k", "b", "run-2"), LaunchClaim::OtherBody);
        registry.launched("runs k", "run-1").unwrap();
        assert_eq!(
            claim("runs k", "a", "run-3"),
            LaunchClaim::Started("run-1".into())
        );
        // Refused: the key is free again.
        assert_eq!(claim("runs j", "a", "run-4"), LaunchClaim::New);
        registry.release_launch("runs j", "run-4").unwrap();
        assert_eq!(claim("runs j", "b", "run-5"), LaunchClaim::New);
        // A start that never ended and wrote nothing blocks its key 10 minutes;
        // any key goes after a day.
        let age = |key: &str, seconds: i64| {
            registry
                .db
                .execute(
                    "UPDATE launches SET created_at = created_at - ?2 WHERE key = ?1",
                    params![key, seconds],
                )
                .unwrap();
        };
        age("runs j", LAUNCH_PENDING_KEPT_S + 1);
        assert_eq!(claim("runs j", "c", "run-6"), LaunchClaim::New);
        // The start let go (run-5) settles late: the key stays run-6's.
        registry.launched("runs j", "run-5").unwrap();
        registry.release_launch("runs j", "run-5").unwrap();
        assert_eq!(claim("runs j", "c", "run-7"), LaunchClaim::Starting);
        registry.launched("runs j", "run-6").unwrap();
        assert_eq!(
            claim("runs j", "c", "run-7"),
            LaunchClaim::Started("run-6".into())
        );
        age("runs k", LAUNCH_PENDING_KEPT_S + 1);
        assert_eq!(
            claim("runs k", "a", "run-8"),
            LaunchClaim::Started("run-1".into())
        );
        age("runs k", LAUNCH_KEY_KEPT_S);
        assert_eq!(claim("runs k", "a", "run-9"), LaunchClaim::New);
    }

    #[test]
    fn a_launch_whose_server_died_after_writing_its_run_gives_that_run_to_retries() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(&dir.path().join("r.sqlite")).unwrap();
        assert_eq!(
            registry.claim_launch("runs k", "a", "run-1").unwrap(),
            LaunchClaim::New
        );
        // The start wrote its run, then panicked (its guard lets the key go) or
        // the server died before settling the key.
        registry.start("run-1", &sample_request()).unwrap();
        registry.release_launch("runs k", "run-1").unwrap();
        assert_eq!(
            registry.claim_launch("runs k", "a", "run-2").unwrap(),
            LaunchClaim::Started("run-1".into())
        );
        // Long after, still that run, not a second one.
        registry
            .db
            .execute(
                "UPDATE launches SET created_at = created_at - ?1",
                params![LAUNCH_PENDING_KEPT_S + 1],
            )
            .unwrap();
        assert_eq!(
            registry.claim_launch("runs k", "a", "run-3").unwrap(),
            LaunchClaim::Started("run-1".into())
        );
        // A sweep's row counts as a run's does.
        assert_eq!(
            registry.claim_launch("sweeps k", "a", "sweep-1").unwrap(),
            LaunchClaim::New
        );
        registry
            .save_sweep(&SweepInfo {
                id: "sweep-1".into(),
                state: "running".into(),
                planned: 1,
                rows: Vec::new(),
                error: None,
                running: None,
            })
            .unwrap();
        assert_eq!(
            registry.claim_launch("sweeps k", "a", "sweep-2").unwrap(),
            LaunchClaim::Started("sweep-1".into())
        );
    }

    #[test]
    fn a_registry_from_before_aws_executions_is_migrated_and_keeps_its_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cosmicai.sqlite");
        {
            // The first schema: no aws_json column (nor a launch's planned id).
            let db = Connection::open(&path).unwrap();
            let first = SCHEMA
                .replace(",\n    aws_json TEXT,\n    coordinator_identity TEXT", "")
                .replace(",\n    planned_id TEXT", "");
            // Both columns cut (the schema's text has not drifted from these).
            assert!(!first.contains("aws_json") && !first.contains("planned_id"));
            db.execute_batch(&first).unwrap();
            db.execute(
                "INSERT INTO launches (key, body_sha256, created_at, id) VALUES ('runs k', 'a', ?1, 'old')",
                params![unix_now()],
            )
            .unwrap();
            db.execute(
                "INSERT INTO runs (id, created_at, status, world_size, batch_size, device, data_prefix, result_path, coordinator_pid, request_json)
                 VALUES ('old', 1, 'succeeded', 1, 1, 'cpu', '', 'results/old', 0, ?1)",
                params![r#"{"batch_size": 1, "world_size": 1, "result_path": "results/old"}"#],
            )
            .unwrap();
        }
        let registry = Registry::open(&path).unwrap();
        let old = registry.run("old").unwrap().unwrap();
        assert_eq!(
            (status_of(&registry, "old"), old.aws),
            (RunStatus::Succeeded, None)
        );
        // The launch key it kept still gives its run.
        assert_eq!(
            registry.claim_launch("runs k", "a", "run-2").unwrap(),
            LaunchClaim::Started("old".into())
        );
        let aws = AwsExecution {
            config: crate::aws::AwsConfig {
                bucket: "b".into(),
                state_machine_arn: "arn:aws:states:us-east-1:1:stateMachine:s".into(),
                region: None,
                endpoint: None,
            },
            execution_arn: "arn:aws:states:us-east-1:1:execution:s:old".into(),
        };
        registry.set_aws("old", &aws).unwrap();
        registry.interrupt("old", "lost contact").unwrap();
        assert_eq!(
            registry.interrupted_on_aws(0).unwrap(),
            vec!["old".to_string()]
        );
        assert_eq!(registry.run("old").unwrap().unwrap().aws, Some(aws));
        // Opening it again migrates nothing twice.
        drop(registry);
        assert_eq!(Registry::open(&path).unwrap().list().unwrap().len(), 1);
    }

    #[test]
    fn a_run_whose_pid_was_recycled_is_interrupted_and_a_live_one_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cosmicai.sqlite");
        let registry = Registry::open(&path).unwrap();
        let request = sample_request();
        registry.start("live", &request).unwrap();
        registry.start("recycled", &request).unwrap();
        // Same pid (ours, alive), but another process: as after a container
        // restart, where the new server is PID 1 again.
        registry
            .db
            .execute(
                "UPDATE runs SET coordinator_identity = 'another-boot/1' WHERE id = 'recycled'",
                [],
            )
            .unwrap();
        drop(registry);
        let registry = Registry::open(&path).unwrap();
        assert_eq!(status_of(&registry, "live"), RunStatus::Running);
        assert_eq!(status_of(&registry, "recycled"), RunStatus::Interrupted);
        let mode: String = registry
            .db
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn a_run_whose_coordinator_died_after_its_summary_is_closed_from_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cosmicai.sqlite");
        let registry = Registry::open(&path).unwrap();
        let request = sample_request();
        for id in ["ended", "cut", "other", "unclosed", "killed"] {
            registry.start(id, &request).unwrap();
        }
        registry
            .db
            .execute(
                "UPDATE runs SET coordinator_identity = 'another-boot/1', result_path = 'results/' || id",
                [],
            )
            .unwrap();
        // Its row could not be closed when it ended (a full disk): interrupted
        // as such. Another interrupted otherwise keeps its state.
        registry
            .interrupt("unclosed", &format!("{UNCLOSED}: disk full"))
            .unwrap();
        registry
            .interrupt("killed", "its coordinator stopped")
            .unwrap();
        drop(registry);
        let summary = |id: &str| {
            let cost = cosmicai_shared::run::Cost::default();
            serde_json::json!({
                "run_id": id, "status": "succeeded", "ranks": 1, "failed_ranks": [],
                "objects": 7, "duration_s": 1.0, "samples_per_s": 7.0, "cost_usd": 0.5,
                "result_path": format!("results/{id}"), "device": "cpu", "batch_size": 1,
                "memory_mb": 2048, "files": 1, "cost": cost, "metrics": null, "per_rank": [],
            })
        };
        let write = |id: &str, body: &serde_json::Value| {
            let folder = dir.path().join("results").join(id);
            std::fs::create_dir_all(&folder).unwrap();
            std::fs::write(folder.join("summary.json"), body.to_string()).unwrap();
        };
        // Its summary written, then a power cut before the row was closed.
        write("ended", &summary("ended"));
        write("unclosed", &summary("unclosed"));
        write("killed", &summary("killed"));
        // Cut before any summary; and a summary another run left in the path.
        write("other", &summary("someone-else"));
        let registry = Registry::open(&path).unwrap();
        for id in ["ended", "unclosed"] {
            let ended = registry.info(id).unwrap().unwrap();
            assert_eq!(
                (ended.status, ended.objects),
                (RunStatus::Succeeded, Some(7)),
                "{id}"
            );
        }
        for id in ["cut", "other", "killed"] {
            assert_eq!(status_of(&registry, id), RunStatus::Interrupted, "{id}");
        }
    }

    #[test]
    fn runs_come_in_pages_and_one_run_by_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(&dir.path().join("cosmicai.sqlite")).unwrap();
        let request = sample_request();
        for i in 0..5 {
            registry.start(&format!("run-{i}"), &request).unwrap();
        }
        let ids = |runs: Vec<RunInfo>| runs.into_iter().map(|r| r.id).collect::<Vec<_>>();
        // Same second: the id breaks the tie, newest (highest) first.
        assert_eq!(ids(registry.page(2, None).unwrap()), ["run-4", "run-3"]);
        assert_eq!(
            ids(registry.page(2, Some("run-3")).unwrap()),
            ["run-2", "run-1"]
        );
        assert_eq!(ids(registry.page(2, Some("run-1")).unwrap()), ["run-0"]);
        assert_eq!(registry.info("run-2").unwrap().unwrap().id, "run-2");
        assert!(registry.info("run-9").unwrap().is_none());
        let unknown = registry.page(2, Some("run-9")).unwrap_err();
        assert!(unknown.is::<UnknownRun>(), "{unknown}");
    }

    #[test]
    fn sweeps_are_kept_and_one_left_running_by_a_gone_server_is_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cosmicai.sqlite");
        let registry = Registry::open(&path).unwrap();
        let sweep = |id: &str, state: &str| SweepInfo {
            id: id.into(),
            state: state.into(),
            planned: 4,
            rows: Vec::new(),
            error: None,
            running: Some("run-a".into()),
        };
        registry.save_sweep(&sweep("sweep-1", "running")).unwrap();
        registry.save_sweep(&sweep("sweep-1", "finished")).unwrap();
        registry.save_sweep(&sweep("sweep-2", "running")).unwrap();
        registry.save_sweep(&sweep("sweep-3", "running")).unwrap();
        // sweep-3's server is gone (another boot's process).
        registry
            .db
            .execute(
                "UPDATE sweeps SET coordinator_identity = 'another-boot/1' WHERE id = 'sweep-3'",
                [],
            )
            .unwrap();
        drop(registry);
        let registry = Registry::open(&path).unwrap();
        let states: Vec<(String, String)> = registry
            .sweeps(10)
            .unwrap()
            .into_iter()
            .map(|s| (s.id, s.state))
            .collect();
        assert_eq!(
            states,
            [
                ("sweep-3".to_string(), "interrupted".to_string()),
                ("sweep-2".into(), "running".into()),
                ("sweep-1".into(), "finished".into()),
            ]
        );
        let gone = registry.sweep("sweep-3").unwrap().unwrap();
        assert_eq!(gone.running, None);
        assert!(gone.error.unwrap().contains("server stopped"));
        assert_eq!(gone.planned, 4);
        assert!(registry.sweep("sweep-9").unwrap().is_none());
        assert_eq!(registry.sweeps(1).unwrap().len(), 1);
    }
}
