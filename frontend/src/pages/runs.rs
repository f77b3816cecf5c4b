//! Runs: the launcher (with an estimate first), sweeps, and the history. One
//! run's monitor and results are in [`super::run`].

use super::ErrorMessage;
use cosmicai_shared::api::{
    Created, ModelEntry, RunInfo, RunLaunch, Selection, SelectionRequest, SweepInfo, SweepLaunch,
    Target,
};
use cosmicai_shared::run::{Device, Estimate, Precision};
use leptos::prelude::*;

/// The launcher's fields, as typed; runs and sweeps read them.
#[derive(Clone, Copy)]
struct LaunchForm {
    data_prefix: RwSignal<String>,
    file_limit: RwSignal<String>,
    world_size: RwSignal<String>,
    batch_size: RwSignal<String>,
    memory: RwSignal<String>,
    device: RwSignal<String>,
    precision: RwSignal<String>,
    target: RwSignal<String>,
    model: RwSignal<String>,
    /// Target AWS: partitions already in S3 (a folder of the deployment's
    /// bucket, or `s3://BUCKET/FOLDER` in its InputBucket).
    s3_data: RwSignal<String>,
}

fn whole_number(name: &str, v: &str) -> Result<usize, String> {
    v.trim()
        .parse::<usize>()
        .map_err(|_| format!("{name}: {v:?} is not a whole number"))
}

impl LaunchForm {
    fn new() -> Self {
        LaunchForm {
            // `#/runs?data=selections/NAME` (a selection's "launch a run on these").
            data_prefix: RwSignal::new(
                crate::hash_param("data").unwrap_or_else(|| "catalog".to_string()),
            ),
            file_limit: RwSignal::new(String::new()),
            world_size: RwSignal::new("2".to_string()),
            batch_size: RwSignal::new("512".to_string()),
            memory: RwSignal::new("2048".to_string()),
            device: RwSignal::new("cpu".to_string()),
            precision: RwSignal::new("fp32".to_string()),
            target: RwSignal::new("local".to_string()),
            model: RwSignal::new("photoz".to_string()),
            s3_data: RwSignal::new(String::new()),
        }
    }

    /// The file limit typed, if any (blank: every file).
    fn file_limit(&self) -> Result<Option<usize>, String> {
        let file_limit = self.file_limit.get();
        if file_limit.trim().is_empty() {
            return Ok(None);
        }
        whole_number("file limit", &file_limit).map(Some)
    }

    /// The memory typed, in MB (a number past u32 is no memory size either).
    fn memory_mb(&self) -> Result<u32, String> {
        let memory = self.memory.get();
        u32::try_from(whole_number("memory", &memory)?)
            .map_err(|_| format!("memory: {memory:?} MB is more than any worker has"))
    }

    /// The run the fields describe, or the first field that is not a number.
    fn run(&self) -> Result<RunLaunch, String> {
        Ok(RunLaunch {
            target: if self.target.get() == "aws" {
                Target::Aws
            } else {
                Target::Local
            },
            data_prefix: Some(self.data_prefix.get()),
            file_limit: self.file_limit()?,
            world_size: whole_number("world size", &self.world_size.get())?,
            batch_size: whole_number("batch size", &self.batch_size.get())?,
            device: if self.device.get() == "cuda" {
                Device::Cuda
            } else {
                Device::Cpu
            },
            precision: match self.precision.get().as_str() {
                "bf16" => Precision::Bf16,
                "f16" => Precision::F16,
                _ => Precision::Fp32,
            },
            memory_mb: Some(self.memory_mb()?),
            retries: 0,
            model: Some(self.model.get()),
            timeout_s: None,
            s3_data: Some(self.s3_data.get().trim().to_string())
                .filter(|folder| self.target.get() == "aws" && !folder.is_empty()),
        })
    }

    /// A sweep over `sizes` (comma-separated) with the other fields.
    fn sweep(&self, sizes: &str, cuda: bool) -> Result<SweepLaunch, String> {
        // A sweep compares CPU and CUDA at one precision: fp32, which both run
        // for every model.
        if self.precision.get() != "fp32" {
            return Err(
                "sweeps compare devices in fp32, which both run for every model: set Precision to fp32".into(),
            );
        }
        let world_sizes = sizes
            .split(',')
            .map(|s| whole_number("world sizes", s))
            .collect::<Result<Vec<usize>, String>>()?;
        let mut devices = vec![Device::Cpu];
        if cuda {
            devices.push(Device::Cuda);
        }
        Ok(SweepLaunch {
            world_sizes,
            devices,
            batch_size: whole_number("batch size", &self.batch_size.get())?,
            data_prefix: Some(self.data_prefix.get()),
            // As a run's: a typo is named, never read as "every file".
            file_limit: self.file_limit()?,
            memory_mb: Some(self.memory_mb()?),
            model: Some(self.model.get()),
        })
    }
}

