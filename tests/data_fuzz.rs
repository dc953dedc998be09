//! Fuzz the smallNORB and IDX header parsers with random and mutated files, plain and gzipped: no
//! input may panic, and no input may make the reader allocate more than the file can hold (a
//! counting allocator records the largest single allocation during each parse).
//! Default: 3,000 cases; set PROPTEST_CASES for a longer run.
use norbvae::data::idx::read_idx_from;
use norbvae::data::norb::{read_matrix, MatHeader, MatType};
use norbvae::data::source::Source;
use proptest::prelude::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;
static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call goes to System unchanged (only a size is recorded on the way), so System's
// guarantees are this allocator's.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LARGEST.fetch_max(l.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc`, passed on.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        LARGEST.fetch_max(l.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc_zeroed`, passed on.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LARGEST.fetch_max(new, Ordering::Relaxed);
        // SAFETY: the caller's contract for `realloc` (p came from this allocator, i.e. System).
        unsafe { System.realloc(p, l, new) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: the caller's contract for `dealloc` (p came from this allocator, i.e. System).
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Fixed allowance for the decoders' own state (gzip window, buffers), independent of any header.
const DECODER_ALLOWANCE: usize = 256 * 1024;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// A well-formed smallNORB matrix file with up to a few hundred data bytes.
fn valid_matrix() -> impl Strategy<Value = Vec<u8>> {
    (0usize..5, prop::collection::vec(0usize..6, 1..6)).prop_map(|(t, dims)| {
        let dtype = [
            MatType::U8,
            MatType::I32,
            MatType::F32,
            MatType::F64,
            MatType::I16,
        ][t];
        let h = MatHeader { dtype, dims };
        let mut b = h.to_bytes();
        let n = h.elements().unwrap() * dtype.elem_size();
        b.extend((0..n).map(|i| i as u8));
        b
    })
}

/// A well-formed IDX file.
fn valid_idx() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(0u32..6, 1..4).prop_map(|dims| {
        let mut b = vec![0, 0, 8, dims.len() as u8];
        for d in &dims {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b.extend((0..dims.iter().product::<u32>()).map(|i| i as u8));
        b
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    Set(usize, u8),
    /// Overwrite four bytes with a big little/big-endian integer (a hostile dimension).
    Huge(usize, u32),
    Truncate(usize),
    Append(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Mutation::Set(i, v)),
        (any::<usize>(), any::<u32>()).prop_map(|(i, v)| Mutation::Huge(i, v)),
        any::<usize>().prop_map(Mutation::Truncate),
        prop::collection::vec(any::<u8>(), 1..16).prop_map(Mutation::Append),
    ]
}

fn apply(mut b: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        match m {
            Mutation::Set(i, v) if !b.is_empty() => {
                let i = i % b.len();
                b[i] = *v;
            }
            Mutation::Huge(i, v) if b.len() >= 4 => {
                let i = (i % (b.len() / 4)) * 4;
                b[i..i + 4].copy_from_slice(&v.to_le_bytes());
            }
            Mutation::Truncate(i) if !b.is_empty() => b.truncate(i % b.len()),
            Mutation::Append(x) => b.extend_from_slice(x),
            _ => {}
        }
    }
    b
}

/// A fuzz input: bytes, and whether they are read as a `.gz` file.
fn input() -> impl Strategy<Value = (Vec<u8>, bool)> {
    let base = prop_oneof![
        valid_matrix(),
        valid_idx(),
        prop::collection::vec(any::<u8>(), 0..128),
    ];
    (base, prop::collection::vec(mutation(), 0..4), 0u8..3).prop_map(|(b, muts, how)| match how {
        // Plain file, mutated.
        0 => (apply(b, &muts), false),
        // Mutated, then gzipped: a valid gzip stream of bad content.
        1 => (gzip(&apply(b, &muts)), true),
        // Gzipped, then mutated: a corrupt gzip stream.
        _ => (apply(gzip(&b), &muts), true),
    })
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn header_parsers_never_panic_or_overallocate((bytes, gz) in input()) {
        let len = bytes.len();
        // What a file of this length can decode to.
        let bound = if gz { len * 1032 + 1024 } else { len };
        for parser in 0..2 {
            let mut src = Source::from_bytes(Path::new("fuzz.mat"), gz, bytes.clone());
            LARGEST.store(0, Ordering::Relaxed);
            let decoded = if parser == 0 {
                read_matrix(&mut src).map(|(_, d)| d.len())
            } else {
                read_idx_from(&mut src).map(|a| a.data.len())
            };
            let largest = LARGEST.load(Ordering::Relaxed);
            prop_assert!(largest <= bound.max(DECODER_ALLOWANCE),
                "parser {parser} allocated {largest} bytes for a {len}-byte file");
            if let Ok(d) = decoded {
                prop_assert!(d <= bound);
            }
            if let Err(e) = decoded {
                prop_assert!(e.to_string().starts_with("fuzz.mat: "), "{e}");
            }
        }
    }
}
