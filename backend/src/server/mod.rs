//! `cosmicai serve`: the HTTP API under `/api` and the explorer at `/`.
//!
//! Read top-down: [`prepare`] builds the served datasets on first start,
//! [`objects`] indexes them, [`models`] loads the models runs may name, [`runs`]
//! starts and follows pipeline runs and [`sweeps`] chains them over world sizes;
//! [`selections`] turns a sky selection into a dataset, [`archive`] fetches an
//! object's real image on demand, and [`api`] holds the handlers, one file per
//! resource. This file wires them into a router with its limits (body size,
//! timeouts, [`guard`]'s slots, [`turns`] at heavy work) and its security (loopback by default, a bearer
//! token for anything that starts or stops work on other addresses); [`error`]
//! is how every handler fails.

mod api;
mod archive;
mod client;
mod error;
mod explorer;
mod guard;
mod launches;
mod listen;
mod models;
mod objects;
mod prepare;
mod runs;
mod selections;
mod sweeps;
mod turns;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use clap::Args;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use utoipa::OpenApi;

#[derive(Args)]
#[command(after_help = "Examples:\n  \
    cosmicai serve                                  # http://127.0.0.1:8080, data in ./data/serve\n  \
    cosmicai serve --addr 0.0.0.0:8080 --data-dir /srv/cosmicai\n  \
    cosmicai serve --model astromae:Mixed_Inception_z_VITAE_Base_Img_Full_New_Full.pt\n\n\
    On first start the data directory is filled from the bundled real data: the two\n\
    catalogs (catalog/), real cutouts of the bundled SDSS field (real/) and 3,000\n\
    synthetic cutouts (synthetic/). Off loopback, starting or cancelling runs needs\n\
    `Authorization: Bearer TOKEN` (COSMICAI_TOKEN, or a token printed at start).")]
pub struct ServeArgs {
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    #[arg(long, default_value = "data/serve")]
    pub data_dir: PathBuf,
    /// The bundled data (catalogs, SDSS field) used to fill a new data directory.
    #[arg(long, default_value = "assets")]
    pub assets: PathBuf,
    /// The built explorer (Trunk's output). It may land after the server starts
    /// (`make serve` builds it beside the server): it is served from then on.
    #[arg(long, default_value = "dist")]
    pub frontend: PathBuf,
    /// The log of an explorer build in progress (`make serve` passes it): until the
    /// explorer lands, `/` shows its latest lines.
    #[arg(long, value_name = "FILE", hide = true)]
    pub frontend_log: Option<PathBuf>,
    /// More models to offer (repeatable): astromae:CHECKPOINT (a CAI .pt or its
    /// safetensors) or photoz:WEIGHTS. Files in DATA_DIR/models/ are offered too.
    #[arg(long = "model")]
    pub models: Vec<String>,
    /// Require this bearer token (at least 16 characters) for starting, cancelling
    /// and estimating runs, on loopback too (for a server behind a reverse proxy).
    /// Off loopback a token is always required: this one, COSMICAI_TOKEN, or a
    /// random one printed at start.
    #[arg(long)]
    pub token: Option<String>,
    /// A host name the server answers to besides its own address (repeatable): the
    /// name a reverse proxy forwards. Requests for other names get 421.
    #[arg(long = "allowed-host", value_name = "NAME")]
    pub allowed_hosts: Vec<String>,
    /// The address of a reverse proxy in front of this server (repeatable). Its
    /// requests are counted against the client its X-Forwarded-For names last,
    /// not against the proxy, for each client's share of the connections,
    /// streams and replies; the proxy itself holds no share. Without it, every
    /// user behind a proxy shares one client's share.
    #[arg(long = "trusted-proxy", value_name = "IP")]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Runs and sweeps admitted at once; more are refused with 429 and Retry-After.
    #[arg(long, default_value_t = 4)]
    pub max_runs: usize,
    /// Event streams (live run views) open at once; more are refused with 429.
    #[arg(long, default_value_t = 256)]
    pub max_streams: usize,
    /// Memory (MB) that local runs and sweeps may hold together, each its ranks at
    /// once × memory_mb (default: the host's memory). A run finding less free runs
    /// fewer ranks at once; one finding less than one rank's is refused with 429.
    #[arg(long, value_name = "MB")]
    pub memory_budget_mb: Option<u64>,
    /// Seconds an event stream may go without a run event before it is closed;
    /// browsers reconnect and resume where they were (Last-Event-ID).
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub stream_idle_s: u64,
    /// Fetch real cutouts of catalog objects that have none from the SDSS archive,
    /// when their Object page asks: URL (a mirror), or $COSMICAI_SDSS_ARCHIVE, or
    /// the SDSS Science Archive Server. Without it nothing leaves the machine.
    #[arg(long, num_args = 0..=1, default_missing_value = "", value_name = "URL")]
    pub archive: Option<String>,
    /// Most bytes the frames fetched for --archive may hold in DATA/frames; the
    /// least recently used go first.
    #[arg(long, default_value = "20GB", value_parser = cosmicai_engine::size::parse_size)]
    pub archive_budget: u64,
    /// Catalogs whose rows name each object's SDSS field, for --archive (default:
    /// the bundled catalogs the data directory was filled from).
    #[arg(long = "archive-catalog", value_name = "CSV")]
    pub archive_catalogs: Vec<PathBuf>,
    /// SDSS SkyServer's JPEG cutout service, for the explorer's optional colour
    /// thumbnails (off until a user turns them on; the browser loads them).
    #[arg(long, default_value = SKYSERVER_JPEG, value_name = "URL")]
    pub skyserver: String,
}

