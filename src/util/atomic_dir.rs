//! A set of files written as one unit (a checkpoint: weights, optimizer state, trainer state):
//! a reader gets the complete previous unit or the complete new one, never a mix, whatever
//! interrupts the writer (a kill, a full disk, a power cut after the fsyncs).
//!
//! How: the files are written into a temporary directory beside the unit, named uniquely per
//! process and per write (`.NAME.tmp-PID-N`), each file fsynced; then `manifest.json` with the
//! epoch and the SHA-256 and length of every file; then the directory is fsynced and put in place
//! by one rename. When a previous unit exists the two directories are swapped atomically
//! (`renameat2(RENAME_EXCHANGE)`), and only then is the old one removed. On file systems without
//! that call the old unit is first renamed to `.NAME.prev-PID-N`, and a reader that finds no unit
//! recovers from that complete backup.
//!
//! [`load_unit`] checks the manifest against every file's length and hash, so a unit damaged
//! later (a truncated copy, an edited file, a missing or extra file) is a clear error naming
//! the file, not a silent mix.
//!
//! Writers must not race on one unit: callers hold the run directory's lock (`util::lock`).
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The manifest's name inside a unit.
pub const MANIFEST: &str = "manifest.json";
/// The manifest format this code writes and reads.
pub const MANIFEST_VERSION: u32 = 1;

/// Written last into a unit: what a complete unit holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub version: u32,
    /// The training epoch (or any counter) the unit belongs to.
    pub epoch: u64,
    /// Every file of the unit by name.
    pub files: BTreeMap<String, FileEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub bytes: u64,
    /// Lower-case hex SHA-256 of the contents.
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum UnitError {
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: std::io::Error },
    #[error("{}: no checkpoint here (no manifest.json)", path.display())]
    Missing { path: PathBuf },
    #[error("{}: not a complete checkpoint: {msg}", path.display())]
    Damaged { path: PathBuf, msg: String },
    #[error("{}: bad file name {name:?} (one plain name per file, no '/', not manifest.json)", unit.display())]
    BadName { unit: PathBuf, name: String },
    /// Only from the fault-injection hook in tests: the write stopped dead, as at a kill.
    #[error("write interrupted at {0:?} (injected fault)")]
    Injected(Step),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> UnitError + '_ {
    move |error| UnitError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// The points at which a write can be interrupted, in order (for fault injection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The named file is written and fsynced in the temporary directory.
    FileWritten(String),
    /// The manifest is written and fsynced.
    ManifestWritten,
    /// The new unit is in place (swapped with the old one or renamed), the old one not yet removed.
    Swapped,
}

type FaultHook = Box<dyn FnMut(&Step) -> bool + Send>;

/// Writes one unit. Add files with [`UnitWriter::write`] / [`UnitWriter::write_with`], then
/// [`UnitWriter::commit`]. Dropped without a commit, it removes its temporary directory and leaves
/// the previous unit as it was.
pub struct UnitWriter {
    unit: PathBuf,
    tmp: PathBuf,
    epoch: u64,
    files: BTreeMap<String, FileEntry>,
    fault: Option<FaultHook>,
    /// Set when an injected fault stopped the write: the temporary directory stays, as after a kill.
    crashed: bool,
}

static WRITES: AtomicU64 = AtomicU64::new(0);

fn sibling(unit: &Path, kind: &str) -> PathBuf {
    let name = unit
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = WRITES.fetch_add(1, Ordering::Relaxed);
    unit.with_file_name(format!(".{name}.{kind}-{}-{n}", std::process::id()))
}

