//! In-browser prediction, through the inference worker (see the library's
//! `protocol`): started on the first prediction, it fetches its own module (burn
//! and both backends) and the weights, then answers each job by its id.

use cosmicai_frontend::protocol::{Batch, Choice, Done, Job, READY};
use std::cell::RefCell;
use std::collections::HashMap;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{ErrorEvent, MessageEvent, Worker};

pub use cosmicai_frontend::protocol::Ran;

/// Trunk names a worker after its binary, without a content hash.
const WORKER_URL: &str = "/cosmicai-infer_loader.js";
/// How long a new worker may take to fetch and start its module. A module that
/// fails to load does not raise the worker's error event (the loader's promise
/// is nobody's), so without this its jobs would wait forever.
const START_LIMIT_MS: i32 = 120_000;

#[derive(Default)]
struct Client {
    worker: Option<Worker>,
    /// Whether the worker listens yet; jobs wait in `queued` until it does.
    ready: bool,
    queued: Vec<String>,
    /// Each job's promise (resolve, reject), until its answer comes.
    pending: HashMap<u32, (js_sys::Function, js_sys::Function)>,
    answers: HashMap<u32, Result<Batch, String>>,
    next: u32,
}

thread_local! {
    static CLIENT: RefCell<Client> = RefCell::new(Client::default());
}

/// How a job ends whose worker died under it (its error event).
const WORKER_FAILED: &str = "the inference worker failed";