/// What the launcher says under its forms: a request on its way (the buttons wait
/// meanwhile, so a double click starts one run), an estimate, or an error.
#[derive(Clone)]
enum Message {
    Pending(&'static str),
    Done(String),
    Failed(String),
}

/// Posts `body` to `path` and opens the page of what it created (`#/runs/ID`).
fn create<B: serde::Serialize + 'static>(
    path: &'static str,
    body: Result<B, String>,
    page: &'static str,
    message: RwSignal<Option<Message>>,
) {
    if matches!(message.get_untracked(), Some(Message::Pending(_))) {
        return;
    }
    message.set(Some(Message::Pending("Starting…")));
    leptos::task::spawn_local(async move {
        match body {
            Err(e) => message.set(Some(Message::Failed(e))),
            Ok(body) => match crate::api::launch::<_, Created>(path, &body).await {
                Ok(c) => {
                    message.set(None);
                    crate::navigate(&format!("/{page}/{}", c.id));
                }
                Err(e) => message.set(Some(Message::Failed(e))),
            },
        }
    });
}

/// Writes the objects that pass `query` (the API's filters), or those of `ids`, as a
/// dataset on the server, then opens the launcher on it. The selection's pages
/// (sky map, plots) call this for "Launch a run on these".
pub fn launch_on_selection(
    query: Vec<String>,
    ids: Option<Vec<i64>>,
    status: RwSignal<Option<String>>,
) {
    const WRITING: &str = "Writing the selection as a dataset…";
    // A second click while the first is written sends nothing more.
    if status.get_untracked().as_deref() == Some(WRITING) {
        return;
    }
    status.set(Some(WRITING.into()));
    leptos::task::spawn_local(async move {
        let url = crate::route_with("/api/selections", &query);
        match crate::api::post::<_, Selection>(&url, &SelectionRequest { ids }).await {
            Ok(s) => {
                // Only from the page it was asked on: gone (the user went on
                // meanwhile), its status signal is too.
                if status.try_set(None).is_some() {
                    return;
                }
                crate::navigate(&crate::route_with(
                    "/runs",
                    &[
                        format!("data={}", s.data_prefix),
                        format!("objects={}", s.objects),
                    ],
                ));
            }
            Err(e) => status.set(Some(format!("Could not write the selection: {e}"))),
        }
    });
}

#[component]
pub fn RunsPage() -> impl IntoView {
    let form = LaunchForm::new();
    let message = RwSignal::new(None::<Message>);
    let selected = crate::hash_param("objects")
        .filter(|_| form.data_prefix.get_untracked().starts_with("selections/"));
    view! {
        <h2>"Launch a run"</h2>
        {selected.map(|n| view! {
            <p class="run-selection">{format!("Data: your selection of {n} objects ({}), magnitudes only, so PhotoZ models run on it.", form.data_prefix.get_untracked())}</p>
        })}
        <Launcher form=form message=message />
        <SweepForm form=form message=message />
        {move || message.get().map(|m| match m {
            Message::Pending(text) => view! { <p class="loading" role="status">{text}</p> }.into_any(),
            Message::Done(text) => view! { <p class="estimate-result">{text}</p> }.into_any(),
            Message::Failed(e) => view! { <ErrorMessage message=e /> }.into_any(),
        })}
        <h2>"History"</h2>
        <SweepHistory />
        <RunHistory />
    }
}

/// The sweeps the server holds (since it started), newest first; none, nothing.
#[component]
fn SweepHistory() -> impl IntoView {
    let sweeps =
        LocalResource::new(|| async { crate::api::get::<Vec<SweepInfo>>("/api/sweeps").await });
    move || match sweeps.get() {
        Some(Ok(list)) if !list.is_empty() => view! {
            <h3>"Sweeps"</h3>
            <table class="sweeps">
                <tr><th>"sweep"</th><th>"state"</th><th>"runs"</th></tr>
                {list.into_iter().map(|s| view! {
                    <tr data-state=s.state.clone()>
                        <td><a href=format!("#/sweeps/{}", s.id)>{s.id.clone()}</a></td>
                        <td>{s.state.clone()}</td>
                        <td>{format!("{} of {}", s.rows.len(), s.planned)}</td>
                    </tr>
                }).collect_view()}
            </table>
        }
        .into_any(),
        Some(Err(e)) => view! { <ErrorMessage message=e /> }.into_any(),
        _ => ().into_any(),
    }
}