/// SkyServer's DR17 JPEG cutouts (colour composites for display, not science data).
pub const SKYSERVER_JPEG: &str = "https://skyserver.sdss.org/dr17/SkyServerWS/ImgCutout/getjpeg";

pub struct AppState {
    data_dir: PathBuf,
    index: objects::ObjectIndex,
    models: models::ServedModels,
    runs: runs::Runs,
    sweeps: sweeps::Sweeps,
    access: guard::Access,
    /// Runs and sweeps running at once.
    run_slots: Arc<guard::Slots>,
    /// Event streams open at once.
    stream_slots: Arc<guard::Slots>,
    /// How long a stream may go without a run event.
    stream_idle: Duration,
    /// Memory held by the local runs and sweeps running now.
    memory: Arc<guard::MemoryBudget>,
    /// Real cutouts from the SDSS archive, with `--archive`.
    archive: Option<Arc<archive::Archive>>,
    /// SkyServer's JPEG cutout service (`--skyserver`).
    skyserver: String,
    /// Cutout reads, PNG encodings and inferences at once (one per core): more
    /// wait their turn without holding a thread, so they cannot starve the
    /// rest, each client in rotation. See [`heavy_turn`].
    heavy: Arc<turns::Turns>,
    /// `/api/cutouts` and `/api/runs/{id}/results` replies being sent: each
    /// holds its body (at most `api::MAX_CUTOUT_BYTES`, or a run's results)
    /// until the client has taken it, however slowly, or its deadline.
    cutout_replies: Arc<guard::Slots>,
    /// The image models' predictions of objects already asked for (at most
    /// `api::KEPT_PREDICTIONS` objects): a page viewed again costs no inference.
    image_predictions:
        std::sync::Mutex<std::collections::HashMap<i64, Vec<cosmicai_shared::api::Prediction>>>,
    /// Finished runs' results as JSON (at most `api::KEPT_RESULTS`, newest
    /// last): their scatter samples every rank's predictions, read and written
    /// once, not at each look (a summary holds a measure per rank).
    results: std::sync::Mutex<std::collections::VecDeque<(String, Arc<[u8]>)>>,
    model_hash: String,
    model_card: serde_json::Value,
    /// Changes when the served data is rebuilt, so image ETags change with it.
    data_version: u64,
    rates: crate::coordinator::Rates,
    /// The run registry, one connection for every handler (runs write through
    /// their own; WAL lets readers and writers go together).
    registry: std::sync::Mutex<crate::registry::Registry>,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "CosmicAI API", description = "Galaxy redshifts from SDSS data: objects, images, the model, pipeline runs."),
    paths(api::health, api::list_objects, api::object_detail, api::object_image, api::cutouts, api::model,
        api::model_weights, api::list_models, api::list_runs, api::create_run, api::run_detail, api::cancel_run, api::resume_run, api::run_events,
        api::run_results, api::estimate, api::create_sweep, api::list_sweeps, api::sweep_detail, api::cancel_sweep, api::fetch_object, api::settings, api::sky, api::create_selection),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document of the API.