thread_local! {
    /// Why the worker died under "auto" in this page, once it has: "auto" then
    /// runs on the CPU at once instead of crashing a fresh worker each time.
    static GPU_CRASHED: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Predictions for `magnitudes` on the backend `choice` asks for. With
/// "auto", a worker that dies (most likely setting WebGPU up: a driver's
/// panic) is started again on the CPU, and the batch says why.
pub async fn run(magnitudes: &[[f32; 5]], choice: Choice) -> Result<Batch, String> {
    let on_cpu_because = |why: String| async move {
        let mut batch = run_once(magnitudes, Choice::Cpu).await?;
        batch.fallback = Some(why);
        Ok(batch)
    };
    let crashed = GPU_CRASHED.with(|c| c.borrow().clone());
    if choice == Choice::Auto
        && let Some(why) = crashed
    {
        return on_cpu_because(why).await;
    }
    match run_once(magnitudes, choice).await {
        Err(e) if choice == Choice::Auto && e.starts_with(WORKER_FAILED) => {
            // Most likely WebGPU's set-up (a driver's panic); if the CPU path
            // was what failed, the retry fails too, and says so.
            let why = format!(
                "the inference worker stopped under auto, most likely setting WebGPU up ({e}); the CPU runs instead"
            );
            GPU_CRASHED.with(|c| *c.borrow_mut() = Some(why.clone()));
            on_cpu_because(why).await
        }
        other => other,
    }
}

/// One job on a worker (started if there is none).
async fn run_once(magnitudes: &[[f32; 5]], choice: Choice) -> Result<Batch, String> {
    let id = CLIENT.with(|c| {
        let mut c = c.borrow_mut();
        c.next = c.next.wrapping_add(1);
        c.next
    });
    let job = serde_json::to_string(&Job {
        id,
        magnitudes: magnitudes.to_vec(),
        choice,
    })
    .map_err(|e| e.to_string())?;
    let promise = js_sys::Promise::new(&mut |resolve, reject| {
        CLIENT.with(|c| c.borrow_mut().pending.insert(id, (resolve, reject)));
    });
    if let Err(e) = send(job) {
        CLIENT.with(|c| c.borrow_mut().pending.remove(&id));
        return Err(e);
    }
    JsFuture::from(promise)
        .await
        .map_err(|e| e.as_string().unwrap_or_else(|| format!("{e:?}")))?;
    CLIENT
        .with(|c| c.borrow_mut().answers.remove(&id))
        .unwrap_or_else(|| Err("the inference worker gave no answer".into()))
}

/// Posts `job`, starting the worker first if there is none, or queues it until
/// the worker listens.
fn send(job: String) -> Result<(), String> {
    let worker = CLIENT.with(|c| c.borrow().worker.clone());
    let worker = match worker {
        Some(w) => w,
        None => start()?,
    };
    if !CLIENT.with(|c| c.borrow().ready) {
        CLIENT.with(|c| c.borrow_mut().queued.push(job));
        return Ok(());
    }
    worker
        .post_message(&JsValue::from_str(&job))
        .map_err(|e| format!("the inference worker: {e:?}"))
}

fn start() -> Result<Worker, String> {
    let worker = Worker::new(WORKER_URL)
        .map_err(|e| format!("starting the inference worker ({WORKER_URL}): {e:?}"))?;
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(|event: MessageEvent| {
        if let Some(text) = event.data().as_string() {
            answer(&text);
        }
    });
    worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    on_message.forget(); // as long as the page
    let on_error = Closure::<dyn FnMut(ErrorEvent)>::new(|event: ErrorEvent| {
        fail_all(&format!(
            "{WORKER_FAILED} ({WORKER_URL}): {}",
            event.message()
        ));
    });
    worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    on_error.forget();
    CLIENT.with(|c| c.borrow_mut().worker = Some(worker.clone()));
    let started = worker.clone();
    let check = Closure::once_into_js(move || {
        let stalled = CLIENT.with(|c| {
            let c = c.borrow();
            !c.ready && c.worker.as_ref().is_some_and(|w| w == &started)
        });
        if stalled {
            fail_all(&format!(
                "the inference worker did not start within {} s ({WORKER_URL})",
                START_LIMIT_MS / 1000
            ));
        }
    });
    if let Some(window) = web_sys::window() {
        let _ = window.set_timeout_with_callback_and_timeout_and_arguments_0(
            check.unchecked_ref(),
            START_LIMIT_MS,
        );
    }
    Ok(worker)
}

/// The id of an answer that does not read back whole.
#[derive(serde::Deserialize)]
struct JobId {
    id: u32,
}

/// A message from the worker: it listens now, or job `id` is done.
fn answer(text: &str) {
    if text == READY {
        let (worker, queued) = CLIENT.with(|c| {
            let mut c = c.borrow_mut();
            c.ready = true;
            (c.worker.clone(), std::mem::take(&mut c.queued))
        });
        for job in queued {
            if let Some(w) = &worker
                && let Err(e) = w.post_message(&JsValue::from_str(&job))
            {
                fail_all(&format!("the inference worker: {e:?}"));
            }
        }
        return;
    }
    let (id, batch) = match serde_json::from_str::<Done>(text) {
        Ok(done) => (done.id, done.batch),
        // An answer that does not read back (a NaN goes out as null, say) still
        // ends its job, with the reason.
        Err(e) => match serde_json::from_str::<JobId>(text) {
            Ok(JobId { id }) => (id, Err(format!("the inference worker's answer: {e}"))),
            Err(_) => return,
        },
    };
    let resolve = CLIENT.with(|c| {
        let mut c = c.borrow_mut();
        let waiting = c.pending.remove(&id);
        if waiting.is_some() {
            c.answers.insert(id, batch);
        }
        waiting
    });
    if let Some((resolve, _)) = resolve {
        let _ = resolve.call0(&JsValue::NULL);
    }
}

/// Rejects every waiting job with `why` and drops the worker, so the next
/// prediction starts a fresh one.
fn fail_all(why: &str) {
    let pending = CLIENT.with(|c| {
        let mut c = c.borrow_mut();
        if let Some(w) = c.worker.take() {
            w.terminate();
        }
        c.ready = false;
        c.queued.clear();
        std::mem::take(&mut c.pending)
    });
    for (_, (_, reject)) in pending {
        let _ = reject.call1(&JsValue::NULL, &JsValue::from_str(why));
    }
}