#[component]
fn Launcher(form: LaunchForm, message: RwSignal<Option<Message>>) -> impl IntoView {
    let estimate = move |_| {
        let body = form.run();
        if matches!(message.get_untracked(), Some(Message::Pending(_))) {
            return;
        }
        message.set(Some(Message::Pending("Estimating…")));
        leptos::task::spawn_local(async move {
            let result = match body {
                Err(e) => Err(e),
                Ok(body) => crate::api::post::<_, Estimate>("/api/estimate", &body).await.map(|e| {
                    // Timed at this server's speed and cores, whatever the
                    // target: an AWS stack runs its ranks many more at a time.
                    format!(
                        "Estimate: {} objects over {} ranks, about {:.2} s run on this server ({} at a time), and ${:.6} at AWS prices{}.",
                        e.objects,
                        e.ranks,
                        e.duration_s,
                        e.concurrency,
                        e.cost_usd,
                        e.cost
                            .lambda_architecture
                            .as_ref()
                            .map_or(String::new(), |a| format!(" (Lambda on {a})"))
                    )
                }),
            };
            message.set(Some(match result {
                Ok(text) => Message::Done(text),
                Err(e) => Message::Failed(e),
            }));
        });
    };
    let start = move |_| create("/api/runs", form.run(), "runs", message);
    let waiting = move || matches!(message.get(), Some(Message::Pending(_)));
    let field = |label: &'static str, name: &'static str, signal: RwSignal<String>| {
        view! {
            <label>{label}" "<input name=name prop:value=move || signal.get() on:input=move |ev| signal.set(event_target_value(&ev)) /></label>
        }
    };
    let (device, precision, target, s3_data) =
        (form.device, form.precision, form.target, form.s3_data);
    let in_bucket = move || target.get() == "aws" && !s3_data.get().trim().is_empty();
    view! {
        <form class="launcher" on:submit=|ev| ev.prevent_default()>
            {field("Data folder", "data_prefix", form.data_prefix)}
            {field("File limit", "file_limit", form.file_limit)}
            {field("World size", "world_size", form.world_size)}
            {field("Batch size", "batch_size", form.batch_size)}
            {field("Memory (MB)", "memory_mb", form.memory)}
            <ModelSelect model=form.model />
            <label>"Device "<select on:change=move |ev| device.set(event_target_value(&ev))><option value="cpu">"CPU"</option><option value="cuda">"CUDA"</option></select></label>
            <label title="bf16 runs on CUDA, and on the CPU for AstroMAE; f16 on CUDA only">"Precision "<select on:change=move |ev| precision.set(event_target_value(&ev))><option value="fp32">"fp32"</option><option value="bf16">"bf16 (CUDA, or AstroMAE on CPU)"</option><option value="f16">"f16 (CUDA)"</option></select></label>
            <label>"Target "<select name="target" on:change=move |ev| target.set(event_target_value(&ev))><option value="local">"this machine"</option><option value="aws">"AWS"</option></select></label>
            {move || (target.get() == "aws").then(|| view! {
                <label title="Partitions already in S3 (ours, or CAI's .pt), read where they are: a FOLDER of the deployment's bucket, or s3://BUCKET/FOLDER for your own data bucket (the one the deployment names as its InputBucket). Nothing is uploaded, and the data folder above is not read. Empty: the data folder goes up first.">
                    "Data in S3 "
                    <input name="s3_data" placeholder="FOLDER or s3://BUCKET/FOLDER (optional)" prop:value=move || s3_data.get() on:input=move |ev| s3_data.set(event_target_value(&ev)) />
                </label>
            })}
            <TokenField />
            // An estimate is made from the data here, not from the bucket's.
            <button type="button" class="estimate" on:click=estimate
                title=move || in_bucket().then_some("An estimate is made from the data folder here; empty 'Data in S3' to estimate")
                prop:disabled=move || waiting() || in_bucket()>"Estimate"</button>
            <button type="button" class="launch" on:click=start prop:disabled=waiting>"Launch"</button>
        </form>
    }
}

