//! Stopping long work cleanly on SIGINT, SIGTERM and SIGUSR1.
//!
//! [`install`] turns the three signals into a flag (signal-hook: the handler only stores an
//! integer, which is async-signal-safe). Long loops call [`check`] at points where stopping leaves
//! nothing half done; it returns [`Interrupted`], which travels up as an error, and `main` exits
//! with [`exit_code`]:
//!
//! | signal  | exit code | meaning                                                             |
//! |---------|-----------|---------------------------------------------------------------------|
//! | SIGINT  | 130       | stopped by the user (Ctrl-C); a second Ctrl-C exits at once         |
//! | SIGTERM | 143       | stopped by the system (shutdown, `scancel`, `kill`)                 |
//! | SIGUSR1 | 75        | "requeue me" (EX_TEMPFAIL): Slurm's warning before a time limit or preemption (`--signal=B:USR1@SECONDS`); the sweep's batch script requeues the task, which resumes |
//!
//! The trainer checks between optimisation steps and drops the unfinished epoch: the run resumes
//! (`norbvae train --out DIR --resume`) from its last epoch-end checkpoint, which the resume path
//! restores exactly, so an interrupted and resumed run ends bit-identical to an uninterrupted one.
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// The exit code for SIGUSR1: EX_TEMPFAIL from sysexits.h, "try again later".
pub const REQUEUE_EXIT_CODE: i32 = 75;

/// A signal that asks long work to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    Int,
    Term,
    Usr1,
}

impl StopSignal {
    pub const ALL: [StopSignal; 3] = [StopSignal::Int, StopSignal::Term, StopSignal::Usr1];

    pub fn number(self) -> i32 {
        match self {
            StopSignal::Int => signal_hook::consts::SIGINT,
            StopSignal::Term => signal_hook::consts::SIGTERM,
            StopSignal::Usr1 => signal_hook::consts::SIGUSR1,
        }
    }

    pub fn from_number(n: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.number() == n)
    }

    pub fn name(self) -> &'static str {
        match self {
            StopSignal::Int => "SIGINT",
            StopSignal::Term => "SIGTERM",
            StopSignal::Usr1 => "SIGUSR1",
        }
    }

    /// The process exit code after stopping for this signal (128 + number for INT and TERM, as
    /// a shell reports a process killed by them; 75 for USR1).
    pub fn exit_code(self) -> i32 {
        match self {
            StopSignal::Int => 130,
            StopSignal::Term => 143,
            StopSignal::Usr1 => REQUEUE_EXIT_CODE,
        }
    }
}

/// Work stopped at a clean point because a signal arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("stopped by {} (exit code {})", signal.name(), signal.exit_code())]
pub struct Interrupted {
    pub signal: StopSignal,
}

struct Flags {
    /// The number of the first stop signal received, 0 before any.
    received: Arc<AtomicUsize>,
}

static FLAGS: OnceLock<Flags> = OnceLock::new();

/// Route SIGINT, SIGTERM and SIGUSR1 to the flag [`pending`] reads. Idempotent; once installed
/// the handlers stay for the life of the process. A second SIGINT ends the process at once with
/// exit code 130 (the user insists).
pub fn install() -> std::io::Result<()> {
    if FLAGS.get().is_some() {
        return Ok(());
    }
    let received = Arc::new(AtomicUsize::new(0));
    let int_seen = Arc::new(AtomicBool::new(false));
    // Order matters: the conditional shutdown is registered first, so it sees the flag as it was
    // before this delivery (set only by an earlier SIGINT).
    signal_hook::flag::register_conditional_shutdown(
        StopSignal::Int.number(),
        StopSignal::Int.exit_code(),
        int_seen.clone(),
    )?;
    signal_hook::flag::register(StopSignal::Int.number(), int_seen)?;
    for s in StopSignal::ALL {
        let n = s.number();
        // Keep the first signal: a later TERM must not turn a USR1 ("requeue me") into a failure
        // code or back.
        let flag = received.clone();
        // SAFETY: the action only does a compare-exchange on an atomic integer, which is
        // async-signal-safe (no allocation, no locks, no panics).
        unsafe {
            signal_hook::low_level::register(n, move || {
                let _ = flag.compare_exchange(0, n as usize, Ordering::SeqCst, Ordering::SeqCst);
            })?;
        }
    }
    let _ = FLAGS.set(Flags { received });
    Ok(())
}

/// The first stop signal received since [`install`], if any.
pub fn pending() -> Option<StopSignal> {
    let n = FLAGS.get()?.received.load(Ordering::SeqCst);
    StopSignal::from_number(n as i32)
}

/// `Err(Interrupted)` once a stop signal has arrived; call it where stopping is clean.
pub fn check() -> Result<(), Interrupted> {
    match pending() {
        Some(signal) => Err(Interrupted { signal }),
        None => Ok(()),
    }
}

/// The exit code for a command that failed with `err`: the signal's code when the error is (or
/// wraps) [`Interrupted`], 1 otherwise.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    err.downcast_ref::<Interrupted>()
        .map(|i| i.signal.exit_code())
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Raising a signal here would set the process-wide flag under every other test of the
    // library (the trainer would stop at its first step): the signal paths are tested through
    // the binary (tests/sweep_signals.rs).
    #[test]
    fn exit_codes_follow_the_signal_through_context() {
        let wrapped = anyhow::Error::new(Interrupted {
            signal: StopSignal::Usr1,
        })
        .context("training in runs/x");
        assert_eq!(exit_code(&wrapped), REQUEUE_EXIT_CODE);
        let term = anyhow::Error::new(Interrupted {
            signal: StopSignal::Term,
        });
        assert_eq!(exit_code(&term), 143);
        assert_eq!(exit_code(&anyhow::anyhow!("other")), 1);
        for s in StopSignal::ALL {
            assert_eq!(StopSignal::from_number(s.number()), Some(s));
        }
    }
}
