//! Synthetic NORB: determinism, smallNORB structure, images that respond to every factor,
//! a written set read back through the smallNORB reader, and the `norbvae synth` command.
use indicatif::ProgressBar;
use norbvae::data::norb::{self, NorbPart};
use norbvae::data::synth::{self, render_one, render_part, SynthParams, ValidSynthParams};
use std::process::Command;

/// 5 categories x 10 instances x 2 azimuths x 1 elevation x 2 lightings at 16 x 16: 100 pairs per half.
fn tiny(seed: u64) -> ValidSynthParams {
    SynthParams {
        seed,
        side: 16,
        elevations: vec![3],
        azimuths: vec![0, 18],
        lightings: vec![1, 5],
        ..SynthParams::default()
    }
    .check()
    .unwrap()
}

fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).abs())
        .sum::<f64>()
        / a.len() as f64
}

#[test]
fn same_seed_same_bytes_whatever_the_threads_and_other_seed_differs() {
    let p = tiny(7);
    let hidden = ProgressBar::hidden();
    let a = render_part(&p, NorbPart::Training, &hidden);
    let one_thread = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let b = one_thread.install(|| render_part(&p, NorbPart::Training, &hidden));
    assert_eq!(a, b);
    let c = render_part(&tiny(8), NorbPart::Training, &hidden);
    assert_eq!((a.cat.clone(), a.info.clone()), (c.cat.clone(), c.info.clone()));
    // Another seed means other toys, not just other noise: the images differ well beyond noise.
    assert!(
        mean_abs_diff(&a.dat, &c.dat) > 3.0,
        "{}",
        mean_abs_diff(&a.dat, &c.dat)
    );
}

#[test]
fn structure_matches_smallnorb() {
    let full = SynthParams::default().check().unwrap();
    assert_eq!(full.count(NorbPart::Training), 24_300);
    assert_eq!(full.count(NorbPart::Testing), 24_300);
    assert_eq!(full.instances_of(NorbPart::Training), vec![4, 6, 7, 8, 9]);
    assert_eq!(full.instances_of(NorbPart::Testing), vec![0, 1, 2, 3, 5]);

    let p = tiny(1);
    let hidden = ProgressBar::hidden();
    for (part, instances) in [
        (NorbPart::Training, [4, 6, 7, 8, 9]),
        (NorbPart::Testing, [0, 1, 2, 3, 5]),
    ] {
        let r = render_part(&p, part, &hidden);
        assert_eq!(r.n, 100);
        assert_eq!(r.dat.len(), 100 * 2 * 16 * 16);
        assert_eq!((r.cat.len(), r.info.len()), (100, 100));
        for c in 0..5 {
            assert_eq!(r.cat.iter().filter(|&&x| x == c).count(), 20, "category {c}");
        }
        for (k, info) in r.info.iter().enumerate() {
            assert!(
                instances.contains(&(info[0] as usize)),
                "{part:?} pair {k}: instance {}",
                info[0]
            );
            assert_eq!(info[1], 3);
            assert!(info[2] == 0 || info[2] == 18);
            assert!(info[3] == 1 || info[3] == 5);
        }
        // Every (category, instance, azimuth, lighting) appears exactly once.
        let mut keys: Vec<_> = r.cat.iter().zip(&r.info).map(|(c, i)| (*c, *i)).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), 100);
    }
}

#[test]
fn a_subset_renders_the_same_pixels_as_the_full_set() {
    let hidden = ProgressBar::hidden();
    let r = render_part(&tiny(3), NorbPart::Testing, &hidden);
    let pair = 2 * 16 * 16;
    for k in [0, 37, 99] {
        let [inst, e, a, l] = r.info[k].map(|v| v as usize);
        let alone = render_one(3, 16, r.cat[k] as usize, inst, e, a, l);
        assert_eq!(&r.dat[k * pair..(k + 1) * pair], &alone[..], "pair {k}");
    }
}

