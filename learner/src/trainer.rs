//! Local training and evaluation of one node's model: the only part of a learner that touches
//! burn tensors. Everything around it works on flat parameter vectors.

use std::sync::Mutex;

use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::backend::BackendKind;
use crate::data::{Dataset, IMAGE_PIXELS};
use crate::dropout::DropoutMasks;
use crate::model::{Model, ModelKind};
use crate::params::{flatten, layout, number_params, unflatten};

/// What a node trains and how.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainConfig {
    pub model: ModelKind,
    pub backend: BackendKind,
    pub batch_size: usize,
    pub learning_rate: f64,
}

impl Default for TrainConfig {
    /// The Delta Sum paper's protocol: the CNN, Adam at 1e-3, batches of 64.
    fn default() -> Self {
        Self {
            model: ModelKind::Cnn,
            backend: BackendKind::Flex,
            batch_size: 64,
            learning_rate: 1e-3,
        }
    }
}

/// Accuracy and mean cross-entropy over a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Evaluation {
    pub accuracy: f64,
    pub loss: f64,
}

/// Weight initialisation draws from the backend's global generator: serialise seeding and drawing.
static INIT_LOCK: Mutex<()> = Mutex::new(());

/// The initial weights every node of a run starts from: a pure function of model, backend, seed.
pub fn initial_weights(model: ModelKind, backend: BackendKind, seed: u64) -> Vec<f32> {
    let _guard = INIT_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let device = backend.device();
    device.seed(seed);
    flatten(&Model::new(model, &device))
}

/// The tensor sizes of `model`'s flat layout.
pub fn model_layout(model: ModelKind) -> Vec<usize> {
    layout(&Model::new(model, &BackendKind::Flex.device()))
}

#[derive(Debug, thiserror::Error)]
pub enum TrainerError {
    #[error("optimizer state: {0}")]
    OptimizerState(String),
    #[error("writing the model to {path}: {message}")]
    SaveModel {
        path: std::path::PathBuf,
        message: String,
    },
}

/// One node's model, optimizer and random streams.
pub struct Trainer {
    config: TrainConfig,
    device: Device,
    /// Always `Some` between calls; taken while the optimizer consumes and returns it.
    model: Option<Model>,
    optimizer: ModuleOptimizer,
    loss: CrossEntropyLoss,
    dropout: DropoutMasks,
    shuffle: StdRng,
}

impl Trainer {
    /// A trainer starting from `weights`; `seed` drives this node's shuffling and dropout.
    pub fn new(config: TrainConfig, weights: &[f32], seed: u64) -> Self {
        let device = config.backend.device().autodiff();
        let model = number_params(unflatten(Model::new(config.model, &device), weights));
        Self {
            loss: CrossEntropyLossConfig::new().init(&device),
            optimizer: AdamConfig::new().init(),
            dropout: DropoutMasks::new(seed ^ 0x9e37_79b9_7f4a_7c15),
            shuffle: StdRng::seed_from_u64(seed),
            config,
            device,
            model: Some(model),
        }
    }

    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// One pass over `data` in shuffled mini-batches (the last one may be short); returns the
    /// mean training loss.
    pub fn train_epoch(&mut self, data: &Dataset) -> f64 {
        crate::numerics::flush_subnormals_to_zero();
        let mut order: Vec<usize> = (0..data.len()).collect();
        order.shuffle(&mut self.shuffle);
        let mut loss_sum = 0.0;
        for batch in order.chunks(self.config.batch_size) {
            let (images, labels) = batch_tensors(data, batch, &self.device);
            let model = self.model.take().expect("model present between steps");
            let logits = model.forward(images, Some(&mut self.dropout));
            let loss = self.loss.forward(logits, labels);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            loss_sum += f64::from(loss.into_scalar::<f32>()) * batch.len() as f64;
            self.model = Some(self.optimizer.step(self.config.learning_rate, model, grads));
        }
        loss_sum / data.len().max(1) as f64
    }

    /// Accuracy and loss on `data`, without dropout or gradients.
    pub fn evaluate(&self, data: &Dataset) -> Evaluation {
        crate::numerics::flush_subnormals_to_zero();
        evaluate(&self.model().valid(), data)
    }

    pub fn weights(&self) -> Vec<f32> {
        flatten(self.model())
    }

    fn model(&self) -> &Model {
        self.model.as_ref().expect("model present between steps")
    }

    /// The optimizer's state (Adam's moment estimates and step count), for a checkpoint.
    pub fn optimizer_state(&self) -> Result<Vec<u8>, TrainerError> {
        let bytes = self
            .optimizer
            .into_bytes()
            .map_err(|e| TrainerError::OptimizerState(e.to_string()))?;
        Ok(bytes.to_vec())
    }

    /// Restores optimizer state saved by [`Trainer::optimizer_state`] for the same model.
    pub fn restore_optimizer_state(&mut self, state: &[u8]) -> Result<(), TrainerError> {
        let fresh = AdamConfig::new().init();
        let optimizer = std::mem::replace(&mut self.optimizer, fresh);
        let bytes = burn::tensor::Bytes::from_bytes_vec(state.to_vec());
        self.optimizer = optimizer
            .from_bytes(bytes)
            .map_err(|e| TrainerError::OptimizerState(e.to_string()))?;
        Ok(())
    }

