//! One writer per run directory: an advisory exclusive lock (`flock`) on `DIR/.norbvae.lock`,
//! held for the life of a [`RunLock`] guard and released by the kernel when the process ends in
//! any way (exit, panic, SIGKILL), so a crashed command never leaves a stale lock behind.
//!
//! The holder writes its pid into the lock file; a second command on the same directory fails at
//! once with an error naming the directory and that pid. The lock file itself is never deleted:
//! deleting it would let a third process lock a new file while the second still holds the old one.
//!
//! The lock is advisory: it orders norbvae's own commands (train, pca, eval, sample, report into
//! a run directory), it does not stop other programs from writing there.
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// The lock file's name inside a run directory.
pub const LOCK_FILE: &str = ".norbvae.lock";

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "run directory {} is in use by another norbvae command ({}): wait for it to finish, \
         or write somewhere else",
        dir.display(),
        holder.as_deref().unwrap_or("pid not yet written")
    )]
    Held { dir: PathBuf, holder: Option<String> },
    #[error("locking run directory {}: {error}", dir.display())]
    Io { dir: PathBuf, error: std::io::Error },
}

impl LockError {
    /// The holder's pid, when it had written it.
    pub fn holder_pid(&self) -> Option<u32> {
        match self {
            LockError::Held { holder: Some(h), .. } => h.strip_prefix("pid ")?.parse().ok(),
            _ => None,
        }
    }
}

/// An exclusive lock on a run directory, released when dropped.
#[derive(Debug)]
pub struct RunLock {
    file: File,
    dir: PathBuf,
}

impl RunLock {
    /// Lock `dir` (created if missing) without waiting: an error if another holder has it.
    pub fn acquire(dir: &Path) -> Result<RunLock, LockError> {
        let io = |error| LockError::Io {
            dir: dir.to_path_buf(),
            error,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let path = dir.join(LOCK_FILE);
        // Opened with O_CLOEXEC (std's default): child processes do not inherit the lock.
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        loop {
            // SAFETY: flock only reads the descriptor number, which `file` keeps open for the call.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                break;
            }
            let err = std::io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EWOULDBLOCK) => {
                    let mut text = String::new();
                    let _ = file.read_to_string(&mut text);
                    let holder = text.lines().next().map(str::trim).filter(|s| !s.is_empty());
                    return Err(LockError::Held {
                        dir: dir.to_path_buf(),
                        holder: holder.map(str::to_string),
                    });
                }
                _ => return Err(io(err)),
            }
        }
        let write_pid = |file: &mut File| -> std::io::Result<()> {
            file.set_len(0)?;
            file.rewind()?;
            writeln!(file, "pid {}", std::process::id())?;
            file.flush()
        };
        write_pid(&mut file).map_err(io)?;
        Ok(RunLock {
            file,
            dir: dir.to_path_buf(),
        })
    }

    /// The locked directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Still holding the lock: nobody reads a stale pid. Closing the file releases the lock.
        let _ = self.file.set_len(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_with_the_pid_until_the_first_lets_go() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        let first = RunLock::acquire(&dir).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join(LOCK_FILE)).unwrap(),
            format!("pid {}\n", std::process::id())
        );
        // A second open file description in this process, as a second command would have.
        let err = RunLock::acquire(&dir).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&dir.display().to_string()) && msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        assert_eq!(err.holder_pid(), Some(std::process::id()));
        // From another thread too.
        let d2 = dir.clone();
        assert!(std::thread::spawn(move || RunLock::acquire(&d2).is_err())
            .join()
            .unwrap());
        drop(first);
        // Another test of this process may be spawning a child right now: between its fork and
        // exec the child holds a copy of every descriptor (O_CLOEXEC closes it at the exec), so
        // the released lock can look held for that moment.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        let again = loop {
            match RunLock::acquire(&dir) {
                Ok(l) => break l,
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(10))
                }
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(again.dir(), dir);
    }

    #[test]
    fn another_process_sees_the_lock_and_it_ends_with_the_holder() {
        if std::process::Command::new("flock")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("skipped: util-linux `flock` not installed");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        let lock = RunLock::acquire(&dir).unwrap();
        let try_lock = || {
            std::process::Command::new("flock")
                .args(["--nonblock", "--exclusive"])
                .arg(dir.join(LOCK_FILE))
                .arg("true")
                .status()
                .unwrap()
                .success()
        };
        assert!(!try_lock(), "another process took a held lock");
        drop(lock);
        assert!(try_lock(), "the lock outlived its guard");
        // And the other way round: a process holding it keeps us out, with no pid written.
        // --close: the lock stays with flock(1) itself, not with the `sleep` it starts.
        let mut child = std::process::Command::new("flock")
            .args(["--exclusive", "--close"])
            .arg(dir.join(LOCK_FILE))
            .args(["sleep", "5"])
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let err = loop {
            match RunLock::acquire(&dir) {
                Err(e) => break e,
                Ok(l) if std::time::Instant::now() < deadline => {
                    drop(l);
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Ok(_) => panic!("flock(1) never took the lock"),
            }
        };
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(matches!(err, LockError::Held { .. }), "{err}");
        assert!(
            err.to_string().contains("in use by another norbvae command"),
            "{err}"
        );
        // flock(1) forks its command, which closes its copy of the descriptor (--close) just
        // after the fork: killed in that window, the copy holds the lock a moment longer.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        loop {
            match RunLock::acquire(&dir) {
                Ok(_) => break,
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(10))
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
}
