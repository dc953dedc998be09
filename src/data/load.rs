//! `load`: dataset spec + options -> preprocessed train/val/test [`ImageSet`]s.
//!
//! Records (a NORB stereo pair, an IDX image) are assigned to splits before any pixels are read;
//! the pixels are then streamed in batches and converted straight into each split's f32 buffer, so
//! the raw bytes are never held whole next to the result.
use super::error::{DataError, DataResult};
use super::idx;
use super::norb::{self, DatStream, NorbPart};
use super::resize::AreaResize;
use super::source::check_data_dir;
use super::spec::{DataSpec, FASHION_MNIST_CLASSES, NORB_CLASSES};
use super::split::{limit_subset, val_by_fraction, val_by_instances};
use super::{Camera, DataOptions, ImageSet, NorbFactors, Split, Splits};
use rayon::prelude::*;
use std::path::Path;

/// Records decoded per batch before converting them in parallel.
const BATCH: usize = 256;

/// Load and preprocess the dataset `opts` describes.
pub fn load(opts: &DataOptions) -> DataResult<Splits> {
    load_with(opts, true)
}

/// One split as `summarize` describes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SplitSummary {
    pub count: usize,
    /// [channels, height, width]
    pub image_shape: [usize; 3],
    /// Images per class (index = label).
    pub label_counts: Vec<usize>,
}

/// What `load` would return, without the pixels.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DataSummary {
    pub name: String,
    pub num_classes: usize,
    pub class_names: Vec<String>,
    pub train: SplitSummary,
    pub val: SplitSummary,
    pub test: SplitSummary,
}

/// Counts, shapes and label counts of every split after preprocessing, the same as `load` gives,
/// from the headers and labels alone: NORB images are not decoded (so damage inside the image data
/// of a gzipped `dat` file is only found by `load`).
pub fn summarize(opts: &DataOptions) -> DataResult<DataSummary> {
    let s = load_with(opts, false)?;
    let split = |sp: Split| {
        let set = s.get(sp);
        SplitSummary {
            count: set.n,
            image_shape: [set.channels, set.height, set.width],
            label_counts: s.label_counts(sp),
        }
    };
    Ok(DataSummary {
        name: s.name.clone(),
        num_classes: s.num_classes,
        class_names: s.class_names.clone(),
        train: split(Split::Train),
        val: split(Split::Val),
        test: split(Split::Test),
    })
}

/// `pixels == false` leaves every `images` vector empty (only for `summarize`, never returned to users).
fn load_with(opts: &DataOptions, pixels: bool) -> DataResult<Splits> {
    let spec = DataSpec::parse(&opts.spec)?;
    if opts.limit == Some(0) {
        return Err(DataError::option("limit", "must be at least 1"));
    }
    if opts.image_size == Some(0) {
        return Err(DataError::option("image_size", "must be at least 1"));
    }
    let mut splits = match &spec {
        DataSpec::Norb(dir) => load_norb(dir, opts, pixels)?,
        DataSpec::Idx { dir, fashion } => load_idx(dir, *fashion, opts, pixels)?,
    };
    splits.name = opts.spec.trim().to_string();
    Ok(splits)
}

/// How a record's planes become samples: which planes, how many samples they make, and channels
/// per sample. Output per record is `planes.len()` resized planes, contiguous.
#[derive(Debug, Clone)]
struct Layout {
    planes: Vec<usize>,
    samples_per_record: usize,
    channels: usize,
}

impl Layout {
    fn for_camera(camera: Camera) -> Self {
        let (planes, samples_per_record, channels) = match camera {
            Camera::Left => (vec![0], 1, 1),
            Camera::Right => (vec![1], 1, 1),
            Camera::BothChannels => (vec![0, 1], 1, 2),
            Camera::BothSamples => (vec![0, 1], 2, 1),
        };
        Self {
            planes,
            samples_per_record,
            channels,
        }
    }
}