pub fn openapi_json() -> String {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    // utoipa bounds a field, not a list's items: each of a sweep's world sizes.
    if let Some(items) =
        doc.pointer_mut("/components/schemas/SweepLaunch/properties/world_sizes/items")
    {
        items["minimum"] = 1.into();
        items["maximum"] = sweeps::MAX_SWEEP_WORLD_SIZE.into();
    }
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// A turn at heavy blocking work for `client`, fairly among the clients
/// waiting. It moves into the blocking task: a request that times out (or
/// whose client goes) while the work runs must not free the turn before the
/// work ends.
async fn heavy_turn(state: &AppState, client: Option<client::Client>) -> turns::Turn {
    state.heavy.take(client).await
}

pub use explorer::Explorer;

pub fn router(state: Arc<AppState>, explorer: Explorer) -> Router {
    let guarded = Router::new()
        .route("/api/runs", post(api::create_run))
        .route("/api/runs/{id}/cancel", post(api::cancel_run))
        .route("/api/runs/{id}/resume", post(api::resume_run))
        .route("/api/sweeps", post(api::create_sweep))
        .route("/api/sweeps/{id}/cancel", post(api::cancel_sweep))
        .route("/api/estimate", post(api::estimate))
        .route("/api/objects/{id}/fetch", post(api::fetch_object))
        // A sky selection's ids: up to `selections::MAX_IDS` of them.
        .route(
            "/api/selections",
            post(api::create_selection).layer(DefaultBodyLimit::max(4 << 20)),
        )
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            guard::require_token,
        ));
    let timed = Router::new()
        .route("/api/health", get(api::health))
        .route("/api/objects", get(api::list_objects))
        .route("/api/objects/{id}", get(api::object_detail))
        .route("/api/objects/{id}/image.png", get(api::object_image))
        .route("/api/cutouts", get(api::cutouts))
        .route("/api/model", get(api::model))
        .route("/api/model/weights", get(api::model_weights))
        .route("/api/models", get(api::list_models))
        .route("/api/settings", get(api::settings))
        .route("/api/sky", get(api::sky))
        .route("/api/runs", get(api::list_runs))
        .route("/api/runs/{id}", get(api::run_detail))
        .route("/api/runs/{id}/results", get(api::run_results))
        .route("/api/sweeps", get(api::list_sweeps))
        .route("/api/sweeps/{id}", get(api::sweep_detail))
        .route(
            "/api/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], openapi_json()) }),
        )
        .merge(guarded)
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            Duration::from_secs(30),
        ));
    // The event stream lives as long as its run: no timeout there.
    let streams = Router::new().route("/api/runs/{id}/events", get(api::run_events));
    let app = Router::new()
        .merge(timed)
        .merge(streams)
        .route("/api/{*rest}", get(api_not_found).post(api_not_found));
    // The explorer's app module is about 2.5 MB (0.64 MB gzipped), its inference
    // worker's 17.3 MB (2.1 MB gzipped; README): browsers that take gzip get the
    // `.gz` beside each file (made at start and when a build lands, see
    // `precompress`). Paths that are no file get index.html (the explorer routes by
    // hash), or the "explorer building" page while there is none yet.
    let page: axum::routing::MethodRouter =
        get(explorer::explorer_page).with_state(Arc::new(explorer.clone()));
    let site = tower_http::services::ServeDir::new(&explorer.dir)
        .precompressed_gzip()
        .fallback(page);
    let app = app.fallback_service(site);
    app.layer(middleware::from_fn(error::json_errors))
        .layer(middleware::from_fn(explorer::explorer_caching))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            guard::check_host,
        ))
        .layer(DefaultBodyLimit::max(64 * 1024))
        .with_state(state)
}

