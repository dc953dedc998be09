//! A data file opened for streaming, plain or gzipped, that knows how many decoded bytes it can
//! possibly hold. Readers check a header's claimed size against that bound before allocating, so a
//! corrupt or hostile header can never trigger a huge allocation.
use super::error::{DataError, DataResult};
use flate2::bufread::GzDecoder;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// What [`Source::read_vec`] reserves before the first bytes arrive.
const INITIAL_CAPACITY: usize = 1 << 16;

/// Deflate cannot expand data by more than about 1032:1; used to bound what a `.gz` file can decode to.
const DEFLATE_MAX_RATIO: u64 = 1032;

pub struct Source {
    path: PathBuf,
    gzip: bool,
    file_len: u64,
    consumed: u64,
    reader: Box<dyn Read + Send>,
}

impl Source {
    /// Open `path`; gzip is decided by the `.gz` extension.
    pub fn open(path: &Path) -> DataResult<Self> {
        let gzip = path.extension().is_some_and(|e| e == "gz");
        // Checked before opening: opening a FIFO would block until someone writes to it.
        if !check_data_file(path)? {
            return Err(DataError::Missing {
                path: path.to_path_buf(),
                hint: String::new(),
            });
        }
        let file = File::open(path).map_err(|e| DataError::io(path, false, e))?;
        let file_len = file.metadata().map_err(|e| DataError::io(path, false, e))?.len();
        let buffered = BufReader::with_capacity(1 << 16, file);
        let reader: Box<dyn Read + Send> = if gzip {
            Box::new(GzMembers::new(buffered))
        } else {
            Box::new(buffered)
        };
        Ok(Self::new(path, gzip, file_len, reader))
    }

    /// A source over bytes already in memory (used by tests and the header fuzzer).
    pub fn from_bytes(path: &Path, gzip: bool, bytes: Vec<u8>) -> Self {
        let len = bytes.len() as u64;
        let cursor = std::io::Cursor::new(bytes);
        let reader: Box<dyn Read + Send> = if gzip {
            Box::new(GzMembers::new(cursor))
        } else {
            Box::new(cursor)
        };
        Self::new(path, gzip, len, reader)
    }

    fn new(path: &Path, gzip: bool, file_len: u64, reader: Box<dyn Read + Send>) -> Self {
        Self {
            path: path.to_path_buf(),
            gzip,
            file_len,
            consumed: 0,
            reader,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn is_gzip(&self) -> bool {
        self.gzip
    }

    /// Decoded bytes read so far.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// An upper bound on the decoded bytes still to come: exact for plain files (the rest of the
    /// file), deflate's maximum expansion for gzip.
    pub fn remaining_bound(&self) -> u64 {
        let total = if self.gzip {
            self.file_len
                .saturating_mul(DEFLATE_MAX_RATIO)
                .saturating_add(1024)
        } else {
            self.file_len
        };
        total.saturating_sub(self.consumed)
    }

    /// Plain files only: the exact number of bytes still to come.
    pub fn exact_remaining(&self) -> Option<u64> {
        (!self.gzip).then(|| self.file_len.saturating_sub(self.consumed))
    }

    /// Fill `buf` completely; a short stream is reported as a truncated file, naming `what`.
    pub fn read_exact(&mut self, buf: &mut [u8], what: &str) -> DataResult<()> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.reader.read(&mut buf[filled..]) {
                Ok(0) => {
                    return Err(DataError::format(
                        &self.path,
                        format!(
                            "truncated: {what} ends after {filled} of {} bytes (at decoded offset {})",
                            buf.len(),
                            self.consumed + filled as u64
                        ),
                    ))
                }
                Ok(k) => filled += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(DataError::io(&self.path, self.gzip, e)),
            }
        }
        self.consumed += buf.len() as u64;
        Ok(())
    }

    /// Read `n` bytes into a new vector. The vector grows with the bytes that actually arrive, so a
    /// header claiming more than the stream holds costs memory for what the stream holds, and is
    /// then reported as truncated.
    pub fn read_vec(&mut self, n: usize, what: &str) -> DataResult<Vec<u8>> {
        if n as u64 > self.remaining_bound() {
            return Err(DataError::format(
                &self.path,
                format!(
                    "{what} needs {n} bytes but the file can hold at most {}",
                    self.remaining_bound()
                ),
            ));
        }
        let mut v = Vec::with_capacity(n.min(INITIAL_CAPACITY));
        (&mut self.reader)
            .take(n as u64)
            .read_to_end(&mut v)
            .map_err(|e| DataError::io(&self.path, self.gzip, e))?;
        if v.len() < n {
            return Err(DataError::format(
                &self.path,
                format!(
                    "truncated: {what} ends after {} of the {n} bytes the header announces (at decoded offset {})",
                    v.len(),
                    self.consumed + v.len() as u64
                ),
            ));
        }
        self.consumed += n as u64;
        Ok(v)
    }