/// The server's token, for servers that require one (off loopback, or started
/// with `--token`); kept in this browser and sent with every launch and cancel.
#[component]
fn TokenField() -> impl IntoView {
    let token = RwSignal::new(crate::api::token().unwrap_or_default());
    view! {
        <label title="Printed by cosmicai serve at start (or its COSMICAI_TOKEN). Needed when the server is not on this machine.">
            "Server token "
            <input name="token" type="password" autocomplete="off" placeholder="if the server needs one"
                prop:value=move || token.get()
                on:input=move |ev| {
                    let value = event_target_value(&ev);
                    crate::api::set_token(&value);
                    token.set(value);
                } />
        </label>
    }
}

/// The models the server offers (`GET /api/models`), those that read cutouts marked.
#[component]
fn ModelSelect(model: RwSignal<String>) -> impl IntoView {
    let models =
        LocalResource::new(|| async { crate::api::get::<Vec<ModelEntry>>("/api/models").await });
    view! {
        <label>"Model "<select name="model" on:change=move |ev| model.set(event_target_value(&ev))>
            {move || {
                let offered: Vec<(String, bool)> = match models.get() {
                    Some(Ok(list)) => list.into_iter().map(|m| (m.name, m.reads_images)).collect(),
                    _ => vec![("photoz".to_string(), false)],
                };
                offered.into_iter().map(|(name, images)| {
                    let label = format!("{name}{}", if images { " (reads cutouts: use a folder with images)" } else { "" });
                    let chosen = name == model.get_untracked();
                    view! { <option value=name selected=chosen>{label}</option> }
                }).collect_view()
            }}
        </select></label>
    }
}

#[component]
fn SweepForm(form: LaunchForm, message: RwSignal<Option<Message>>) -> impl IntoView {
    let sizes = RwSignal::new("1,2,4".to_string());
    let cuda = RwSignal::new(false);
    let sweep = move |_| {
        create(
            "/api/sweeps",
            form.sweep(&sizes.get(), cuda.get()),
            "sweeps",
            message,
        )
    };
    view! {
        <form class="launcher sweep" on:submit=|ev| ev.prevent_default()>
            <label>"Sweep world sizes "<input name="sweep_sizes" prop:value=move || sizes.get() on:input=move |ev| sizes.set(event_target_value(&ev)) /></label>
            <label><input type="checkbox" on:change=move |ev| cuda.set(event_target_checked(&ev)) />" also on CUDA"</label>
            <button type="button" class="sweep" on:click=sweep prop:disabled=move || matches!(message.get(), Some(Message::Pending(_)))>"Run sweep"</button>
            <span class="note">"(uses the data folder, batch size, file limit and memory above)"</span>
        </form>
    }
}

/// Every run of the registry, newest first.
#[component]
fn RunHistory() -> impl IntoView {
    let history =
        LocalResource::new(|| async { crate::api::get::<Vec<RunInfo>>("/api/runs").await });
    move || {
        match history.get() {
        None => view! { <p class="loading">"Loading…"</p> }.into_any(),
        Some(Err(e)) => view! { <ErrorMessage message=e /> }.into_any(),
        Some(Ok(runs)) if runs.is_empty() => view! {
            <p class="empty">"No runs yet: launch one above, or run "<code>"cosmicai run"</code>" with this data folder."</p>
        }.into_any(),
        Some(Ok(runs)) => view! {
            <table class="history">
                <tr><th>"run"</th><th>"status"</th><th>"model"</th><th>"world size"</th><th>"device"</th><th>"objects"</th><th>"duration"</th><th>"cost"</th></tr>
                {runs.into_iter().map(|r| view! {
                    <tr>
                        <td><a href=format!("#/runs/{}", r.id)>{r.id.clone()}</a></td>
                        <td>{r.status.name()}</td><td class="model">{r.model.clone().unwrap_or_else(|| "—".into())}{r.precision.clone().map(|p| format!(" {p}"))}</td><td>{r.world_size}</td><td>{r.device.clone()}{r.on_aws.then_some(" on AWS")}</td>
                        <td>{r.objects.map_or("—".into(), |n| n.to_string())}</td>
                        <td>{r.duration_s.map_or("—".into(), |d| format!("{d:.2} s"))}</td>
                        <td>{r.cost_usd.map_or("—".into(), |c| format!("${c:.6}"))}</td>
                    </tr>
                }).collect_view()}
            </table>
        }.into_any(),
    }
    }
}