    /// Writes the model as a burn record (burnpack), loadable with `ModuleRecord::from_bytes`.
    pub fn save_model(&self, path: &std::path::Path) -> Result<(), TrainerError> {
        let failed = |message: String| TrainerError::SaveModel {
            path: path.to_path_buf(),
            message,
        };
        let bytes = self
            .model()
            .clone()
            .into_record()
            .into_bytes()
            .map_err(|e| failed(e.to_string()))?;
        std::fs::write(path, &bytes[..]).map_err(|e| failed(e.to_string()))
    }

    /// Replaces the weights, keeping the optimizer's moment estimates.
    pub fn set_weights(&mut self, weights: &[f32]) {
        let model = self.model.take().expect("model present between steps");
        self.model = Some(unflatten(model, weights));
    }
}

const EVAL_BATCH: usize = 1000;

fn evaluate(model: &Model, data: &Dataset) -> Evaluation {
    if data.is_empty() {
        return Evaluation::default();
    }
    let device = model_device(model);
    let loss = CrossEntropyLossConfig::new().init(&device);
    let (mut correct, mut loss_sum) = (0usize, 0.0);
    let indices: Vec<usize> = (0..data.len()).collect();
    for batch in indices.chunks(EVAL_BATCH) {
        let (images, labels) = batch_tensors(data, batch, &device);
        let logits = model.forward(images, None);
        loss_sum += f64::from(
            loss.forward(logits.clone(), labels.clone())
                .into_scalar::<f32>(),
        ) * batch.len() as f64;
        let hits = logits
            .argmax(1)
            .squeeze_dim::<1>(1)
            .equal(labels)
            .int()
            .sum();
        correct += hits.into_scalar::<i64>() as usize;
    }
    Evaluation {
        accuracy: correct as f64 / data.len() as f64,
        loss: loss_sum / data.len() as f64,
    }
}

fn model_device(model: &Model) -> Device {
    let mut devices = model.devices();
    devices.pop().unwrap_or_else(Device::flex)
}

fn batch_tensors(data: &Dataset, batch: &[usize], device: &Device) -> (Tensor<2>, Tensor<1, Int>) {
    let mut pixels = Vec::with_capacity(batch.len() * IMAGE_PIXELS);
    let mut labels = Vec::with_capacity(batch.len());
    for &index in batch {
        pixels.extend_from_slice(data.image(index));
        labels.push(i64::from(data.labels[index]));
    }
    (
        Tensor::from_data(TensorData::new(pixels, [batch.len(), IMAGE_PIXELS]), device),
        Tensor::from_data(TensorData::new(labels, [batch.len()]), device),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_node_gets_the_same_initial_weights_from_a_seed() {
        let a = initial_weights(ModelKind::Mlp, BackendKind::Flex, 5);
        assert_eq!(a, initial_weights(ModelKind::Mlp, BackendKind::Flex, 5));
        assert_ne!(a, initial_weights(ModelKind::Mlp, BackendKind::Flex, 6));
        assert_eq!(model_layout(ModelKind::Mlp).iter().sum::<usize>(), a.len());
    }

    #[test]
    fn set_weights_round_trips() {
        let config = TrainConfig {
            model: ModelKind::Mlp,
            ..TrainConfig::default()
        };
        let mut trainer = Trainer::new(
            config,
            &initial_weights(ModelKind::Mlp, BackendKind::Flex, 1),
            0,
        );
        let target = initial_weights(ModelKind::Mlp, BackendKind::Flex, 2);
        trainer.set_weights(&target);
        assert_eq!(trainer.weights(), target);
    }

    /// A trainer restored from a checkpoint continues exactly as the original would have, which
    /// it only can if Adam's moments came back too.
    #[test]
    fn optimizer_state_survives_a_new_process() {
        let data = crate::data::load_dir(&crate::fixture_dir()).unwrap().train;
        let small = data.select(&(0..256).collect::<Vec<_>>());
        let config = TrainConfig {
            model: ModelKind::Mlp,
            batch_size: 32,
            ..TrainConfig::default()
        };
        let start = initial_weights(ModelKind::Mlp, BackendKind::Flex, 1);
        let mut original = Trainer::new(config, &start, 7);
        original.train_epoch(&small);
        let (weights, state) = (original.weights(), original.optimizer_state().unwrap());

        let mut restored = Trainer::new(config, &weights, 9);
        restored.restore_optimizer_state(&state).unwrap();
        let mut fresh = Trainer::new(config, &weights, 9);
        let mut again = Trainer::new(config, &weights, 9);
        again.restore_optimizer_state(&state).unwrap();
        restored.train_epoch(&small);
        fresh.train_epoch(&small);
        again.train_epoch(&small);
        assert_eq!(
            restored.weights(),
            again.weights(),
            "restoring is deterministic"
        );
        assert_ne!(
            restored.weights(),
            fresh.weights(),
            "the restored moments changed nothing: they were not restored"
        );
    }
}
