//! Downloading smallNORB: the six `.mat.gz` files of NYU's distribution, with a progress bar,
//! resume of a partial download (HTTP Range) and md5 verification.
//!
//! Each file is received into `NAME.part` beside its final name; a run that is interrupted leaves
//! the `.part` file, and the next run asks the server for the rest (`Range: bytes=N-`). Only a
//! file whose md5 matches the expected sum is renamed to its final name, so a directory never
//! holds a complete-looking file that is not. A mismatching file is removed.
use super::norb::{file_name, NorbFile, NorbPart};
use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where NYU publishes smallNORB.
pub const SMALLNORB_BASE_URL: &str = "https://cs.nyu.edu/~ylclab/data/norb-v1.0-small/";

/// md5 sums of the published `.mat.gz` files, as listed by the disent library; taken as the
/// expected values (NYU's page lists none).
pub const SMALLNORB_MD5: [(NorbPart, NorbFile, &str); 6] = [
    (
        NorbPart::Training,
        NorbFile::Dat,
        "66054832f9accfe74a0f4c36a75bc0a2",
    ),
    (
        NorbPart::Training,
        NorbFile::Cat,
        "23c8b86101fbf0904a000b43d3ed2fd9",
    ),
    (
        NorbPart::Training,
        NorbFile::Info,
        "51dee1210a742582ff607dfd94e332e3",
    ),
    (
        NorbPart::Testing,
        NorbFile::Dat,
        "e4ad715691ed5a3a5f138751a4ceb071",
    ),
    (
        NorbPart::Testing,
        NorbFile::Cat,
        "5aa791cd7e6016cf957ce9bdb93b8603",
    ),
    (
        NorbPart::Testing,
        NorbFile::Info,
        "a9454f3864d7fd4bb3ea7fc3eb84924e",
    ),
];

/// One file to fetch: its name (in the base URL and on disk) and expected md5 (lower-case hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    pub name: String,
    pub md5: String,
}

/// The six smallNORB files with their published sums.
pub fn smallnorb_files() -> Vec<RemoteFile> {
    SMALLNORB_MD5
        .iter()
        .map(|&(part, file, md5)| RemoteFile {
            name: file_name(part, file, true),
            md5: md5.to_string(),
        })
        .collect()
}

#[derive(Debug, Clone)]
pub struct DownloadOptions {
    /// Directory URL the file names are appended to (`http://` or `https://`).
    pub base_url: String,
    pub files: Vec<RemoteFile>,
    /// Destination directory (created if missing).
    pub to: PathBuf,
    /// Show a progress bar per file.
    pub progress: bool,
}

/// What happened to each file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// Already present with the expected md5.
    AlreadyPresent,
    /// Downloaded; `resumed_from` bytes were already on disk from an earlier attempt.
    Downloaded { bytes: u64, resumed_from: u64 },
}

/// `name.part`: where a file is received until it is verified.
pub fn partial_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    dest.with_file_name(name)
}

fn md5_file(path: &Path) -> Result<String> {
    use md5::Digest;
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = md5::Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("{:x}", h.finalize()))
}

fn check_options(opts: &DownloadOptions) -> Result<()> {
    let url = &opts.base_url;
    if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() <= "https://".len() {
        bail!("--base-url '{url}': expected an http:// or https:// URL");
    }
    for f in &opts.files {
        let ok = f.md5.len() == 32 && f.md5.bytes().all(|b| b.is_ascii_hexdigit());
        if !ok {
            bail!("md5 for {}: '{}' is not 32 hexadecimal digits", f.name, f.md5);
        }
    }
    Ok(())
}

/// Fetch every file of `opts` into `opts.to`, one after another; stops at the first failure
/// with an error naming the file (files already verified stay).
pub fn download(opts: &DownloadOptions) -> Result<Vec<(RemoteFile, Fetched)>> {
    check_options(opts)?;
    std::fs::create_dir_all(&opts.to).with_context(|| format!("creating {}", opts.to.display()))?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .build()
        .into();
    let base = if opts.base_url.ends_with('/') {
        opts.base_url.clone()
    } else {
        format!("{}/", opts.base_url)
    };
    let mut out = Vec::new();
    for f in &opts.files {
        let url = format!("{base}{}", f.name);
        let fetched = fetch_one(
            &agent,
            &url,
            &opts.to.join(&f.name),
            &f.md5.to_ascii_lowercase(),
            opts.progress,
        )
        .with_context(|| format!("downloading {url}"))?;
        out.push((f.clone(), fetched));
    }
    Ok(out)
}

fn progress_bar(name: &str, total: Option<u64>, done: u64, show: bool) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let pb = match total {
        Some(t) => indicatif::ProgressBar::new(t),
        None => indicatif::ProgressBar::no_length(),
    };
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
        )
        .expect("static progress template")
        .progress_chars("=> "),
    );
    pb.set_prefix(name.to_string());
    pb.set_position(done);
    pb.reset_eta();
    pb
}

fn header<'a>(resp: &'a ureq::http::Response<ureq::Body>, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

