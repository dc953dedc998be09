//! `norbvae data download smallnorb` against a local HTTP server on 127.0.0.1 (written here, with
//! Range support and injectable faults) serving a synthetic smallNORB: a full download that
//! `data info` reads, an interrupted transfer that resumes, a wrong checksum, server errors, a bad
//! URL and an unreachable host. Also the hint a missing smallNORB directory gives.
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn norbvae(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_norbvae"))
        .args(args)
        .env_remove("NORBVAE_SMALLNORB_URL")
        .output()
        .expect("running norbvae")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A fault the server injects for requests of one file.
#[derive(Clone)]
enum Fault {
    /// Send the headers of the whole (remaining) file but only this many body bytes, then close;
    /// once.
    CutAfter(usize),
    /// Answer with this status, always.
    Status(u16, &'static str),
}

#[derive(Default)]
struct ServerState {
    /// (file name, Range header) of every request.
    requests: Vec<(String, Option<String>)>,
    faults: Vec<(String, Fault)>,
}

struct Server {
    base_url: String,
    state: Arc<Mutex<ServerState>>,
}

impl Server {
    /// Serve the files of `root` on 127.0.0.1; the thread stops by itself after 120 s or 200
    /// connections.
    fn start(root: &Path) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base_url = format!("http://{}/norb/", listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        let state = Arc::new(Mutex::new(ServerState::default()));
        let (root, st) = (root.to_path_buf(), state.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut served = 0;
            while Instant::now() < deadline && served < 200 {
                match listener.accept() {
                    Ok((stream, _)) => {
                        served += 1;
                        let _ = handle(stream, &root, &st);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self { base_url, state }
    }

    fn fault(&self, file: &str, fault: Fault) {
        self.state.lock().unwrap().faults.push((file.to_string(), fault));
    }

    fn requests(&self) -> Vec<(String, Option<String>)> {
        self.state.lock().unwrap().requests.clone()
    }
}

fn handle(mut stream: TcpStream, root: &Path, state: &Mutex<ServerState>) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16384 {
        if stream.read(&mut byte)? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    // Files live at /norb/NAME; anything else is 404.
    let name = path.strip_prefix("/norb/").unwrap_or("").to_string();
    let range = head
        .lines()
        .find_map(|l| l.strip_prefix("Range: ").or_else(|| l.strip_prefix("range: ")))
        .map(|r| r.trim().to_string());
    let fault = {
        let mut s = state.lock().unwrap();
        s.requests.push((name.clone(), range.clone()));
        let i = s.faults.iter().position(|(f, _)| *f == name);
        match i.map(|i| s.faults[i].1.clone()) {
            Some(Fault::CutAfter(n)) => {
                s.faults.remove(i.unwrap());
                Some(Fault::CutAfter(n))
            }
            other => other,
        }
    };
    let respond = |stream: &mut TcpStream, status: &str, headers: &str, body: &[u8]| {
        let msg = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n",
            body.len()
        );
        stream.write_all(msg.as_bytes())?;
        stream.write_all(body)
    };
    if let Some(Fault::Status(code, reason)) = fault {
        return respond(&mut stream, &format!("{code} {reason}"), "", b"");
    }
    let data = std::fs::read(root.join(&name))
        .ok()
        .filter(|_| !name.contains('/') && !name.is_empty());
    let Some(data) = data else {
        return respond(&mut stream, "404 Not Found", "", b"not found");
    };
    let start = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|r| r.parse::<usize>().ok());
    let (status, headers, body) = match start {
        Some(s) if s >= data.len() => {
            let h = format!("Content-Range: bytes */{}\r\n", data.len());
            return respond(&mut stream, "416 Range Not Satisfiable", &h, b"");
        }
        Some(s) => (
            "206 Partial Content",
            format!("Content-Range: bytes {s}-{}/{}\r\n", data.len() - 1, data.len()),
            &data[s..],
        ),
        None => ("200 OK", String::new(), &data[..]),
    };
    if let Some(Fault::CutAfter(n)) = fault {
        let msg = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n",
            body.len()
        );
        stream.write_all(msg.as_bytes())?;
        stream.write_all(&body[..n.min(body.len())])?;
        stream.flush()?;
        return stream.shutdown(std::net::Shutdown::Both);
    }
    respond(&mut stream, status, &headers, body)
}

fn md5_hex(bytes: &[u8]) -> String {
    use md5::Digest;
    format!("{:x}", md5::Md5::digest(bytes))
}

/// A synthetic smallNORB (the six .mat.gz files) and `--md5 NAME=HEX` flags for its sums.
fn synthetic_set(dir: &Path) -> Vec<(String, String)> {
    norbvae::data::synth::write_small(dir, 32, 5).unwrap();
    let mut sums: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, md5_hex(&std::fs::read(&p).unwrap()))
        })
        .collect();
    sums.sort();
    assert_eq!(sums.len(), 6, "{sums:?}");
    assert!(sums.iter().all(|(n, _)| n.ends_with(".mat.gz")), "{sums:?}");
    sums
}