fn check_name(unit: &Path, name: &str) -> Result<(), UnitError> {
    let plain = !name.is_empty()
        && name != MANIFEST
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.contains('\0');
    if plain {
        Ok(())
    } else {
        Err(UnitError::BadName {
            unit: unit.to_path_buf(),
            name: name.to_string(),
        })
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn fsync_dir(dir: &Path) -> Result<(), UnitError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}

impl UnitWriter {
    /// Start writing the unit at `unit` (a directory path) for `epoch`.
    pub fn begin(unit: &Path, epoch: u64) -> Result<UnitWriter, UnitError> {
        let parent = unit
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(io_err(parent))?;
        remove_leftovers(unit);
        let tmp = sibling(unit, "tmp");
        std::fs::create_dir(&tmp).map_err(io_err(&tmp))?;
        Ok(UnitWriter {
            unit: unit.to_path_buf(),
            tmp,
            epoch,
            files: BTreeMap::new(),
            fault: None,
            crashed: false,
        })
    }

    /// Stop the write dead (no clean-up, as a kill would) at the first step for which `hook`
    /// returns true. For tests of the callers' recovery.
    pub fn inject_fault(&mut self, hook: impl FnMut(&Step) -> bool + Send + 'static) {
        self.fault = Some(Box::new(hook));
    }

    fn reached(&mut self, step: Step) -> Result<(), UnitError> {
        if let Some(hook) = self.fault.as_mut() {
            if hook(&step) {
                self.crashed = true;
                return Err(UnitError::Injected(step));
            }
        }
        Ok(())
    }

    /// Add a file with these contents.
    pub fn write(&mut self, name: &str, bytes: &[u8]) -> Result<(), UnitError> {
        self.write_with(name, |path| std::fs::write(path, bytes))
    }

    /// Add a file that `write` creates at the path it is given (e.g. a safetensors writer).
    pub fn write_with(
        &mut self,
        name: &str,
        write: impl FnOnce(&Path) -> std::io::Result<()>,
    ) -> Result<(), UnitError> {
        check_name(&self.unit, name)?;
        let path = self.tmp.join(name);
        write(&path).map_err(io_err(&path))?;
        let bytes = std::fs::read(&path).map_err(io_err(&path))?;
        File::open(&path)
            .and_then(|f| f.sync_all())
            .map_err(io_err(&path))?;
        self.files.insert(
            name.to_string(),
            FileEntry {
                bytes: bytes.len() as u64,
                sha256: sha256_hex(&bytes),
            },
        );
        self.reached(Step::FileWritten(name.to_string()))
    }

    /// Write the manifest and put the unit in place; the previous unit is removed only after.
    pub fn commit(mut self) -> Result<Manifest, UnitError> {
        let manifest = Manifest {
            version: MANIFEST_VERSION,
            epoch: self.epoch,
            files: std::mem::take(&mut self.files),
        };
        let path = self.tmp.join(MANIFEST);
        let text = serde_json::to_string_pretty(&manifest).expect("a manifest serialises");
        File::create(&path)
            .and_then(|mut f| {
                f.write_all(text.as_bytes())?;
                f.sync_all()
            })
            .map_err(io_err(&path))?;
        fsync_dir(&self.tmp)?;
        self.reached(Step::ManifestWritten)?;

        let old = self.put_in_place()?;
        let parent = self
            .unit
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        fsync_dir(&parent)?;
        self.reached(Step::Swapped)?;
        if let Some(old) = old {
            std::fs::remove_dir_all(&old).map_err(io_err(&old))?;
        }
        // Nothing left to clean up.
        self.tmp = PathBuf::new();
        Ok(manifest)
    }

    /// Move the staged directory to the unit's path; returns where the previous unit now is.
    fn put_in_place(&mut self) -> Result<Option<PathBuf>, UnitError> {
        match std::fs::symlink_metadata(&self.unit) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::rename(&self.tmp, &self.unit).map_err(io_err(&self.unit))?;
                return Ok(None);
            }
            Err(e) => return Err(io_err(&self.unit)(e)),
            Ok(_) => {}
        }
        match exchange(&self.tmp, &self.unit) {
            // The temporary name now holds the previous unit.
            Ok(()) => Ok(Some(std::mem::take(&mut self.tmp))),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS)) => {
                let prev = sibling(&self.unit, "prev");
                std::fs::rename(&self.unit, &prev).map_err(io_err(&self.unit))?;
                std::fs::rename(&self.tmp, &self.unit).map_err(io_err(&self.unit))?;
                self.tmp = PathBuf::new();
                Ok(Some(prev))
            }
            Err(e) => Err(io_err(&self.unit)(e)),
        }
    }
}

