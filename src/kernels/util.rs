//! Small shared pieces of the CPU kernels: reading candle storage as f32 slices, per-thread
//! scratch buffers (so a training step does not allocate its im2col matrices again each time),
//! work splitting over rayon, and sums that vectorise.
use candle_core::{bail, CpuStorage, Layout, Result, Storage, Tensor};
use rayon::prelude::*;
use std::cell::RefCell;

/// The contiguous f32 data behind a CPU storage and layout.
pub(crate) fn f32_data<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        bail!("norbvae kernels: expected f32 data")
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => bail!("norbvae kernels: expected a contiguous tensor"),
    }
}

/// Runs `f` on the contiguous f32 data of a CPU tensor (made contiguous first if needed).
pub(crate) fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let t = t.contiguous()?;
    let (st, l) = t.storage_and_layout();
    match &*st {
        Storage::Cpu(s) => Ok(f(f32_data(s, l)?)),
        _ => bail!("norbvae kernels run on CPU tensors only"),
    }
}

thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Lends `f` a scratch buffer of at least `len` floats with unspecified contents, reused across
/// calls on the same thread. A nested call on the same thread gets a fresh allocation.
pub(crate) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            if buf.len() < len {
                buf.resize(len, 0.0);
            }
            f(&mut buf[..len])
        }
        Err(_) => f(&mut vec![0.0; len]),
    })
}

/// A raw pointer that may cross threads, so that the tasks of one parallel loop can each write
/// their own disjoint range of one output buffer.
#[derive(Clone, Copy)]
pub(crate) struct SyncPtr(pub *mut f32);
// SAFETY: a SyncPtr is only an address: its safe methods never dereference it, and every access
// through it is an `unsafe` call (`slice`, or a raw write through `at`) whose caller vouches that
// the range is in bounds, alive, and touched by no other thread meanwhile. Moving or sharing the
// address between threads therefore adds no way to race.
unsafe impl Send for SyncPtr {}
// SAFETY: as for Send.
unsafe impl Sync for SyncPtr {}

impl SyncPtr {
    /// The pointer `k` floats further (the raw pointer for GEMM destinations).
    pub fn at(self, k: usize) -> *mut f32 {
        self.0.wrapping_add(k)
    }

    /// The `len` floats from `start` as a slice.
    ///
    /// # Safety
    /// The range must be in bounds of one live allocation and accessed by no one else while the
    /// slice lives. Its elements may still be uninitialised (a [`filled_vec`] buffer) only if
    /// the slice's user writes each one before reading it.
    pub unsafe fn slice<'a>(self, start: usize, len: usize) -> &'a mut [f32] {
        // SAFETY: the caller's contract above.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(start), len) }
    }
}

/// Splits `n` items into groups of about `per_item` floats of working set each, so one group's
/// buffers stay in the per-core cache, and into at least as many groups as threads when possible.
/// Returns (group size, number of groups).
pub(crate) fn plan_groups(n: usize, per_item: usize, threads: usize) -> (usize, usize) {
    plan_groups_within(n, per_item, threads, 1 << 18)
}

/// [`plan_groups`] with groups of about `target_floats` floats of working set (for kernels whose
/// inner loops reuse a group's data many times, which want it in L1 rather than L2).
pub(crate) fn plan_groups_within(
    n: usize,
    per_item: usize,
    threads: usize,
    target_floats: usize,
) -> (usize, usize) {
    let mut size = (target_floats / per_item.max(1)).clamp(1, n.max(1));
    let mut groups = n.div_ceil(size);
    if !groups.is_multiple_of(threads) && n >= threads {
        groups = groups.next_multiple_of(threads).min(n);
        size = n.div_ceil(groups);
        groups = n.div_ceil(size);
    }
    (size, groups)
}

/// Runs `body(acc, group)` for every group, in parallel over the current rayon pool when there
/// are at least as many groups as threads, and merges the per-thread accumulators.
/// `body` also receives how many threads its own inner GEMMs may use.
///
/// The groups are split into one fixed, contiguous run per thread and the accumulators merged in
/// run order, so the floating-point sums, and with them a whole training run, are the same from
/// one run to the next at a given thread count (rayon's fold/reduce let work stealing decide
/// which groups share an accumulator, and results moved in the 7th digit).
pub(crate) fn run_groups<A: Send>(
    groups: usize,
    init: impl Fn() -> A + Sync + Send,
    body: impl Fn(&mut A, usize, usize) + Sync + Send,
    merge: impl Fn(A, A) -> A + Sync + Send,
) -> A {
    let threads = rayon::current_num_threads();
    if threads > 1 && groups >= threads {
        let runs: Vec<A> = (0..threads)
            .into_par_iter()
            .map(|t| {
                let mut acc = init();
                for g in groups * t / threads..groups * (t + 1) / threads {
                    body(&mut acc, g, 1);
                }
                acc
            })
            .collect();
        runs.into_iter().reduce(&merge).unwrap_or_else(&init)
    } else {
        let mut acc = init();
        for g in 0..groups {
            body(&mut acc, g, threads);
        }
        acc
    }
}

/// Runs `f` compiled for AVX2 + FMA when the CPU has them (element loops inlined into it
/// vectorise 8 wide), else as it is. The results are the same either way: Rust never contracts a
/// multiply and an add into an FMA by itself.
#[inline(always)]
pub(crate) fn simd<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has the features `with_avx2` is compiled for.
        return unsafe { with_avx2(f) };
    }
    f()
}