async fn api_not_found(request: Request) -> Response {
    error::Error::not_found(format!("{}: no such endpoint", request.uri().path())).into_response()
}

pub fn run(args: ServeArgs) -> Result<()> {
    // It goes into the explorer's <img> sources: a web address, nothing else.
    let skyserver = args.skyserver.trim();
    if !(skyserver.starts_with("https://") || skyserver.starts_with("http://"))
        || skyserver.contains(['"', '<', '>', ' ', '?', '#'])
    {
        anyhow::bail!(
            "--skyserver {skyserver:?}: give the service's http(s) address, without a query"
        );
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    prepare::prepare(&args.data_dir, &args.assets)?;
    // What killed writers left (a dataset built aside, a cutout half written)
    // is invisible to every listing, and would fill the disk unseen. Six hours
    // leaves any writer still at work in another process alone.
    let data_dir = args.data_dir.clone();
    std::thread::spawn(move || {
        let stale = std::time::Duration::from_secs(6 * 3600);
        let removed = cosmicai_engine::store::sweep_stale_temporaries(&data_dir, stale);
        if removed > 0 {
            crate::say!(
                "removed {removed} temporary files and folders that stopped writers left in {}",
                data_dir.display()
            );
        }
    });
    explorer::precompress(&args.frontend);
    explorer::watch_explorer(args.frontend.clone());
    let index = objects::ObjectIndex::load(&args.data_dir)?;
    let models = models::ServedModels::load(&args.models, &args.data_dir)?;
    // A served model's folder may be anywhere on the host (`--model
    // astromae:/srv/m.pt`): hidden from callers as the data directory is.
    let cwd = std::env::current_dir().unwrap_or_default();
    let model_folders: Vec<PathBuf> = args
        .models
        .iter()
        .filter_map(|m| cosmicai_shared::model::ModelSpec::parse(m).ok())
        .filter_map(|spec| {
            let file = Path::new(spec.weights()?);
            Some(file.parent()?.to_path_buf())
        })
        .filter(|folder| !folder.as_os_str().is_empty())
        .collect();
    let mut hidden: Vec<&Path> = vec![&args.data_dir, &args.assets, &cwd];
    hidden.extend(model_folders.iter().map(PathBuf::as_path));
    error::hide_paths(&hidden);
    let given = args
        .token
        .clone()
        .or_else(|| std::env::var("COSMICAI_TOKEN").ok())
        .filter(|t| !t.trim().is_empty());
    let token = match given.as_deref() {
        Some(t) => Some(guard::checked_token(t, "--token (or COSMICAI_TOKEN)")?),
        None if args.addr.ip().is_loopback() => None,
        None => Some(guard::random_token()?),
    };
    if args.max_runs == 0 || args.max_streams == 0 || args.stream_idle_s == 0 {
        anyhow::bail!("--max-runs, --max-streams and --stream-idle-s must be at least 1");
    }
    let memory_budget_mb = match args.memory_budget_mb {
        Some(0) => anyhow::bail!("--memory-budget-mb must be at least 1"),
        Some(mb) => mb,
        // Where the host's memory is unknown, the cores alone bound runs.
        None => match cosmicai_engine::system::memory_mb() as u64 {
            0 => u64::MAX,
            mb => mb,
        },
    };
    let weights_sha256 = crate::models::sha256_hex(crate::models::SHIPPED_PHOTOZ);
    let model_card = crate::models::shipped_photoz_card(&weights_sha256).unwrap_or_else(|e| {
        crate::say!("warning: {e}; the explorer shows no model card");
        serde_json::Value::Null
    });
    let data_version = std::fs::metadata(args.data_dir.join("synthetic"))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let objects = index.objects.len();
    let archive = match &args.archive {
        None => None,
        Some(url) => {
            let url =
                crate::commands::fetch::archive_url(Some(url.as_str()).filter(|u| !u.is_empty()));
            let catalogs = if args.archive_catalogs.is_empty() {
                prepare::bundled_catalogs(&args.assets)
            } else {
                args.archive_catalogs.clone()
            };
            let archive =
                archive::Archive::start(&url, args.archive_budget, &catalogs, &args.data_dir)?;
            crate::say!(
                "archive: real cutouts on demand for {} catalog objects, from {url}",
                archive.objects()
            );
            Some(archive)
        }
    };
    let state = Arc::new(AppState {
        data_dir: args.data_dir.clone(),
        index,
        models,
        runs: runs::Runs::new(crate::aws::AwsConfig::from_env()),
        sweeps: sweeps::Sweeps::default(),
        access: guard::Access::new(token.clone(), args.addr, &args.allowed_hosts),
        run_slots: guard::Slots::new(args.max_runs),
        // A quarter each (at least 4): a class behind one address watching a
        // run fits, and one caller cannot take every stream.
        stream_slots: guard::Slots::shared(args.max_streams, (args.max_streams / 4).max(4)),
        stream_idle: Duration::from_secs(args.stream_idle_s),
        memory: guard::MemoryBudget::new(memory_budget_mb),
        archive,
        skyserver: args.skyserver.clone(),
        heavy: turns::Turns::new(std::thread::available_parallelism().map_or(1, |n| n.get())),
        cutout_replies: guard::Slots::shared(api::CUTOUT_REPLIES, api::CUTOUT_REPLIES_PER_CLIENT),
        image_predictions: Default::default(),
        results: Default::default(),
        // As the model card names the weights (its first 16 hex digits).
        model_hash: weights_sha256[..16].to_string(),
        model_card,
        data_version,
        rates: Default::default(),
        registry: std::sync::Mutex::new(crate::registry::Registry::open(&crate::registry::path(
            &args.data_dir,
        ))?),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let served = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .with_context(|| format!("binding {}", args.addr))?;
        let addr = listener.local_addr()?;
        // The first line is for scripts and tests: where to connect.
        crate::output::emit(&format!("listening on http://{addr}\n"))?;
        crate::say!(
            "serving {objects} objects from {}; explorer from {}",
            args.data_dir.display(),
            args.frontend.display()
        );
        if let Some(t) = &token {
            if given.is_none() {
                crate::say!("token for starting, cancelling and estimating runs: {t}");
            } else {
                crate::say!("starting, cancelling and estimating runs needs the given token");
            }
        }
        match crate::aws::AwsConfig::from_env() {
            Some(aws) => {
                crate::say!(
                    "target aws: s3://{} and {} (credentials from the AWS provider chain)",
                    aws.bucket,
                    aws.state_machine_arn
                );
                // AWS runs whose follower stopped (this server, before a restart)
                // are followed again, so their rows and results complete.
                match crate::coordinator::reattach_interrupted(&args.data_dir) {
                    Ok(0) => {}
                    Ok(n) => crate::say!("following {n} interrupted AWS runs again"),
                    Err(e) => crate::say!("interrupted AWS runs: {e:#}"),
                }
            }
            None => crate::say!(
                "target aws: off (set COSMICAI_AWS_BUCKET and COSMICAI_STATE_MACHINE_ARN)"
            ),
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
        listen::serve(
            listener,
            args.trusted_proxies
                .iter()
                .map(|ip| ip.to_canonical())
                .collect(),
            router(
                state,
                Explorer {
                    dir: args.frontend.clone(),
                    build_log: args.frontend_log.clone(),
                },
            ),
            shutdown_signal(),
        )
        .await;
        Ok(())
    });
    // Blocking work still running (a large run's results read for a client
    // gone, a launch planning) gets as long as the open requests had; dropping
    // the runtime would wait for it without end, with the second-signal
    // watchdog already gone with the runtime's tasks.
    runtime.shutdown_timeout(Duration::from_secs(10));
    served
}

/// Resolves on the first Ctrl-C or SIGTERM (what `docker stop` and systemd
/// send), so the server stops taking requests and ends its open ones. Open
/// event streams end only with their run or their 10-minute lifetime, so a
/// second signal, or 10 s, ends the process; local workers die with it (they hold a parent-death
/// signal), and the registry marks their runs interrupted at the next start.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    crate::say!("stopping: finishing open requests (again to stop now)");
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
            _ = tokio::time::sleep(std::time::Duration::from_secs(10)) => {}
        }
        std::process::exit(130);
    });
}