    /// Check that nothing follows the data the header described.
    pub fn expect_end(&mut self) -> DataResult<()> {
        let mut probe = [0u8; 1];
        loop {
            match self.reader.read(&mut probe) {
                Ok(0) => return Ok(()),
                Ok(_) => {
                    return Err(DataError::format(
                        &self.path,
                        format!(
                            "unexpected trailing data after the {} bytes the header describes",
                            self.consumed
                        ),
                    ))
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(DataError::io(&self.path, self.gzip, e)),
            }
        }
    }
}

/// Whether `path` is a regular file we can read: Ok(true) if so, Ok(false) if nothing is there, and
/// an error saying what is there otherwise (a directory, a FIFO, a device, a dangling symbolic
/// link, a symbolic link loop) or why it cannot be inspected (e.g. permission denied).
pub fn check_data_file(path: &Path) -> DataResult<bool> {
    use std::os::unix::fs::FileTypeExt;
    let not_a_file = |what: String| DataError::NotAFile {
        path: path.to_path_buf(),
        what,
    };
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(true),
        Ok(m) => {
            let t = m.file_type();
            let what = if t.is_dir() {
                "a directory"
            } else if t.is_fifo() {
                "a FIFO (named pipe)"
            } else if t.is_socket() {
                "a socket"
            } else if t.is_char_device() {
                "a character device"
            } else if t.is_block_device() {
                "a block device"
            } else {
                "not a regular file"
            };
            Err(not_a_file(format!("is {what}, not a data file")))
        }
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => Err(not_a_file(
            "is a symbolic link loop (too many levels of symbolic links), not a data file".into(),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match std::fs::read_link(path) {
            Ok(target) => Err(not_a_file(format!(
                "is a dangling symbolic link (to {}, which does not exist)",
                target.display()
            ))),
            Err(_) => Ok(false),
        },
        Err(e) => Err(DataError::io(path, false, e)),
    }
}

/// Like [`check_data_file`] for a dataset directory: Ok(true) if it is one, Ok(false) if nothing
/// is there, an error saying what is there instead otherwise.
pub fn check_data_dir(path: &Path) -> DataResult<bool> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(true),
        Ok(_) => Err(DataError::NotAFile {
            path: path.to_path_buf(),
            what: "is not a directory (a dataset spec names the directory that holds the files)".into(),
        }),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => Err(DataError::NotAFile {
            path: path.to_path_buf(),
            what: "is a symbolic link loop (too many levels of symbolic links)".into(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(DataError::io(path, false, e)),
    }
}

/// The message for bytes after the last gzip member that do not start another member.
pub const GZIP_TRAILING_GARBAGE: &str =
    "trailing garbage after the end of the gzip stream (not another gzip member)";

/// Decodes consecutive gzip members as `gzip -d` does, and tells what follows the last member
/// apart from a cut-off stream: bytes that do not start another member are reported as trailing
/// garbage (`InvalidData`), where a multi-member decoder would try to parse them as a header and
/// report a short one as an unexpected end of file.
struct GzMembers<R: BufRead> {
    /// None once the stream has ended.
    member: Option<GzDecoder<R>>,
}

impl<R: BufRead> GzMembers<R> {
    fn new(inner: R) -> Self {
        Self {
            member: Some(GzDecoder::new(inner)),
        }
    }
}

impl<R: BufRead> Read for GzMembers<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let Some(member) = self.member.as_mut() else {
                return Ok(0);
            };
            let k = member.read(buf)?;
            if k > 0 {
                return Ok(k);
            }
            // This member is complete (its trailer checked); bufread's decoder has consumed
            // exactly its bytes, so the rest of the input is what follows it.
            let mut inner = self
                .member
                .take()
                .map(GzDecoder::into_inner)
                .expect("member present");
            let rest = inner.fill_buf()?;
            if rest.is_empty() {
                return Ok(0);
            }
            if rest[0] != 0x1f {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    GZIP_TRAILING_GARBAGE,
                ));
            }
            self.member = Some(GzDecoder::new(inner));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn members_are_concatenated_and_garbage_is_named() {
        let mut two = gz(b"hello ");
        two.extend(gz(b"world"));
        let mut s = Source::from_bytes(Path::new("x.gz"), true, two);
        assert_eq!(s.read_vec(11, "data").unwrap(), b"hello world");
        s.expect_end().unwrap();

        for garbage in [
            &b"\0"[..],
            b"\0\0\0\0",
            b"junk after the member, long enough to be a header",
        ] {
            let mut b = gz(b"hello");
            b.extend_from_slice(garbage);
            let mut s = Source::from_bytes(Path::new("x.gz"), true, b);
            assert_eq!(s.read_vec(5, "data").unwrap(), b"hello");
            let e = s.expect_end().unwrap_err().to_string();
            assert!(e.contains("x.gz") && e.contains("trailing garbage"), "{e}");
            assert!(!e.contains("truncated"), "{e}");
        }

        // A member cut short is still reported as a truncated file.
        let b = gz(&[7u8; 4000]);
        let mut s = Source::from_bytes(Path::new("x.gz"), true, b[..b.len() - 12].to_vec());
        let e = s.read_vec(4000, "data").unwrap_err().to_string();
        assert!(
            e.contains("x.gz") && (e.contains("truncated") || e.contains("ends early")),
            "{e}"
        );
    }

    #[test]
    fn a_claim_larger_than_the_stream_is_truncated_without_allocating_the_claim() {
        let mut s = Source::from_bytes(Path::new("x"), false, vec![1u8; 100]);
        // remaining_bound refuses outright for a plain file...
        assert!(s.read_vec(1 << 40, "data").is_err());
        // ...and for gzip the bound is loose: the claim passes it, the stream runs dry.
        let mut s = Source::from_bytes(Path::new("x.gz"), true, gz(&[1u8; 100]));
        let claim = 20_000; // under 1032 x the ~30-byte file
        let e = s.read_vec(claim, "data").unwrap_err().to_string();
        assert!(
            e.contains("truncated") && e.contains("after 100 of the 20000 bytes"),
            "{e}"
        );
    }
}