/// The output side, checked against the native size (downscaling only).
fn out_side(opts: &DataOptions, height: usize, width: usize) -> DataResult<(usize, usize)> {
    match opts.image_size {
        None => Ok((height, width)),
        Some(s) if height != width => Err(DataError::option(
            "image_size",
            format!("{s} asks for square images but the data is {height}x{width}"),
        )),
        Some(s) if s > height => Err(DataError::option(
            "image_size",
            format!("{s} is larger than the native {height}x{width} (only downscaling is supported)"),
        )),
        Some(s) => Ok((s, s)),
    }
}

/// Kept records per split (sorted), after the validation carve and `limit`.
fn plan_splits(
    is_val: &[bool],
    n_test: usize,
    limit: Option<usize>,
    samples_per_record: usize,
    seed: u64,
) -> [Vec<usize>; 3] {
    let train: Vec<usize> = (0..is_val.len()).filter(|&i| !is_val[i]).collect();
    let val: Vec<usize> = (0..is_val.len()).filter(|&i| is_val[i]).collect();
    let test: Vec<usize> = (0..n_test).collect();
    let lim = |v: Vec<usize>, label: &str| match limit {
        Some(l) => limit_subset(v, l.div_ceil(samples_per_record), seed, label),
        None => v,
    };
    [
        lim(train, "limit-train"),
        lim(val, "limit-val"),
        lim(test, "limit-test"),
    ]
}

/// An empty set with room for `records` records under `layout`.
fn empty_set(records: usize, layout: &Layout, h: usize, w: usize, pixels: bool) -> ImageSet {
    let n = records * layout.samples_per_record;
    ImageSet {
        images: if pixels {
            vec![0.0; n * layout.channels * h * w]
        } else {
            Vec::new()
        },
        n,
        channels: layout.channels,
        height: h,
        width: w,
        labels: Vec::with_capacity(n),
        factors: None,
    }
}

/// Stream every record through `read_batch` and convert those in `kept` into `sets`.
/// `read_batch(buf, count)` fills `buf` with the next `count` records.
#[allow(clippy::too_many_arguments)]
fn fill_sets(
    n_records: usize,
    record_len: usize,
    in_h: usize,
    in_w: usize,
    layout: &Layout,
    resize: &AreaResize,
    kept: &[&[usize]],
    sets: &mut [&mut ImageSet],
    mut read_batch: impl FnMut(&mut [u8], usize) -> DataResult<()>,
    progress: &indicatif::ProgressBar,
) -> DataResult<()> {
    // dest[i] = (set, slot) for each kept record.
    let mut dest: Vec<Option<(usize, usize)>> = vec![None; n_records];
    for (s, recs) in kept.iter().enumerate() {
        for (slot, &r) in recs.iter().enumerate() {
            dest[r] = Some((s, slot));
        }
    }
    let plane = in_h * in_w;
    let out_record = layout.planes.len() * resize.out_len();
    let mut buf = vec![0u8; BATCH.min(n_records.max(1)) * record_len];
    let mut start = 0;
    while start < n_records {
        let count = BATCH.min(n_records - start);
        let bytes = &mut buf[..count * record_len];
        read_batch(bytes, count)?;
        let converted: Vec<(usize, usize, Vec<f32>)> = bytes
            .par_chunks_exact(record_len)
            .enumerate()
            .filter_map(|(k, rec)| {
                let (s, slot) = dest[start + k]?;
                let mut out = vec![0f32; out_record];
                for (o, &p) in out.chunks_exact_mut(resize.out_len()).zip(&layout.planes) {
                    resize.apply(&rec[p * plane..(p + 1) * plane], o);
                }
                Some((s, slot, out))
            })
            .collect();
        for (s, slot, out) in converted {
            sets[s].images[slot * out_record..(slot + 1) * out_record].copy_from_slice(&out);
        }
        start += count;
        progress.inc(count as u64);
    }
    Ok(())
}

