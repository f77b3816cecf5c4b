//! The inference worker: a dedicated Web Worker that answers each [`Job`] with
//! PhotoZ's predictions ([`model::run`]), off the page's thread. Trunk builds
//! it (`data-type="worker"` in `index.html`) beside the app, as
//! `/cosmicai-infer_loader.js`.

use cosmicai_frontend::model;
use cosmicai_frontend::protocol::{Done, Job, READY};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{DedicatedWorkerGlobalScope, MessageEvent};

fn main() {
    std::panic::set_hook(Box::new(|info| {
        web_sys::console::error_1(&info.to_string().into());
    }));
    let scope: DedicatedWorkerGlobalScope = js_sys::global().unchecked_into();
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(|event: MessageEvent| {
        let Some(text) = event.data().as_string() else {
            return;
        };
        wasm_bindgen_futures::spawn_local(async move {
            let job: Job = match serde_json::from_str(&text) {
                Ok(job) => job,
                Err(e) => {
                    web_sys::console::error_1(&format!("inference worker: a bad job: {e}").into());
                    return;
                }
            };
            let done = Done {
                id: job.id,
                batch: model::run(&job.magnitudes, job.choice).await,
            };
            let scope: DedicatedWorkerGlobalScope = js_sys::global().unchecked_into();
            let reply = serde_json::to_string(&done).unwrap_or_else(|e| {
                serde_json::to_string(&Done {
                    id: done.id,
                    batch: Err(e.to_string()),
                })
                .unwrap_or_default()
            });
            let _ = scope.post_message(&JsValue::from_str(&reply));
        });
    });
    scope.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    // The handler lives as long as the worker.
    on_message.forget();
    let _ = scope.post_message(&JsValue::from_str(READY));
}
