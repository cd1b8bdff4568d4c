//! Training throughput on one core: samples per second for the CNN and the MLP on both burn
//! backends, next to PyTorch running the same model, batch size and optimizer in the same run.
//!
//! `scripts/bench.sh learner` (installs PyTorch into a virtual environment first). Without
//! `PYTORCH_PYTHON` set to an interpreter that has torch, only burn is measured.
//! `BENCH_SECONDS` sets the measuring time per configuration (default 10).

use std::process::Command;
use std::time::{Duration, Instant};

use learner::backend::BackendKind;
use learner::data;
use learner::model::ModelKind;
use learner::trainer::{TrainConfig, Trainer, initial_weights};

const BATCH: usize = 64;
const WARMUP_BATCHES: usize = 20;

/// Set in the child process that measures one configuration.
const ONE_CONFIGURATION: &str = "THROUGHPUT_CONFIGURATION";

fn main() {
    let seconds: f64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0);
    if let Ok(configuration) = std::env::var(ONE_CONFIGURATION) {
        let (model, backend) = configuration.split_once(':').expect("MODEL:BACKEND");
        let splits = data::load(None).unwrap_or_else(|error| {
            eprintln!("{error}");
            std::process::exit(2);
        });
        // One core: burn's kernels run inside a one-thread pool, PyTorch with one thread.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("one-thread pool");
        let (model, backend) = (model.parse().unwrap(), backend.parse().unwrap());
        let rate = pool.install(|| measure(model, backend, &splits.train, seconds));
        println!("{rate}");
        return;
    }
    if let Err(error) = data::load(None) {
        eprintln!("{error}");
        std::process::exit(2);
    }
    let models = [ModelKind::Cnn, ModelKind::Mlp];
    let torch = pytorch(seconds);
    println!(
        "{:<6} {:<8} {:>14} {:>16} {:>10}",
        "model", "backend", "samples/s", "pytorch samples/s", "ratio"
    );
    for model in models {
        let reference = torch
            .iter()
            .find(|(m, _)| *m == model)
            .map(|(_, rate)| *rate);
        for backend in [BackendKind::Flex, BackendKind::Ndarray] {
            let rate = in_child(model, backend);
            let (torch_text, ratio) = match reference {
                Some(torch_rate) => (
                    format!("{torch_rate:.0}"),
                    format!("{:.2}x", rate / torch_rate),
                ),
                None => ("-".into(), "-".into()),
            };
            println!(
                "{:<6} {:<8} {:>14.0} {:>16} {:>10}",
                model.to_string(),
                backend.to_string(),
                rate,
                torch_text,
                ratio
            );
        }
    }
}

/// Measures one configuration in a fresh process, so no backend's threads or allocations from an
/// earlier configuration linger into the next.
fn in_child(model: ModelKind, backend: BackendKind) -> f64 {
    let output = Command::new(std::env::current_exe().expect("own path"))
        .env(ONE_CONFIGURATION, format!("{model}:{backend}"))
        .output()
        .expect("running a measurement");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("a rate")
}

/// Samples per second of `Trainer::train_epoch` over whole batches, after a warm-up.
fn measure(model: ModelKind, backend: BackendKind, train: &data::Dataset, seconds: f64) -> f64 {
    let config = TrainConfig {
        model,
        backend,
        batch_size: BATCH,
        learning_rate: 1e-3,
    };
    let mut trainer = Trainer::new(config, &initial_weights(model, backend, 0), 0);
    let chunk = |start: usize, batches: usize| {
        let indices: Vec<usize> = (start..start + batches * BATCH)
            .map(|i| i % train.len())
            .collect();
        train.select(&indices)
    };
    trainer.train_epoch(&chunk(0, WARMUP_BATCHES));
    // Walk through the training set in order, as an epoch does, 10 batches at a time.
    let mut next = WARMUP_BATCHES * BATCH;
    let started = Instant::now();
    let mut samples = 0usize;
    while started.elapsed() < Duration::from_secs_f64(seconds) {
        let step = chunk(next, 10);
        next += step.len();
        trainer.train_epoch(&step);
        samples += step.len();
    }
    samples as f64 / started.elapsed().as_secs_f64()
}

/// PyTorch's samples per second per model, from `scripts/pytorch_throughput.py`.
fn pytorch(seconds: f64) -> Vec<(ModelKind, f64)> {
    let Ok(python) = std::env::var("PYTORCH_PYTHON") else {
        eprintln!("PYTORCH_PYTHON not set: measuring burn only (scripts/bench.sh learner sets it)");
        return Vec::new();
    };
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/pytorch_throughput.py"
    );
    let output = Command::new(python)
        .args([script, "--threads", "1", "--seconds", &seconds.to_string()])
        .output()
        .expect("running the PyTorch benchmark");
    if !output.status.success() {
        eprintln!(
            "PyTorch benchmark failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        return Vec::new();
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let model = field(line, "model")?.trim_matches('"').parse().ok()?;
            let rate = field(line, "samples_per_second")?.parse().ok()?;
            Some((model, rate))
        })
        .collect()
}

/// The raw text of `"key": value` in a flat JSON line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(&format!("\"{key}\""))? + key.len() + 2;
    let rest = line[start..].trim_start().strip_prefix(':')?.trim_start();
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    Some(rest[..end].trim())
}