/// Refuse before allocating when `images` decoded images of `dim` f32 pixels cannot fit in the
/// memory available (the counts come from headers, which are checked against the file sizes but
/// can still describe more than this machine holds).
fn check_memory(path: &Path, images: usize, dim: usize) -> DataResult<()> {
    use crate::util::mem::{available_bytes, human_bytes};
    let need = (images as u64).saturating_mul(dim as u64).saturating_mul(4);
    match available_bytes() {
        Some(avail) if need > avail => Err(DataError::format(
            path,
            format!(
                "decoding {images} images of {dim} pixels needs {} of memory, more than the {} available \
                 (set data.limit or a smaller data.image_size)",
                human_bytes(need),
                human_bytes(avail)
            ),
        )),
        _ => Ok(()),
    }
}

/// Keep exactly `limit` samples (BothSamples may have one too many after rounding up records).
fn truncate(set: &mut ImageSet, limit: Option<usize>) {
    if let Some(l) = limit {
        if set.n > l {
            set.n = l;
            set.images.truncate(l * set.dim());
            set.labels.truncate(l);
            if let Some(f) = set.factors.as_mut() {
                f.truncate(l);
            }
        }
    }
}

fn load_norb(dir: &Path, opts: &DataOptions, pixels: bool) -> DataResult<Splits> {
    if !check_data_dir(dir)? {
        return Err(DataError::Missing {
            path: dir.to_path_buf(),
            hint: " (smallNORB directory: pass --data norb:DIR, write a synthetic set with \
                   `norbvae synth --out DIR`, or fetch the real one with \
                   `norbvae data download smallnorb --to DIR`)"
                .into(),
        });
    }
    // Open both halves first: header and label errors surface before the long image read.
    let (train_labels, train_stream) = norb::open_split(dir, NorbPart::Training)?;
    let (test_labels, test_stream) = norb::open_split(dir, NorbPart::Testing)?;
    if train_labels.side != test_labels.side {
        return Err(DataError::format(
            test_stream.path(),
            format!(
                "dimension mismatch: testing images are {0}x{0}, training images {1}x{1}",
                test_labels.side, train_labels.side
            ),
        ));
    }
    let side = train_labels.side;
    let (oh, ow) = out_side(opts, side, side)?;
    let layout = Layout::for_camera(opts.camera);
    let is_val = match &opts.val_instances {
        Some(list) => {
            let inst: Vec<u8> = train_labels.info.iter().map(|r| r[0] as u8).collect();
            val_by_instances(&inst, list)?
        }
        None => val_by_fraction(train_labels.n, opts.val_fraction, opts.seed)?,
    };
    let [train_k, val_k, test_k] = plan_splits(
        &is_val,
        test_labels.n,
        opts.limit,
        layout.samples_per_record,
        opts.seed,
    );

    let label_sets = |labels: &norb::NorbLabels, recs: &[usize]| -> ImageSet {
        let mut set = empty_set(recs.len(), &layout, oh, ow, pixels);
        let mut factors = Vec::with_capacity(set.n);
        for &r in recs {
            let i = labels.info[r];
            // open_split checked every field's range, so these fit in u8.
            let f = NorbFactors {
                instance: i[0] as u8,
                elevation: i[1] as u8,
                azimuth: i[2] as u8,
                lighting: i[3] as u8,
            };
            for _ in 0..layout.samples_per_record {
                set.labels.push(labels.cat[r] as u32);
                factors.push(f);
            }
        }
        set.factors = Some(factors);
        set
    };
    if pixels {
        let images = (train_k.len() + val_k.len() + test_k.len()) * layout.samples_per_record;
        check_memory(train_stream.path(), images, layout.channels * oh * ow)?;
    }
    let mut train = label_sets(&train_labels, &train_k);
    let mut val = label_sets(&train_labels, &val_k);
    let mut test = label_sets(&test_labels, &test_k);

    let resize = AreaResize::new(side, side, oh, ow);
    let stream_into = |mut stream: DatStream, kept: &[&[usize]], sets: &mut [&mut ImageSet], what: &str| {
        let bar = crate::util::progress::bar(stream.n() as u64, what, "images");
        let n = stream.n();
        let len = stream.pair_len();
        fill_sets(
            n,
            len,
            side,
            side,
            &layout,
            &resize,
            kept,
            sets,
            |buf, count| {
                for rec in buf.chunks_exact_mut(len).take(count) {
                    stream.next_pair(rec)?;
                }
                Ok(())
            },
            &bar,
        )?;
        // All n pairs read: this checks that nothing follows them.
        let mut none = [];
        stream.next_pair(&mut none)?;
        bar.finish_and_clear();
        DataResult::Ok(())
    };
    if pixels {
        stream_into(
            train_stream,
            &[&train_k, &val_k],
            &mut [&mut train, &mut val],
            "reading training images",
        )?;
        stream_into(test_stream, &[&test_k], &mut [&mut test], "reading test images")?;
    }
    for set in [&mut train, &mut val, &mut test] {
        truncate(set, opts.limit);
    }
    Ok(Splits {
        name: String::new(),
        train,
        val,
        test,
        num_classes: NORB_CLASSES.len(),
        class_names: NORB_CLASSES.iter().map(|s| s.to_string()).collect(),
    })
}

