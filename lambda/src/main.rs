//! `bootstrap`: the Lambda function (runtime `provided.al2023`), or, as
//! `bootstrap run-event JSON`, the same handler once as an AWS Batch GPU job
//! (the Map passes a bare rank item there, which means `infer`).

use cosmicai_lambda::{
    S3Settings, handle, mark_init_end, mark_process_start, parse_event, preload,
};
use cosmicai_shared::aws::{RankItem, StageEvent};
use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use serde_json::Value;

fn main() -> Result<(), lambda_runtime::Error> {
    mark_process_start();
    let settings = S3Settings::from_env();
    // Lambda's init phase: load the function's model before the first event.
    // Before the runtime is built: the S3 store behind `preload` blocks on a
    // runtime of its own, which tokio refuses inside another.
    preload(&settings);
    // INIT ends here: what follows until the first call is not billed.
    mark_init_end();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(settings))
}

async fn serve(settings: S3Settings) -> Result<(), lambda_runtime::Error> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("run-event") {
        return run_once(settings, args.get(2).cloned()).await;
    }
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let settings = settings.clone();
        async move {
            // The pipeline blocks (memory-mapped partitions, its own S3 runtime).
            tokio::task::spawn_blocking(move || {
                parse_event(event.payload).and_then(|event| handle(&settings, event))
            })
            .await
            .map_err(|e| diagnostic("StageFailed", e.to_string()))?
            .map_err(|e| diagnostic(e.kind, e.message))
        }
    }))
    .await
}

fn diagnostic(kind: &str, message: String) -> Diagnostic {
    eprintln!("{kind}: {message}");
    Diagnostic {
        error_type: kind.to_string(),
        error_message: message,
    }
}

/// One event from the command line; prints the stage's answer, fails with its error.
async fn run_once(
    settings: S3Settings,
    event: Option<String>,
) -> Result<(), lambda_runtime::Error> {
    let text = event.ok_or("usage: bootstrap run-event '{\"stage\": ...}'")?;
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| format!("run-event: not a stage event or a rank item: {e}"))?;
    let event = if value.get("stage").is_some() {
        parse_event(value)
            .map_err(|e| format!("run-event: not a stage event or a rank item: {}", e.message))?
    } else {
        match serde_json::from_value::<RankItem>(value) {
            Ok(item) => StageEvent::Infer(item),
            Err(e) => {
                return Err(format!("run-event: not a stage event or a rank item: {e}").into());
            }
        }
    };
    let answer = tokio::task::spawn_blocking(move || handle(&settings, event)).await?;
    match answer {
        Ok(value) => {
            println!("{value}");
            Ok(())
        }
        Err(e) => Err(e.to_string().into()),
    }
}
