//! Virtual time: microseconds since the start of a run.

use std::time::Duration;

/// Virtual time is kept in microseconds so that foca's sub-second timers and the 1-20 ms
/// network delays compose without rounding.
pub type Micros = u64;

pub const fn ms(millis: u64) -> Micros {
    millis * 1000
}

pub const fn secs(seconds: u64) -> Micros {
    seconds * 1_000_000
}

/// The wall clock at virtual time zero. Any realistic epoch will do; it keeps the HLC
/// versions looking like the ones a real agent writes.
pub const EPOCH_WALL_MS: u64 = 1_700_000_000_000;

/// Rounded up, so a timer never fires before its time.
pub fn duration_micros(d: Duration) -> Micros {
    let micros = d.as_nanos().div_ceil(1000);
    Micros::try_from(micros).expect("foca timers are far below u64::MAX microseconds")
}

pub fn seconds(micros: Micros) -> f64 {
    micros as f64 / 1e6
}
