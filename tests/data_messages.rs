//! Messages say what is wrong with a data file: a directory, a FIFO or a symbolic link loop where a
//! file should be is named as such (not "file not found"), garbage after a `.gz` stream is named
//! as garbage (not "truncated?"), and "Permission denied" appears once.
use norbvae::data::norb::{file_name, write_split, NorbFile, NorbPart};
use norbvae::data::{load, DataError, DataOptions};
use std::path::{Path, PathBuf};

const N: usize = 5;
const SIDE: usize = 8;

fn write_valid(dir: &Path) {
    let dat: Vec<u8> = (0..N * 2 * SIDE * SIDE).map(|i| (i % 256) as u8).collect();
    let cat: Vec<i32> = (0..N as i32).map(|i| i % 5).collect();
    let info: Vec<[i32; 4]> = (0..N).map(|_| [4, 1, 2, 3]).collect();
    let test_info: Vec<[i32; 4]> = (0..N).map(|_| [0, 1, 2, 3]).collect();
    write_split(dir, NorbPart::Training, &dat, SIDE, &cat, &info, true).unwrap();
    write_split(dir, NorbPart::Testing, &dat, SIDE, &cat, &test_info, false).unwrap();
}

fn load_err(dir: &Path) -> String {
    let opts = DataOptions {
        spec: format!("norb:{}", dir.display()),
        ..DataOptions::default()
    };
    let e = load(&opts).expect_err("loading should fail");
    // As the CLI prints it: the whole chain, through anyhow.
    format!("{:#}", anyhow::Error::from(e))
}

/// The training dat file's plain path (the gz variant removed so only our replacement is there).
fn replace_dat(dir: &Path) -> PathBuf {
    std::fs::remove_file(dir.join(file_name(NorbPart::Training, NorbFile::Dat, true))).unwrap();
    dir.join(file_name(NorbPart::Training, NorbFile::Dat, false))
}

#[test]
fn a_directory_in_place_of_a_data_file() {
    let d = tempfile::tempdir().unwrap();
    write_valid(d.path());
    let p = replace_dat(d.path());
    std::fs::create_dir(&p).unwrap();
    let e = load_err(d.path());
    assert!(
        e.contains("training-dat.mat") && e.contains("is a directory"),
        "{e}"
    );
    assert!(!e.contains("not found"), "{e}");
}

#[test]
fn a_fifo_in_place_of_a_data_file_is_named_without_blocking() {
    let d = tempfile::tempdir().unwrap();
    write_valid(d.path());
    let p = replace_dat(d.path());
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo does not keep the pointer.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    // Opening a FIFO with no writer blocks forever: the check must come before the open.
    let (tx, rx) = std::sync::mpsc::channel();
    let dir = d.path().to_path_buf();
    std::thread::spawn(move || tx.send(load_err(&dir)).unwrap());
    let e = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("loading blocked on the FIFO");
    assert!(e.contains("training-dat.mat") && e.contains("FIFO"), "{e}");
}

#[test]
fn symbolic_link_loop_and_dangling_link() {
    let d = tempfile::tempdir().unwrap();
    write_valid(d.path());
    let p = replace_dat(d.path());
    let other = d.path().join("other");
    std::os::unix::fs::symlink(&other, &p).unwrap();
    let e = load_err(d.path());
    assert!(
        e.contains("training-dat.mat") && e.contains("dangling symbolic link"),
        "{e}"
    );
    std::os::unix::fs::symlink(&p, &other).unwrap();
    let e = load_err(d.path());
    assert!(
        e.contains("training-dat.mat") && e.contains("symbolic link loop"),
        "{e}"
    );
    assert!(!e.contains("not found"), "{e}");
    // The dataset directory itself as a loop, and as a file.
    let loop_dir = d.path().join("loop");
    std::os::unix::fs::symlink(&loop_dir, &loop_dir).unwrap();
    let e = load_err(&loop_dir);
    assert!(e.contains("loop") && e.contains("symbolic link loop"), "{e}");
    let e = load_err(&d.path().join(file_name(NorbPart::Testing, NorbFile::Cat, false)));
    assert!(e.contains("is not a directory"), "{e}");
}

#[test]
fn garbage_after_the_gzip_stream_is_named_as_garbage() {
    for garbage in [&b"\0\0\0\0\0\0\0\0"[..], b"x", b"some text appended by mistake\n"] {
        let d = tempfile::tempdir().unwrap();
        write_valid(d.path());
        let p = d.path().join(file_name(NorbPart::Training, NorbFile::Dat, true));
        let mut bytes = std::fs::read(&p).unwrap();
        bytes.extend_from_slice(garbage);
        std::fs::write(&p, &bytes).unwrap();
        let e = load_err(d.path());
        assert!(
            e.contains("training-dat.mat.gz") && e.contains("trailing garbage"),
            "{e}"
        );
        assert!(!e.contains("truncated"), "{e}");
    }
    // A second gzip member is data, not garbage (gzip -d reads concatenated members).
    let d = tempfile::tempdir().unwrap();
    write_valid(d.path());
    let p = d.path().join(file_name(NorbPart::Training, NorbFile::Dat, true));
    let bytes = std::fs::read(&p).unwrap();
    let mut plain = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut plain).unwrap();
    let half = plain.len() / 2;
    let gz = |b: &[u8]| {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    };
    let mut two = gz(&plain[..half]);
    two.extend(gz(&plain[half..]));
    std::fs::write(&p, two).unwrap();
    let opts = DataOptions {
        spec: format!("norb:{}", d.path().display()),
        ..DataOptions::default()
    };
    assert_eq!(load(&opts).unwrap().train.n + load(&opts).unwrap().val.n, N);
}

#[test]
fn permission_denied_is_said_once() {
    // The message as the CLI prints it ({:#} prints the source chain too).
    let e = DataError::io(
        Path::new("/data/x.mat"),
        false,
        std::io::Error::from_raw_os_error(libc::EACCES),
    );
    let msg = format!("{:#}", anyhow::Error::from(e));
    assert_eq!(msg.matches("Permission denied").count(), 1, "{msg}");
    assert!(msg.starts_with("/data/x.mat: "), "{msg}");

    // For real, through the CLI, as an unprivileged user (root reads every file).
    let setpriv = std::process::Command::new("setpriv").arg("--version").output();
    // SAFETY: geteuid has no preconditions.
    if setpriv.is_err() || unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped the CLI half: needs root and util-linux setpriv to drop to another user");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    write_valid(d.path());
    for entry in std::fs::read_dir(d.path()).unwrap() {
        std::fs::set_permissions(entry.unwrap().path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let p = d.path().join(file_name(NorbPart::Training, NorbFile::Cat, true));
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o000)).unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_norbvae"))
        .args(["data", "info", "--data"])
        .arg(format!("norb:{}", d.path().display()))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("Permission denied") && !err.contains("training-cat") {
        eprintln!("skipped the CLI half: user 65534 cannot reach the temporary directory: {err}");
        return;
    }
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("training-cat.mat.gz"), "{err}");
    assert_eq!(err.matches("Permission denied").count(), 1, "{err}");
}
