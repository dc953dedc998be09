//! Process setup for the CPU kernels, done once at the start of `main` before any thread exists.
//! Why each setting holds is measured in `bench/TRAINING_SPEED.md` ("Process settings").

/// Process-wide settings:
/// - candle's own element-wise thread pool is limited to one thread unless CANDLE_NUM_THREADS is
///   set: the heavy work runs in the kernels on rayon's pool, and candle's pool workers spin
///   after each of its (small) operations, taking a core from the kernels' threads;
/// - glibc's allocator keeps freed blocks of up to 32 MB (its own adaptive limit) and all of its
///   free heap instead of returning them to the system, so a training step, or an evaluation
///   pass, reuses its buffers rather than faulting in fresh zeroed pages every time;
/// - and it uses one arena for all threads: the training step runs on a rayon worker, whose own
///   arena would be a 64 MB mmap'd heap that the step's live tensors outgrow, so its larger
///   buffers would be mapped and unmapped (page faults) every step. The step's allocations are
///   few and large, so sharing the arena's lock costs nothing measurable;
/// - rayon's global pool gets 32 MB stacks, since `main` runs the whole command on one of its
///   workers.
pub fn init_process() {
    // First, before any thread exists: a thread takes its arena at its first allocation, and
    // rayon's workers allocate as they start.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    // The command itself runs on a worker of this pool (main.rs): give the workers the stack
    // size of a main thread and more, not rayon's default 2 MB. Fails only if the global pool
    // already exists, in which case it keeps its settings.
    let _ = rayon::ThreadPoolBuilder::new()
        .stack_size(32 << 20)
        .build_global();
}
