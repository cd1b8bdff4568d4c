//! Running one closure per node on every core, one node per thread at a time.
//!
//! Each worker thread owns a one-thread rayon pool and runs its nodes inside it, so burn's own
//! data parallelism stays on that thread: nodes do not fight over cores, and every node's
//! floating-point reductions happen in one fixed order, which makes runs repeatable.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fixed set of worker threads' pools.
pub struct Workers {
    pools: Vec<rayon::ThreadPool>,
}

impl Workers {
    /// `threads` workers (0: one per core).
    pub fn new(threads: usize) -> Self {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, usize::from)
        } else {
            threads
        };
        let pools = (0..threads)
            .map(|_| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(1)
                    .build()
                    .expect("a one-thread pool")
            })
            .collect();
        Self { pools }
    }

    pub fn threads(&self) -> usize {
        self.pools.len()
    }

    /// Calls `work` on every item, items handed out one at a time to whichever worker is free.
    pub fn for_each<T: Send>(&self, items: &mut [T], work: impl Fn(&mut T) + Sync) {
        let cells: Vec<Mutex<&mut T>> = items.iter_mut().map(Mutex::new).collect();
        let next = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for pool in &self.pools {
                let (cells, next, work) = (&cells, &next, &work);
                scope.spawn(move || {
                    pool.install(|| {
                        loop {
                            let index = next.fetch_add(1, Ordering::Relaxed);
                            let Some(cell) = cells.get(index) else { break };
                            let mut item = cell.lock().unwrap_or_else(|p| p.into_inner());
                            work(&mut item);
                        }
                    })
                });
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visits_every_item_exactly_once() {
        let mut items = vec![0u32; 100];
        Workers::new(3).for_each(&mut items, |item| *item += 1);
        assert!(items.iter().all(|&i| i == 1));
    }
}