fn load_idx(dir: &Path, fashion: bool, opts: &DataOptions, pixels: bool) -> DataResult<Splits> {
    if opts.camera != Camera::Left {
        return Err(DataError::option(
            "camera",
            format!(
                "{:?} applies to NORB only; '{}' has one view per image",
                opts.camera, opts.spec
            ),
        ));
    }
    if opts.val_instances.is_some() {
        return Err(DataError::option(
            "val_instances",
            format!(
                "applies to NORB only; '{}' has no instances (use val_fraction)",
                opts.spec
            ),
        ));
    }
    if !check_data_dir(dir)? {
        return Err(DataError::Missing {
            path: dir.to_path_buf(),
            hint: if fashion {
                " (install Debian's dataset-fashion-mnist package)".into()
            } else {
                " (IDX directory)".into()
            },
        });
    }
    let files = idx::locate_files(dir)?;
    let train_raw = idx::read_images(&files.train_images, &files.train_labels)?;
    let test_raw = idx::read_images(&files.test_images, &files.test_labels)?;
    let (h, w) = (train_raw.height, train_raw.width);
    if (test_raw.height, test_raw.width) != (h, w) {
        return Err(DataError::format(
            &files.test_images,
            format!(
                "dimension mismatch: test images are {}x{}, training images {h}x{w}",
                test_raw.height, test_raw.width
            ),
        ));
    }
    if fashion {
        for (raw, path) in [(&train_raw, &files.train_labels), (&test_raw, &files.test_labels)] {
            if let Some(bad) = raw
                .labels
                .iter()
                .find(|&&l| l as usize >= FASHION_MNIST_CLASSES.len())
            {
                return Err(DataError::format(
                    path,
                    format!("label {bad} is not a Fashion-MNIST class (0..=9)"),
                ));
            }
        }
    }
    let (oh, ow) = out_side(opts, h, w)?;
    let layout = Layout::for_camera(Camera::Left);
    let is_val = val_by_fraction(train_raw.n, opts.val_fraction, opts.seed)?;
    let [train_k, val_k, test_k] = plan_splits(&is_val, test_raw.n, opts.limit, 1, opts.seed);
    if pixels {
        check_memory(
            &files.train_images,
            train_k.len() + val_k.len() + test_k.len(),
            oh * ow,
        )?;
    }
    let resize = AreaResize::new(h, w, oh, ow);
    let build = |raw: &idx::IdxImages, groups: &[&[usize]]| -> DataResult<Vec<ImageSet>> {
        let mut sets: Vec<ImageSet> = groups
            .iter()
            .map(|recs| {
                let mut s = empty_set(recs.len(), &layout, oh, ow, pixels);
                s.labels = recs.iter().map(|&r| raw.labels[r] as u32).collect();
                s
            })
            .collect();
        if !pixels {
            return Ok(sets);
        }
        let mut refs: Vec<&mut ImageSet> = sets.iter_mut().collect();
        let mut offset = 0;
        let bar = indicatif::ProgressBar::hidden();
        fill_sets(
            raw.n,
            h * w,
            h,
            w,
            &layout,
            &resize,
            groups,
            &mut refs,
            |buf, _| {
                buf.copy_from_slice(&raw.pixels[offset..offset + buf.len()]);
                offset += buf.len();
                Ok(())
            },
            &bar,
        )?;
        Ok(sets)
    };
    let mut tv = build(&train_raw, &[&train_k, &val_k])?;
    let mut test = build(&test_raw, &[&test_k])?.remove(0);
    let mut val = tv.remove(1);
    let mut train = tv.remove(0);
    for set in [&mut train, &mut val, &mut test] {
        truncate(set, opts.limit);
    }
    let num_classes = if fashion {
        FASHION_MNIST_CLASSES.len()
    } else {
        train
            .labels
            .iter()
            .chain(&test.labels)
            .max()
            .map_or(0, |&m| m as usize + 1)
    };
    let class_names = if fashion {
        FASHION_MNIST_CLASSES.iter().map(|s| s.to_string()).collect()
    } else {
        (0..num_classes).map(|c| c.to_string()).collect()
    };
    Ok(Splits {
        name: String::new(),
        train,
        val,
        test,
        num_classes,
        class_names,
    })
}