#[test]
fn images_respond_to_every_factor() {
    let side = 48;
    let base = render_one(0, side, 3, 4, 2, 6, 0);
    let (left, right) = base.split_at(side * side);
    // An object sits in the middle of a plain background: the centre differs from the corners.
    let corner = left[0] as f64;
    let centre: f64 = (20..28)
        .flat_map(|y| (20..28).map(move |x| (y, x)))
        .map(|(y, x)| (left[y * side + x] as f64 - corner).abs())
        .sum::<f64>()
        / 64.0;
    assert!(centre > 10.0, "centre differs from the background by {centre}");
    let d = |other: &[u8]| mean_abs_diff(&base[..side * side], &other[..side * side]);
    assert!(mean_abs_diff(left, right) > 1.5, "stereo views too alike");
    assert!(d(&render_one(0, side, 3, 4, 2, 16, 0)) > 3.0, "azimuth");
    assert!(d(&render_one(0, side, 3, 4, 8, 6, 0)) > 3.0, "elevation");
    assert!(d(&render_one(0, side, 3, 4, 2, 6, 5)) > 3.0, "lighting");
    assert!(d(&render_one(0, side, 3, 6, 2, 6, 0)) > 3.0, "instance");
    assert!(d(&render_one(0, side, 4, 4, 2, 6, 0)) > 3.0, "category");
}

#[test]
fn write_small_reads_back_through_the_norb_reader() {
    let dir = tempfile::tempdir().unwrap();
    synth::write_small(dir.path(), 24, 5).unwrap();
    let p = synth::small_params(24, 5).check().unwrap();
    let pair = 2 * 24 * 24;
    for part in [NorbPart::Training, NorbPart::Testing] {
        let raw = norb::read_split(dir.path(), part).unwrap();
        assert_eq!((raw.n, raw.side), (5 * 5 * 3 * 6 * 2, 24));
        assert_eq!((raw.n, raw.dat.len()), (p.count(part), raw.n * pair));
        let mut expected_info = Vec::new();
        for c in 0..5 {
            for &i in &p.instances_of(part) {
                for e in [0, 4, 8] {
                    for a in [0, 6, 12, 18, 24, 30] {
                        for l in [0, 3] {
                            expected_info.push((c, [i as i32, e, a, l]));
                        }
                    }
                }
            }
        }
        let got: Vec<_> = raw.cat.iter().copied().zip(raw.info.iter().copied()).collect();
        assert_eq!(got, expected_info);
        for k in [0, raw.n / 3, raw.n - 1] {
            let [inst, e, a, l] = raw.info[k].map(|v| v as usize);
            let alone = render_one(5, 24, raw.cat[k] as usize, inst, e, a, l);
            assert!(
                raw.dat[k * pair..(k + 1) * pair] == alone[..],
                "pair {k} differs after the round trip"
            );
        }
    }
}

fn norbvae(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_norbvae"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn cli_writes_a_subset_and_rejects_bad_options() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("norb");
    let o = norbvae(&[
        "synth",
        "--out",
        out.to_str().unwrap(),
        "--size",
        "16",
        "--seed",
        "2",
        "--instances",
        "1,4",
        "--elevations",
        "0",
        "--azimuths",
        "0,34",
        "--lightings",
        "2",
        "--no-gzip",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out
        .join("smallnorb-5x46789x9x18x6x2x96x96-training-dat.mat")
        .exists());
    let raw = norb::read_split(&out, NorbPart::Testing).unwrap();
    assert_eq!((raw.n, raw.side), (10, 16));
    assert!(raw
        .info
        .iter()
        .all(|i| i[0] == 1 && i[1] == 0 && (i[2] == 0 || i[2] == 34) && i[3] == 2));
    assert_eq!(&raw.dat[..2 * 16 * 16], &render_one(2, 16, 0, 1, 0, 0, 2)[..]);

    for (bad, needle) in [
        (vec!["--instances", "3,12"], "--instances: 12 is out of range"),
        (vec!["--size", "0"], "--size: 0 is out of range"),
        (vec!["--azimuths", "3"], "--azimuths: 3 is out of range"),
        (vec!["--instances", "4,6"], "at least one training instance"),
    ] {
        let bad_dir = dir.path().join("bad");
        let mut args = vec!["synth", "--out", bad_dir.to_str().unwrap()];
        args.extend(bad.iter().copied());
        let o = norbvae(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{bad:?} accepted");
        assert!(err.contains(needle), "{bad:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{bad:?}: {err}");
        assert!(!bad_dir.exists(), "{bad:?} left output behind");
    }
}
