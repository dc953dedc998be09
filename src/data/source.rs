//! A data file opened for streaming, plain or gzipped, that knows how many decoded bytes it can
//! possibly hold. Readers check a header's claimed size against that bound before allocating, so a
//! corrupt or hostile header can never trigger a huge allocation.
use super::error::{DataError, DataResult};
use flate2::read::MultiGzDecoder;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

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
        let file = File::open(path).map_err(|e| DataError::io(path, false, e))?;
        let file_len = file.metadata().map_err(|e| DataError::io(path, false, e))?.len();
        let buffered = BufReader::with_capacity(1 << 16, file);
        let reader: Box<dyn Read + Send> = if gzip {
            Box::new(MultiGzDecoder::new(buffered))
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
            Box::new(MultiGzDecoder::new(cursor))
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

    /// Read `n` bytes into a new vector. The caller has checked `n` against [`Self::remaining_bound`].
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
        let mut v = vec![0u8; n];
        self.read_exact(&mut v, what)?;
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