impl Drop for UnitWriter {
    fn drop(&mut self) {
        if !self.crashed && !self.tmp.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }
}

/// Remove what writers killed mid-write left beside `unit`: temporary directories of processes that
/// are gone, and set-aside copies once the unit itself is in place. Best effort.
fn remove_leftovers(unit: &Path) {
    let Some(name) = unit.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return;
    };
    let parent = unit
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    let unit_complete = unit.join(MANIFEST).is_file();
    for e in entries.flatten() {
        let file_name = e.file_name().to_string_lossy().into_owned();
        let (kind, rest) = if let Some(r) = file_name.strip_prefix(&format!(".{name}.tmp-")) {
            ("tmp", r)
        } else if let Some(r) = file_name.strip_prefix(&format!(".{name}.prev-")) {
            ("prev", r)
        } else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if (kind == "tmp" || unit_complete) && !process_alive(pid) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

fn process_alive(pid: i32) -> bool {
    if pid == std::process::id() as i32 {
        return true;
    }
    // SAFETY: signal 0 only checks that the process exists and may be signalled; nothing is sent.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Swap two directory entries atomically.
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))
    };
    let (a, b) = (c(a)?, c(b)?);
    // SAFETY: both paths are valid NUL-terminated strings that live across the call; AT_FDCWD
    // resolves them as ordinary paths. renameat2 does not keep the pointers.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Remove the unit at `unit` for good: one rename takes it out of place (a reader then finds no
/// unit, never part of one), then its files go. The set-aside copies and temporary directories of
/// earlier writes go too, so [`load_unit`] cannot recover an older copy in its place. A kill
/// midway leaves a `.NAME.tmp-PID-N` directory that the next writer's clean-up removes.
pub fn remove_unit(unit: &Path) -> Result<(), UnitError> {
    let Some(name) = unit.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return Ok(());
    };
    let parent = unit
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut doomed = Vec::new();
    if std::fs::symlink_metadata(unit).is_ok() {
        let aside = sibling(unit, "tmp");
        std::fs::rename(unit, &aside).map_err(io_err(unit))?;
        fsync_dir(parent)?;
        doomed.push(aside);
    }
    if let Ok(entries) = std::fs::read_dir(parent) {
        for e in entries.flatten() {
            let file_name = e.file_name().to_string_lossy().into_owned();
            if file_name.starts_with(&format!(".{name}.prev-"))
                || file_name.starts_with(&format!(".{name}.tmp-"))
            {
                doomed.push(e.path());
            }
        }
    }
    doomed.sort();
    doomed.dedup();
    for d in doomed {
        std::fs::remove_dir_all(&d).map_err(io_err(&d))?;
    }
    Ok(())
}

/// A complete, verified unit.
#[derive(Debug, Clone)]
pub struct Unit {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl Unit {
    pub fn epoch(&self) -> u64 {
        self.manifest.epoch
    }

