//! The CPU backends a learner can train on.

use std::fmt;
use std::str::FromStr;

use burn::prelude::Device;

/// burn's pure-Rust CPU backends; `flex` is the faster one on the machines measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum BackendKind {
    #[default]
    Flex,
    Ndarray,
}

impl BackendKind {
    /// The plain (inference) device; training uses `device().autodiff()`.
    pub fn device(self) -> Device {
        match self {
            BackendKind::Flex => Device::flex(),
            #[allow(deprecated)] // still a supported choice; see the crate docs
            BackendKind::Ndarray => Device::ndarray(),
        }
    }
}

impl FromStr for BackendKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "flex" => Ok(BackendKind::Flex),
            "ndarray" => Ok(BackendKind::Ndarray),
            other => Err(format!("backend `{other}`: expected `flex` or `ndarray`")),
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::Flex => "flex",
            BackendKind::Ndarray => "ndarray",
        })
    }
}