impl Splits {
    /// Per-class counts of a split (index = label).
    pub fn label_counts(&self, split: Split) -> Vec<usize> {
        let mut counts = vec![0usize; self.num_classes];
        for &l in &self.get(split).labels {
            if let Some(c) = counts.get_mut(l as usize) {
                *c += 1;
            }
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::norb::write_split;

    /// A tiny NORB-format set: pixel value encodes (record, camera) so the tests can check placement.
    fn write_tiny(dir: &Path, n_train: usize, n_test: usize, side: usize) {
        for (part, n) in [(NorbPart::Training, n_train), (NorbPart::Testing, n_test)] {
            let train = part == NorbPart::Training;
            let mut dat = Vec::new();
            for r in 0..n {
                for cam in 0..2 {
                    dat.extend(std::iter::repeat_n((r * 2 + cam) as u8, side * side));
                }
            }
            let cat: Vec<i32> = (0..n as i32).map(|i| i % 5).collect();
            let inst = if train { [4, 6, 7, 8, 9] } else { [0, 1, 2, 3, 5] };
            let info: Vec<[i32; 4]> = (0..n).map(|i| [inst[(i / 5) % 5], 0, 0, 0]).collect();
            write_split(dir, part, &dat, side, &cat, &info, !train).unwrap();
        }
    }

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() < 1e-6
    }

    fn opts(dir: &Path) -> DataOptions {
        DataOptions {
            spec: format!("norb:{}", dir.display()),
            ..DataOptions::default()
        }
    }

    #[test]
    fn norb_cameras_sizes_and_splits() {
        let d = tempfile::tempdir().unwrap();
        write_tiny(d.path(), 20, 6, 8);
        let mut o = opts(d.path());
        let s = load(&o).unwrap();
        assert_eq!((s.train.n, s.val.n, s.test.n), (18, 2, 6));
        assert_eq!((s.train.channels, s.train.height, s.train.width), (1, 8, 8));
        // Left camera of test record 3 has value 6.
        assert!(close(s.test.image(3)[0], 6.0 / 255.0));
        assert_eq!(s.test.labels, vec![0, 1, 2, 3, 4, 0]);
        assert_eq!(s.label_counts(Split::Test), vec![2, 1, 1, 1, 1]);

        o.camera = Camera::Right;
        o.image_size = Some(4);
        let s = load(&o).unwrap();
        assert_eq!((s.test.height, s.test.image(3).len()), (4, 16));
        assert!(s.test.image(3).iter().all(|&v| (v - 7.0 / 255.0).abs() < 1e-6));

        o.camera = Camera::BothChannels;
        let s = load(&o).unwrap();
        assert_eq!((s.test.n, s.test.channels), (6, 2));
        assert!(close(s.test.image(1)[0], 2.0 / 255.0) && close(s.test.image(1)[16], 3.0 / 255.0));

        o.camera = Camera::BothSamples;
        o.limit = Some(5);
        let s = load(&o).unwrap();
        assert_eq!((s.train.n, s.test.n, s.test.channels), (5, 5, 1));
        // Pairs stay together: sample 2k is the left and 2k+1 the right view of the same record.
        assert!(close(s.test.image(1)[0] - s.test.image(0)[0], 1.0 / 255.0));
        assert_eq!(s.test.labels[0], s.test.labels[1]);
    }

    #[test]
    fn norb_held_out_instances_and_seeded_fraction() {
        let d = tempfile::tempdir().unwrap();
        write_tiny(d.path(), 25, 5, 4);
        let mut o = opts(d.path());
        o.val_instances = Some(vec![6, 9]);
        let s = load(&o).unwrap();
        let inst = |set: &ImageSet| {
            set.factors
                .as_ref()
                .unwrap()
                .iter()
                .map(|f| f.instance)
                .collect::<Vec<_>>()
        };
        assert!(inst(&s.val).iter().all(|i| [6, 9].contains(i)) && s.val.n == 10);
        assert!(inst(&s.train).iter().all(|i| ![6, 9].contains(i)) && s.train.n == 15);
        o.val_instances = Some(vec![1]);
        let e = format!("{:#}", load(&o).unwrap_err());
        assert!(e.contains("val_instances") && e.contains("instance 1"), "{e}");

        o.val_instances = None;
        o.val_fraction = 0.2;
        o.seed = 5;
        let a = load(&o).unwrap();
        assert_eq!(a.val.n, 5);
        assert_eq!(a.val.images, load(&o).unwrap().val.images);
        o.seed = 6;
        assert_ne!(a.val.images, load(&o).unwrap().val.images);
        o.val_fraction = 0.0;
        assert_eq!(load(&o).unwrap().val.n, 0);
    }

    #[test]
    fn summary_matches_load() {
        let d = tempfile::tempdir().unwrap();
        write_tiny(d.path(), 20, 6, 8);
        let mut o = opts(d.path());
        o.camera = Camera::BothSamples;
        o.limit = Some(7);
        o.image_size = Some(4);
        let s = load(&o).unwrap();
        let m = summarize(&o).unwrap();
        assert_eq!(
            (m.train.count, m.val.count, m.test.count),
            (s.train.n, s.val.n, s.test.n)
        );
        assert_eq!((m.train.count, m.val.count, m.test.count), (7, 4, 7));
        assert_eq!(m.test.image_shape, [1, 4, 4]);
        assert_eq!(m.val.label_counts, s.label_counts(Split::Val));
        assert_eq!(m.train.label_counts.iter().sum::<usize>(), 7);
    }

    #[test]
    fn bad_options_are_named() {
        let d = tempfile::tempdir().unwrap();
        write_tiny(d.path(), 5, 5, 4);
        let mut o = opts(d.path());
        o.image_size = Some(8);
        assert!(format!("{:#}", load(&o).unwrap_err()).contains("image_size"));
        o.image_size = None;
        o.limit = Some(0);
        assert!(format!("{:#}", load(&o).unwrap_err()).contains("limit"));
        let mut o = DataOptions {
            spec: format!("idx:{}", d.path().display()),
            ..DataOptions::default()
        };
        o.val_instances = Some(vec![4]);
        assert!(format!("{:#}", load(&o).unwrap_err()).contains("NORB only"));
        o.val_instances = None;
        o.camera = Camera::BothChannels;
        assert!(format!("{:#}", load(&o).unwrap_err()).contains("camera"));
    }
}