/// # Safety
/// The CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn with_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// Element-wise `a += b`.
pub(crate) fn add_into(a: &mut [f32], b: &[f32]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += *y;
    }
}

/// Sum with eight independent lanes (vectorises), accumulated in f64 across chunks.
pub(crate) fn sum(xs: &[f32]) -> f64 {
    let mut lanes = [0f32; 8];
    let chunks = xs.chunks_exact(8);
    let rest = chunks.remainder();
    let mut total = 0f64;
    for (i, c) in chunks.enumerate() {
        for j in 0..8 {
            lanes[j] += c[j];
        }
        if i % 512 == 511 {
            total += lanes.iter().map(|&v| v as f64).sum::<f64>();
            lanes = [0.0; 8];
        }
    }
    total += lanes.iter().map(|&v| v as f64).sum::<f64>();
    total + rest.iter().map(|&v| v as f64).sum::<f64>()
}

/// Sum of `f(x_i, y_i)` with eight lanes, accumulated in f64 across chunks.
pub(crate) fn sum2(xs: &[f32], ys: &[f32], f: impl Fn(f32, f32) -> f32) -> f64 {
    debug_assert_eq!(xs.len(), ys.len());
    let mut lanes = [0f32; 8];
    let mut total = 0f64;
    let n8 = xs.len() / 8 * 8;
    for (i, (cx, cy)) in xs[..n8].chunks_exact(8).zip(ys[..n8].chunks_exact(8)).enumerate() {
        for j in 0..8 {
            lanes[j] += f(cx[j], cy[j]);
        }
        if i % 512 == 511 {
            total += lanes.iter().map(|&v| v as f64).sum::<f64>();
            lanes = [0.0; 8];
        }
    }
    total += lanes.iter().map(|&v| v as f64).sum::<f64>();
    total
        + xs[n8..]
            .iter()
            .zip(&ys[n8..])
            .map(|(&x, &y)| f(x, y) as f64)
            .sum::<f64>()
}

/// Opt-in per-kernel timing (env NORBVAE_KERNEL_PROFILE=1), printed by `profile_report`; used to
/// see where a training step's time goes without a profiler. On one thread it is the calling
/// thread's CPU time (immune to other work on the machine); on a larger pool, wall time, since
/// the caller's own CPU time would leave out its helpers and count its waiting.
pub(crate) fn profiled<R>(label: impl FnOnce() -> String, f: impl FnOnce() -> R) -> R {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if !*ON.get_or_init(|| std::env::var_os("NORBVAE_KERNEL_PROFILE").is_some()) {
        return f();
    }
    let wall = rayon::current_num_threads() > 1;
    let (t, start) = (thread_cpu_ns(), std::time::Instant::now());
    let r = f();
    let ns = if wall {
        start.elapsed().as_nanos() as u64
    } else {
        thread_cpu_ns().saturating_sub(t)
    };
    let mut table = PROFILE.lock().unwrap_or_else(|e| e.into_inner());
    let e = table.entry(label()).or_insert((0, 0));
    e.0 += ns;
    e.1 += 1;
    r
}

static PROFILE: std::sync::Mutex<std::collections::BTreeMap<String, (u64, u64)>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// The accumulated kernel times, one line per label (empty unless profiling was on).
pub fn profile_report() -> String {
    let table = PROFILE.lock().unwrap_or_else(|e| e.into_inner());
    let total: u64 = table.values().map(|v| v.0).sum();
    let mut rows: Vec<_> = table.iter().collect();
    rows.sort_by_key(|(_, v)| std::cmp::Reverse(v.0));
    let mut s = format!("kernel time total {:.1} ms\n", total as f64 / 1e6);
    for (k, (ns, calls)) in rows {
        s += &format!("{:>9.2} ms {:>5} calls  {k}\n", *ns as f64 / 1e6, calls);
    }
    s
}

/// Nanoseconds this thread has run on a CPU (Linux schedstat; 0 where unavailable).
pub(crate) fn thread_cpu_ns() -> u64 {
    read_schedstat("/proc/thread-self/schedstat")
}

/// Nanoseconds all threads of this process have run on a CPU (Linux; 0 where unavailable).
/// On a machine shared with other work this, unlike wall time, excludes time spent waiting.
pub fn process_cpu_ns() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    dir.flatten()
        .map(|e| read_schedstat(&format!("{}/schedstat", e.path().display())))
        .sum()
}

fn read_schedstat(path: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// A `Vec<f32>` of length `len` filled by `fill`, which receives a pointer to `len` writable,
/// uninitialised floats and must write every one of them (no zero-fill beforehand).
///
/// The kernels' outputs are built this way because zero-filling them first would be a pass over
/// memory that the kernel then overwrites anyway (the training loop reuses its freed heap, so
/// the zeros would not come free from fresh pages).
///
/// # Safety
/// When `fill` returns, it must have written all `len` elements, and it must not read an element
/// before writing it. (If `fill` panics, the buffer is freed unread.)
pub(crate) unsafe fn filled_vec(len: usize, fill: impl FnOnce(SyncPtr)) -> Vec<f32> {
    let mut v: Vec<f32> = Vec::with_capacity(len);
    fill(SyncPtr(v.as_mut_ptr()));
    // SAFETY: the capacity is `len`, and `fill` initialised all `len` elements (the caller's
    // contract).
    unsafe { v.set_len(len) };
    v
}
