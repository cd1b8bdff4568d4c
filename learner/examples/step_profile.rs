//! Times forward and backward of one training step, for profiling: `cargo run --release -p
//! learner --example step_profile -- cnn 200`.

use std::time::Instant;

use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use learner::dropout::DropoutMasks;
use learner::model::{Model, ModelKind};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let kind: ModelKind = args.get(1).map_or("cnn", String::as_str).parse().unwrap();
    let steps: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    pool.install(|| {
        let device = Device::flex().autodiff();
        let mut model = Model::new(kind, &device);
        let mut optimizer = AdamConfig::new().init();
        let loss_fn = CrossEntropyLossConfig::new().init(&device);
        let mut masks = DropoutMasks::new(0);
        let images = Tensor::<2>::random([64, 784], burn::tensor::Distribution::Default, &device);
        let labels = Tensor::<1, Int>::from_data(TensorData::new((0..64i64).map(|i| i % 10).collect::<Vec<_>>(), [64]), &device);
        let (mut fwd, mut bwd, mut opt) = (0.0, 0.0, 0.0);
        for _ in 0..steps {
            let t = Instant::now();
            let logits = model.forward(images.clone(), Some(&mut masks));
            let loss = loss_fn.forward(logits, labels.clone());
            let _ = loss.clone().into_scalar::<f32>();
            let t1 = Instant::now();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            let t2 = Instant::now();
            model = optimizer.step(1e-3, model, grads);
            let t3 = Instant::now();
            fwd += (t1 - t).as_secs_f64();
            bwd += (t2 - t1).as_secs_f64();
            opt += (t3 - t2).as_secs_f64();
        }
        let n = steps as f64;
        println!(
            "{kind}: forward {:.2} ms, backward {:.2} ms, optimizer {:.2} ms per batch of 64; {:.0} samples/s",
            fwd / n * 1e3, bwd / n * 1e3, opt / n * 1e3, 64.0 * n / (fwd + bwd + opt)
        );
    });
}