fn fetch_one(agent: &ureq::Agent, url: &str, dest: &Path, md5: &str, progress: bool) -> Result<Fetched> {
    let name = dest
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    if dest.is_file() {
        let got = md5_file(dest)?;
        if got == md5 {
            return Ok(Fetched::AlreadyPresent);
        }
        // Not ours to delete: it may be another copy the user keeps there.
        bail!(
            "{} exists but its md5 {got} is not the expected {md5}; move it away (or pass the \
             expected sum with --md5) and run the command again",
            dest.display()
        );
    }
    let part = partial_path(dest);
    let have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    let mut req = agent.get(url);
    if have > 0 {
        req = req.header("Range", format!("bytes={have}-"));
    }
    let mut resp = req.call().map_err(|e| anyhow::anyhow!("{e}"))?;
    let status = resp.status().as_u16();
    let length = resp.body().content_length();
    let (mut file, start, total) = match status {
        200 => {
            // The whole file (a first request, or a server that ignores Range).
            let f = std::fs::File::create(&part).with_context(|| format!("creating {}", part.display()))?;
            (f, 0, length)
        }
        206 if have > 0 => {
            let range = header(&resp, "content-range").unwrap_or("");
            let expected = format!("bytes {have}-");
            if !range.starts_with(&expected) {
                bail!("the server answered Range: bytes={have}- with Content-Range '{range}'");
            }
            let total = range.rsplit('/').next().and_then(|t| t.parse::<u64>().ok());
            let f = std::fs::OpenOptions::new()
                .append(true)
                .open(&part)
                .with_context(|| format!("opening {}", part.display()))?;
            (f, have, total.or(length.map(|l| l + have)))
        }
        // The partial file already holds everything the server has.
        416 if have > 0 => {
            drop(resp);
            return verify(&part, dest, md5, 0, have);
        }
        s => bail!(
            "the server answered HTTP {s}{}",
            resp.status()
                .canonical_reason()
                .map(|r| format!(" {r}"))
                .unwrap_or_default()
        ),
    };
    let pb = progress_bar(&name, total, start, progress);
    let mut reader = resp.body_mut().as_reader();
    let mut buf = vec![0u8; 1 << 16];
    let mut received = start;
    let result: Result<()> = (|| loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        file.write_all(&buf[..n])
            .with_context(|| format!("writing {}", part.display()))?;
        received += n as u64;
        pb.set_position(received);
    })();
    file.flush().ok();
    file.sync_all().ok();
    pb.finish_and_clear();
    if let Err(e) = result {
        bail!(
            "transfer interrupted after {received} of {} bytes ({e:#}); {} keeps what arrived: \
             run the command again to resume",
            total.map(|t| t.to_string()).unwrap_or_else(|| "?".into()),
            part.display()
        );
    }
    if let Some(t) = total {
        if received < t {
            bail!(
                "transfer ended after {received} of {t} bytes; {} keeps what arrived: run the command \
                 again to resume",
                part.display()
            );
        }
    }
    verify(&part, dest, md5, received - start, start)
}

/// Check the received file's md5; rename it into place, or remove it.
fn verify(part: &Path, dest: &Path, md5: &str, bytes: u64, resumed_from: u64) -> Result<Fetched> {
    let got = md5_file(part)?;
    if got != md5 {
        std::fs::remove_file(part).with_context(|| format!("removing {}", part.display()))?;
        bail!(
            "{}: md5 {got} does not match the expected {md5}; the file was removed (run the \
             command again to download it anew)",
            dest.display()
        );
    }
    std::fs::rename(part, dest)
        .with_context(|| format!("renaming {} to {}", part.display(), dest.display()))?;
    Ok(Fetched::Downloaded { bytes, resumed_from })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_six_files_carry_the_reader_names_and_well_formed_sums() {
        let files = smallnorb_files();
        assert_eq!(files.len(), 6);
        assert_eq!(
            files[0].name,
            "smallnorb-5x46789x9x18x6x2x96x96-training-dat.mat.gz"
        );
        assert_eq!(
            files[5].name,
            "smallnorb-5x01235x9x18x6x2x96x96-testing-info.mat.gz"
        );
        let opts = DownloadOptions {
            base_url: SMALLNORB_BASE_URL.into(),
            files,
            to: "unused".into(),
            progress: false,
        };
        check_options(&opts).unwrap();
        for bad in ["", "ftp://host/", "cs.nyu.edu/x", "https://"] {
            let o = DownloadOptions {
                base_url: bad.into(),
                ..opts.clone()
            };
            let e = check_options(&o).unwrap_err().to_string();
            assert!(e.contains("--base-url"), "{e}");
        }
        let mut o = opts.clone();
        o.files[2].md5 = "xyz".into();
        let e = check_options(&o).unwrap_err().to_string();
        assert!(e.contains("training-info") && e.contains("xyz"), "{e}");
    }

    #[test]
    fn md5_of_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a");
        std::fs::write(&p, b"abc").unwrap();
        // RFC 1321's test vector.
        assert_eq!(md5_file(&p).unwrap(), "900150983cd24fb0d6963f7d28e17f72");
    }
}
