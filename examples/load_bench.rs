//! Time and peak memory to load a full-size smallNORB set.
//!
//!   cargo run --release --example load_bench -- DIR --write     # write 2 x 24,300 patterned pairs (.mat.gz)
//!   cargo run --release --example load_bench -- DIR raw         # norb::read_split(training): raw bytes
//!   cargo run --release --example load_bench -- DIR load [CAMERA] [SIZE]   # data::load, all splits
//!
//! Run one measurement per process: peak RSS (VmHWM) is for the whole process.
use anyhow::{bail, Context, Result};
use norbvae::data::norb::{read_split, write_split, NorbPart};
use norbvae::data::{load, Camera, DataOptions};
use std::path::Path;
use std::time::Instant;

const N: usize = 24_300;
const SIDE: usize = 96;

fn vm_hwm_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Smooth shapes with a little noise: compresses roughly like photographs, unlike pure noise.
fn write_patterned(dir: &Path) -> Result<()> {
    for (part, inst) in [
        (NorbPart::Training, [4, 6, 7, 8, 9]),
        (NorbPart::Testing, [0, 1, 2, 3, 5]),
    ] {
        let t = Instant::now();
        let mut dat = Vec::with_capacity(N * 2 * SIDE * SIDE);
        let mut cat = Vec::with_capacity(N);
        let mut info = Vec::with_capacity(N);
        let mut h: u32 = 0x9E3779B9;
        for i in 0..N {
            let (c, k, e, a, l) = (i % 5, (i / 5) % 5, (i / 25) % 9, (i / 225) % 18, (i / 4050) % 6);
            for cam in 0..2 {
                let (cx, cy) = (30.0 + a as f32 * 2.0 + cam as f32 * 4.0, 30.0 + e as f32 * 4.0);
                let r2 = (10.0 + c as f32 * 3.0 + k as f32).powi(2);
                for y in 0..SIDE {
                    for x in 0..SIDE {
                        h ^= h << 13;
                        h ^= h >> 17;
                        h ^= h << 5;
                        let d2 = (x as f32 - cx).powi(2) + (y as f32 - cy).powi(2);
                        let base = if d2 < r2 {
                            150.0 + 15.0 * l as f32
                        } else {
                            40.0 + y as f32 * 0.3
                        };
                        dat.push((base + (h % 9) as f32).min(255.0) as u8);
                    }
                }
            }
            cat.push(c as i32);
            info.push([inst[k], e as i32, 2 * a as i32, l as i32]);
        }
        write_split(dir, part, &dat, SIDE, &cat, &info, true)?;
        println!(
            "wrote {part:?} ({N} pairs, gzip) in {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = Path::new(
        args.first()
            .context("usage: load_bench DIR [--write | raw | load [CAMERA] [SIZE]]")?,
    );
    let mode = args.get(1).map(String::as_str).unwrap_or("load");
    let before = vm_hwm_mb();
    let t = Instant::now();
    match mode {
        "--write" => return write_patterned(dir),
        "raw" => {
            let raw = read_split(dir, NorbPart::Training)?;
            let secs = t.elapsed().as_secs_f64();
            println!(
                "read_split(training): {} pairs of {}x{} ({:.0} MB decoded) in {secs:.2} s = {:.0} MB/s",
                raw.n,
                raw.side,
                raw.side,
                raw.dat.len() as f64 / 1e6,
                raw.dat.len() as f64 / 1e6 / secs
            );
        }
        "load" => {
            let camera = match args.get(2).map(String::as_str) {
                None | Some("left") => Camera::Left,
                Some("right") => Camera::Right,
                Some("both-channels") => Camera::BothChannels,
                Some("both-samples") => Camera::BothSamples,
                Some(c) => bail!("unknown camera {c}"),
            };
            let image_size = args.get(3).map(|s| s.parse()).transpose()?;
            let opts = DataOptions {
                spec: format!("norb:{}", dir.display()),
                camera,
                image_size,
                ..DataOptions::default()
            };
            let s = load(&opts)?;
            let secs = t.elapsed().as_secs_f64();
            let floats = s.train.images.len() + s.val.images.len() + s.test.images.len();
            println!(
                "data::load({camera:?}, size {:?}): train {} val {} test {} of {}x{}x{} ({:.0} MB of f32) in {secs:.2} s",
                image_size,
                s.train.n,
                s.val.n,
                s.test.n,
                s.train.channels,
                s.train.height,
                s.train.width,
                floats as f64 * 4.0 / 1e6
            );
        }
        m => bail!("unknown mode {m}"),
    }
    println!(
        "peak RSS (VmHWM): {:.0} MB (at start {before:.0} MB)",
        vm_hwm_mb()
    );
    Ok(())
}