    /// The path of one of the unit's files (checked when the unit was loaded).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The bytes of one of the unit's files, checked again against the manifest (so a file changed
    /// since [`load_unit`] is an error too).
    pub fn read(&self, name: &str) -> Result<Vec<u8>, UnitError> {
        let entry = self.manifest.files.get(name).ok_or_else(|| UnitError::Damaged {
            path: self.dir.clone(),
            msg: format!("{name} is not part of this checkpoint"),
        })?;
        let path = self.path(name);
        let bytes = std::fs::read(&path).map_err(io_err(&path))?;
        verify(&self.dir, name, entry, &bytes)?;
        Ok(bytes)
    }
}

fn verify(dir: &Path, name: &str, entry: &FileEntry, bytes: &[u8]) -> Result<(), UnitError> {
    let damaged = |msg: String| UnitError::Damaged {
        path: dir.to_path_buf(),
        msg,
    };
    if bytes.len() as u64 != entry.bytes {
        return Err(damaged(format!(
            "{name} has {} bytes, the manifest says {}",
            bytes.len(),
            entry.bytes
        )));
    }
    if sha256_hex(bytes) != entry.sha256 {
        return Err(damaged(format!(
            "{name} does not match its SHA-256 in the manifest (changed after it was written)"
        )));
    }
    Ok(())
}

/// Load the unit at `unit` and check every file against the manifest. A unit interrupted before
/// its rename is invisible (the previous unit is returned); a unit whose old copy was set aside
/// by the fallback path is recovered from that copy.
pub fn load_unit(unit: &Path) -> Result<Unit, UnitError> {
    let dir = if unit.exists() {
        unit.to_path_buf()
    } else {
        match newest_backup(unit) {
            Some(prev) => prev,
            None => {
                return Err(UnitError::Missing {
                    path: unit.to_path_buf(),
                })
            }
        }
    };
    let damaged = |msg: String| UnitError::Damaged {
        path: dir.clone(),
        msg,
    };
    let mpath = dir.join(MANIFEST);
    let text = match std::fs::read_to_string(&mpath) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(UnitError::Missing { path: dir });
        }
        Err(e) => return Err(io_err(&mpath)(e)),
    };
    let manifest: Manifest =
        serde_json::from_str(&text).map_err(|e| damaged(format!("{MANIFEST} does not parse: {e}")))?;
    if manifest.version != MANIFEST_VERSION {
        return Err(damaged(format!(
            "{MANIFEST} has format version {}, this norbvae reads version {MANIFEST_VERSION}",
            manifest.version
        )));
    }
    for (name, entry) in &manifest.files {
        check_name(&dir, name)?;
        let path = dir.join(name);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(damaged(format!("{name} is missing")))
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        verify(&dir, name, entry, &bytes)?;
    }
    let entries = std::fs::read_dir(&dir).map_err(io_err(&dir))?;
    for entry in entries {
        let entry = entry.map_err(io_err(&dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != MANIFEST && !manifest.files.contains_key(&name) {
            return Err(damaged(format!(
                "{name} is not listed in {MANIFEST} (files from another write mixed in)"
            )));
        }
    }
    Ok(Unit { dir, manifest })
}

/// The fallback path's set-aside copy of a unit, if the writer stopped between its two renames.
fn newest_backup(unit: &Path) -> Option<PathBuf> {
    let name = unit.file_name()?.to_string_lossy().into_owned();
    let parent = unit
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let prefix = format!(".{name}.prev-");
    let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(parent)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .filter_map(|e| {
            let m = std::fs::read_to_string(e.path().join(MANIFEST)).ok()?;
            let m: Manifest = serde_json::from_str(&m).ok()?;
            Some((m.epoch, e.path()))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, p)| p)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three files whose contents all say which epoch they belong to.
    fn files(epoch: u64) -> Vec<(&'static str, Vec<u8>)> {
        vec![
            ("weights.safetensors", vec![epoch as u8; 3000]),
            ("optim.safetensors", vec![epoch as u8 ^ 0x55; 5000]),
            ("state.json", format!("{{\"epoch\": {epoch}}}").into_bytes()),
        ]
    }

    fn write(unit: &Path, epoch: u64, fault_at: Option<usize>) -> Result<Manifest, UnitError> {
        let mut w = UnitWriter::begin(unit, epoch)?;
        if let Some(k) = fault_at {
            let mut seen = 0;
            w.inject_fault(move |_| {
                seen += 1;
                seen > k
            });
        }
        for (name, bytes) in files(epoch) {
            w.write(name, &bytes)?;
        }
        w.commit()
    }

    /// The unit loads, and every file is the one written for the same epoch as the manifest.
    fn assert_whole(unit: &Path) -> u64 {
        let u = load_unit(unit).unwrap();
        let epoch = u.epoch();
        for (name, bytes) in files(epoch) {
            assert_eq!(u.read(name).unwrap(), bytes, "{name} is not from epoch {epoch}");
        }
        assert_eq!(u.manifest.files.len(), 3);
        epoch
    }

    #[test]
    fn a_write_interrupted_after_each_step_leaves_the_old_or_the_new_unit() {
        // Steps: three files, the manifest, the swap: 5 points; 5 means "not interrupted".
        for k in 0..=5 {
            let tmp = tempfile::tempdir().unwrap();
            let unit = tmp.path().join("last");
            write(&unit, 1, None).unwrap();
            let r = write(&unit, 2, Some(k));
            let epoch = assert_whole(&unit);
            match k {
                0..=3 => {
                    assert!(matches!(r, Err(UnitError::Injected(_))), "{k}: {r:?}");
                    assert_eq!(epoch, 1, "stopped before the swap at {k}");
                }
                4 => assert_eq!(epoch, 2, "stopped after the swap"),
                _ => assert_eq!((epoch, r.unwrap().epoch), (2, 2)),
            }
            // The next write succeeds over whatever the interrupted one left behind.
            write(&unit, 3, None).unwrap();
            assert_eq!(assert_whole(&unit), 3);
        }
        // The first unit interrupted: there is no unit, and loading says so.
        let tmp = tempfile::tempdir().unwrap();
        let unit = tmp.path().join("last");
        assert!(write(&unit, 1, Some(2)).is_err());
        let e = load_unit(&unit).unwrap_err();
        assert!(matches!(e, UnitError::Missing { .. }), "{e}");
        assert!(e.to_string().contains("last"), "{e}");
    }

    #[test]
    fn the_fallback_swap_is_recovered_from_its_backup() {
        // The state the two-rename path leaves when stopped between its renames.
        let tmp = tempfile::tempdir().unwrap();
        let unit = tmp.path().join("last");
        write(&unit, 4, None).unwrap();
        let prev = sibling(&unit, "prev");
        std::fs::rename(&unit, &prev).unwrap();
        let u = load_unit(&unit).unwrap();
        assert_eq!((u.epoch(), u.dir.clone()), (4, prev));
        write(&unit, 5, None).unwrap();
        assert_eq!(assert_whole(&unit), 5);
    }

    #[test]
    fn a_removed_unit_is_gone_with_its_older_copies_and_its_neighbour_stays() {
        let tmp = tempfile::tempdir().unwrap();
        let unit = tmp.path().join("last");
        let other = tmp.path().join("best");
        write(&other, 2, None).unwrap();
        write(&unit, 1, None).unwrap();
        // An older set-aside copy (the fallback swap's) and a killed writer's staging directory.
        let prev = sibling(&unit, "prev");
        std::fs::rename(&unit, &prev).unwrap();
        write(&unit, 2, None).unwrap();
        assert!(write(&unit, 3, Some(1)).is_err());
        remove_unit(&unit).unwrap();
        let e = load_unit(&unit).unwrap_err();
        assert!(matches!(e, UnitError::Missing { .. }), "{e}");
        let left: Vec<String> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, ["best"]);
        assert_eq!(assert_whole(&other), 2);
        // Removing what is not there is fine.
        remove_unit(&unit).unwrap();
    }

    #[test]
    fn damage_after_writing_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let unit = tmp.path().join("best");
        write(&unit, 7, None).unwrap();
        type Damage = Box<dyn Fn(&Path)>;
        let cases: Vec<(&str, Damage, &str)> = vec![
            (
                "truncated",
                Box::new(|u| std::fs::write(u.join("optim.safetensors"), [1u8; 10]).unwrap()),
                "optim.safetensors has 10 bytes",
            ),
            (
                "same length, other bytes",
                Box::new(|u| std::fs::write(u.join("weights.safetensors"), vec![9u8; 3000]).unwrap()),
                "weights.safetensors does not match its SHA-256",
            ),
            (
                "missing",
                Box::new(|u| std::fs::remove_file(u.join("state.json")).unwrap()),
                "state.json is missing",
            ),
            (
                "extra",
                Box::new(|u| std::fs::write(u.join("old.safetensors"), b"x").unwrap()),
                "old.safetensors is not listed",
            ),
            (
                "garbage manifest",
                Box::new(|u| std::fs::write(u.join(MANIFEST), b"{\"version\": 1, \"epo").unwrap()),
                "manifest.json does not parse",
            ),
        ];
        for (what, damage, expect) in cases {
            std::fs::remove_dir_all(&unit).unwrap();
            write(&unit, 7, None).unwrap();
            damage(&unit);
            let e = load_unit(&unit).unwrap_err().to_string();
            assert!(e.contains(expect) && e.contains("best"), "{what}: {e}");
        }
        let w = UnitWriter::begin(&unit, 1).unwrap();
        let mut w = w;
        for bad in ["", "a/b", MANIFEST, ".."] {
            assert!(
                matches!(w.write(bad, b"x"), Err(UnitError::BadName { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn temporary_names_are_unique_and_cleaned_up() {
        let tmp = tempfile::tempdir().unwrap();
        let unit = tmp.path().join("last");
        let a = UnitWriter::begin(&unit, 1).unwrap();
        let b = UnitWriter::begin(&unit, 1).unwrap();
        assert_ne!(a.tmp, b.tmp);
        assert!(a.tmp.to_string_lossy().contains(&std::process::id().to_string()));
        drop((a, b));
        // What a writer killed mid-write leaves: its temporary directory, under a dead pid.
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        let dead = gone.id();
        gone.wait().unwrap();
        let stale = tmp.path().join(format!(".last.tmp-{dead}-0"));
        std::fs::create_dir(&stale).unwrap();
        std::fs::write(stale.join("weights.safetensors"), b"half").unwrap();
        write(&unit, 1, None).unwrap();
        write(&unit, 2, None).unwrap();
        let names: Vec<String> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["last".to_string()], "left behind: {names:?}");
    }

    /// A real full disk: a 3 MiB tmpfs (needs root and a kernel that lets us mount; skipped
    /// otherwise). Writing a second, larger unit fails with ENOSPC; the first stays whole.
    #[test]
    fn a_full_disk_leaves_the_previous_unit() {
        let tmp = tempfile::tempdir().unwrap();
        let mnt = tmp.path().join("small");
        std::fs::create_dir(&mnt).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"])
            .arg(&mnt)
            .output()
            .is_ok_and(|o| o.status.success());
        if !mounted {
            eprintln!("skipped: cannot mount a 3 MiB tmpfs here (needs root and mount rights)");
            return;
        }
        struct Unmount(PathBuf);
        impl Drop for Unmount {
            fn drop(&mut self) {
                let _ = std::process::Command::new("umount").arg(&self.0).status();
            }
        }
        let _guard = Unmount(mnt.clone());
        let unit = mnt.join("last");
        let mut w = UnitWriter::begin(&unit, 1).unwrap();
        w.write("weights.safetensors", &vec![1u8; 1 << 20]).unwrap();
        w.commit().unwrap();
        let mut w = UnitWriter::begin(&unit, 2).unwrap();
        let r = w
            .write("weights.safetensors", &vec![2u8; 1 << 20])
            .and_then(|_| w.write("optim.safetensors", &vec![2u8; 2 << 20]));
        let e = r.unwrap_err();
        assert!(
            matches!(&e, UnitError::Io { error, .. } if error.raw_os_error() == Some(libc::ENOSPC)),
            "{e}"
        );
        drop(w);
        let u = load_unit(&unit).unwrap();
        assert_eq!(u.epoch(), 1);
        assert_eq!(u.read("weights.safetensors").unwrap(), vec![1u8; 1 << 20]);
        // The failed write cleaned up after itself: a retry with room succeeds.
        let mut w = UnitWriter::begin(&unit, 2).unwrap();
        w.write("weights.safetensors", &vec![2u8; 1 << 20]).unwrap();
        w.commit().unwrap();
        assert_eq!(load_unit(&unit).unwrap().epoch(), 2);
    }
}
