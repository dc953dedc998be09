//! Keeping the rayon pool's other workers awake for the length of a training step.
//!
//! A training step runs a few dozen parallel regions (one or two per layer and pass) separated
//! by short serial stretches (candle's graph, the loss, small element-wise ops). A rayon worker
//! that finds no work yields for a few dozen rounds and then sleeps, and waking it costs 7-16 us
//! on this machine (`rayon::join` of two 20 us halves after 50-500 us of serial work: 29-36 us
//! instead of 22). That is paid at nearly every region. [`keep_workers_awake`] parks the other
//! workers in a loop that runs any job that appears (`rayon::yield_now`) until the guard drops,
//! as OpenMP runtimes spin between parallel regions (PyTorch's included).
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A spinning worker gives up after this long without finding a job (a step that left
/// the kernels for long, e.g. evaluation), so a forgotten guard cannot burn a core for long.
const IDLE_LIMIT: Duration = Duration::from_millis(20);

/// Workers spinning right now, over all pools (for tests).
static SPINNING: AtomicUsize = AtomicUsize::new(0);

/// Stops the spinning workers when dropped.
pub struct AwakeWorkers {
    stop: Arc<AtomicBool>,
}

impl Drop for AwakeWorkers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// Runs `step` (a training step: forward, loss, backward and update) with the other workers of
/// the current rayon pool kept awake, so that its many short parallel regions start without
/// waking them ([`keep_workers_awake`]).
pub fn with_workers_awake<T>(step: impl FnOnce() -> T) -> T {
    let _awake = keep_workers_awake();
    step()
}

/// Parks every other worker of the current rayon pool in a job-running spin loop until the
/// returned guard is dropped. Does nothing (returns `None`) with one thread or off the pool.
pub fn keep_workers_awake() -> Option<AwakeWorkers> {
    let threads = rayon::current_num_threads();
    let me = rayon::current_thread_index()?;
    if threads < 2 {
        return None;
    }
    let stop = Arc::new(AtomicBool::new(false));
    for _ in 1..threads {
        let stop = stop.clone();
        rayon::spawn(move || {
            // The spawning thread may pick this job up itself while it waits inside a join;
            // spinning there would wait for a guard that only this thread can drop.
            if rayon::current_thread_index() == Some(me) {
                return;
            }
            SPINNING.fetch_add(1, Ordering::AcqRel);
            let mut last_work = Instant::now();
            while !stop.load(Ordering::Acquire) {
                match rayon::yield_now() {
                    Some(rayon::Yield::Executed) => last_work = Instant::now(),
                    _ if last_work.elapsed() > IDLE_LIMIT => break,
                    _ => std::hint::spin_loop(),
                }
            }
            SPINNING.fetch_sub(1, Ordering::AcqRel);
        });
    }
    Some(AwakeWorkers { stop })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    fn spinning_within(limit: Duration, want: impl Fn(usize) -> bool) -> bool {
        let t = Instant::now();
        while t.elapsed() < limit {
            if want(SPINNING.load(Ordering::Acquire)) {
                return true;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        false
    }

    /// The measurement behind this module (timing only, nothing asserted):
    /// `cargo test --release --lib wake_probe -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn wake_probe() {
        let spin = |d: Duration| {
            let t = Instant::now();
            while t.elapsed() < d {
                std::hint::spin_loop();
            }
        };
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        pool.install(|| {
            for awake in [false, true] {
                let guard = if awake { keep_workers_awake() } else { None };
                for gap in [0u64, 20, 50, 100, 200, 500] {
                    let n = 2000;
                    let mut total = Duration::ZERO;
                    for _ in 0..n {
                        spin(Duration::from_micros(gap));
                        let t = Instant::now();
                        let half = || spin(Duration::from_micros(20));
                        rayon::join(half, half);
                        total += t.elapsed();
                    }
                    let us = total.as_secs_f64() / n as f64 * 1e6;
                    println!("awake {awake}: join of two 20 us halves after {gap} us serial: {us:.1} us");
                }
                drop(guard);
            }
        });
    }

    #[test]
    fn other_workers_spin_while_held_run_the_work_and_stop_when_dropped() {
        assert!(
            keep_workers_awake().is_none(),
            "off any pool: nothing to keep awake"
        );
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let guard = keep_workers_awake();
                assert_eq!(guard.is_some(), threads > 1);
                if threads > 1 {
                    assert!(
                        spinning_within(Duration::from_secs(2), |n| n >= 1),
                        "{threads} threads: no worker started spinning"
                    );
                }
                // Parallel work completes, correctly, with the workers parked in the spin loop
                // (which must run it) and the spawning thread waiting in joins.
                for round in 0..50u64 {
                    let total: u64 = (0..10_000u64).into_par_iter().map(|v| v * round).sum();
                    assert_eq!(total, round * 10_000 * 9_999 / 2);
                    let (a, b) = rayon::join(|| round + 1, || round + 2);
                    assert_eq!((a, b), (round + 1, round + 2));
                }
                drop(guard);
            });
            assert!(
                spinning_within(Duration::from_secs(2), |n| n == 0),
                "{threads} threads: workers still spinning after the guard was dropped"
            );
        }
    }
}