/// Index of the file whose name contains `part` (e.g. "training-dat").
fn find(sums: &[(String, String)], part: &str) -> usize {
    sums.iter().position(|(n, _)| n.contains(part)).unwrap()
}

fn download(server: &Server, to: &Path, sums: &[(String, String)]) -> Output {
    let mut args: Vec<String> = vec![
        "data".into(),
        "download".into(),
        "smallnorb".into(),
        "--to".into(),
        to.display().to_string(),
        "--base-url".into(),
        server.base_url.clone(),
    ];
    for (n, s) in sums {
        args.push("--md5".into());
        args.push(format!("{n}={s}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    norbvae(&args)
}

/// `download`, which must fail; its stderr.
fn failed_download(server: &Server, to: &Path, sums: &[(String, String)]) -> String {
    let o = download(server, to, sums);
    let (_, err) = text(&o);
    assert!(!o.status.success(), "{err}");
    err
}

fn same_files(a: &Path, b: &Path, sums: &[(String, String)]) {
    for (n, _) in sums {
        assert_eq!(
            std::fs::read(a.join(n)).unwrap(),
            std::fs::read(b.join(n)).unwrap(),
            "{n} differs"
        );
    }
}

fn setup() -> (tempfile::TempDir, PathBuf, Vec<(String, String)>, Server) {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("served");
    let sums = synthetic_set(&src);
    let server = Server::start(&src);
    (tmp, src, sums, server)
}

#[test]
fn downloads_verifies_and_data_info_reads_the_result() {
    let (tmp, src, sums, server) = setup();
    let to = tmp.path().join("smallnorb");
    let o = download(&server, &to, &sums);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert_eq!(out.matches("md5 ok").count(), 6, "{out}");
    same_files(&src, &to, &sums);
    assert!(!std::fs::read_dir(&to).unwrap().any(|e| e
        .unwrap()
        .path()
        .extension()
        .is_some_and(|x| x == "part")));
    let info = norbvae(&["data", "info", "--data", &format!("norb:{}", to.display())]);
    let (iout, ierr) = text(&info);
    assert!(info.status.success(), "{ierr}");
    assert!(iout.contains("900 images"), "{iout}");
    // A second run finds everything in place and asks the server nothing.
    let before = server.requests().len();
    let o = download(&server, &to, &sums);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert_eq!(out.matches("already present").count(), 6, "{out}");
    assert_eq!(server.requests().len(), before);
}

#[test]
fn an_interrupted_transfer_resumes_where_it_stopped() {
    let (tmp, src, sums, server) = setup();
    let dat = sums[find(&sums, "training-dat")].0.clone();
    let size = std::fs::metadata(src.join(&dat)).unwrap().len() as usize;
    let cut = size / 3;
    server.fault(&dat, Fault::CutAfter(cut));
    let to = tmp.path().join("smallnorb");
    let err = failed_download(&server, &to, &sums);
    assert!(
        err.contains(&dat) && err.contains("interrupted") && err.contains("resume"),
        "{err}"
    );
    let part = to.join(format!("{dat}.part"));
    assert_eq!(std::fs::metadata(&part).unwrap().len() as usize, cut);
    assert!(
        !to.join(&dat).exists(),
        "an incomplete file must not look complete"
    );
    let o = download(&server, &to, &sums);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains(&format!("resumed after {cut}")), "{out}");
    let asked: Vec<_> = server.requests().into_iter().filter(|(n, _)| *n == dat).collect();
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert_eq!(asked[0].1, None);
    assert_eq!(asked[1].1.as_deref(), Some(format!("bytes={cut}-").as_str()));
    same_files(&src, &to, &sums);
    assert!(!part.exists());
}

#[test]
fn a_wrong_checksum_removes_the_file_and_names_it() {
    let (tmp, _src, mut sums, server) = setup();
    let i = find(&sums, "testing-cat");
    let victim = sums[i].0.clone();
    sums[i].1 = "0123456789abcdef0123456789abcdef".into();
    let to = tmp.path().join("smallnorb");
    let err = failed_download(&server, &to, &sums);
    assert!(
        err.contains(&victim) && err.contains("does not match") && err.contains("removed"),
        "{err}"
    );
    assert!(!to.join(&victim).exists());
    assert!(!to.join(format!("{victim}.part")).exists());
    // The file before it (in download order) was verified and stays.
    assert!(to.join(&sums[find(&sums, "testing-dat")].0).exists());
}

#[test]
fn server_errors_fail_clearly() {
    let (tmp, _src, sums, server) = setup();
    let victim = sums[find(&sums, "training-cat")].0.clone();
    server.fault(&victim, Fault::Status(503, "Service Unavailable"));
    let to = tmp.path().join("smallnorb");
    let o = download(&server, &to, &sums);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(&victim) && err.contains("HTTP 503"), "{err}");
    assert!(!to.join(&victim).exists() && !to.join(format!("{victim}.part")).exists());
    // A file already there that does not match is left alone, with an error naming it.
    let o = norbvae(&["data", "download", "smallnorb", "--to", &to.display().to_string()]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("training-dat.mat.gz exists but its md5"), "{err}");
    assert!(to.join(&sums[find(&sums, "training-dat")].0).exists());
    // A base URL where the files are not: 404, naming the URL.
    let to = tmp.path().join("elsewhere");
    let o = norbvae(&[
        "data",
        "download",
        "smallnorb",
        "--to",
        &to.display().to_string(),
        "--base-url",
        &format!("{}missing/", server.base_url),
    ]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("missing/smallnorb-") && err.contains("HTTP 404"),
        "{err}"
    );
}

/// `data download smallnorb --to to` with `extra` options: it must fail with exit 1; its stderr.
fn download_fails(to: &str, extra: &[&str]) -> String {
    let o = norbvae(&[&["data", "download", "smallnorb", "--to", to], extra].concat());
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    err
}

#[test]
fn bad_url_and_unreachable_host_fail_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let to = tmp.path().join("smallnorb");
    let to_s = to.display().to_string();
    let err = download_fails(&to_s, &["--base-url", "not a url"]);
    assert!(err.contains("--base-url 'not a url'"), "{err}");
    // Port 1 on loopback: nothing listens there, the connection is refused.
    let t0 = Instant::now();
    let err = download_fails(&to_s, &["--base-url", "http://127.0.0.1:1/x/"]);
    assert!(
        err.contains("downloading http://127.0.0.1:1/x/smallnorb-"),
        "{err}"
    );
    assert!(t0.elapsed() < Duration::from_secs(30));
    let err = download_fails(&to_s, &["--md5", "nonsense"]);
    assert!(err.contains("--md5 nonsense"), "{err}");
}

#[test]
fn a_missing_smallnorb_directory_says_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("data/smallnorb");
    let o = norbvae(&["data", "info", "--data", &format!("norb:{}", missing.display())]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    for hint in [
        "--data norb:DIR",
        "norbvae synth",
        "norbvae data download smallnorb",
    ] {
        assert!(err.contains(hint), "{hint} missing from: {err}");
    }
}
