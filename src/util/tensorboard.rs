//! TensorBoard event files: scalars, PNG images and hyperparameters, readable by TensorBoard while
//! a run is still going.
//!
//! A file `events.out.tfevents.<secs>.<host>.<pid>.<n>` is a sequence of TFRecords (u64 length,
//! masked CRC-32C of the length, the serialized `Event`, masked CRC-32C of the data), the first
//! holding `file_version = "brain.Event:2"`. The messages are the few parts of TensorBoard's
//! `event.proto`, `summary.proto`, `tensor.proto` and the HParams plugin's `plugin_data.proto`
//! that we write, declared below as prost structs with their field numbers; prost does the
//! encoding, `crc32c` the checksums. (The `tensorboard-rs` crate was not used: it is marked
//! inactive by its author, pins `image` 0.23 and protobuf 2, panics on I/O errors and has no
//! hyperparameters.)
//!
//! Resume: [`EventWriter::restart_at`] writes TensorBoard's `SessionLog::START` marker. On reading,
//! TensorBoard drops every event of the earlier files with a step at or past the marker's step, so
//! the tail a killed run logged after its last checkpoint does not show twice.
use anyhow::{Context, Result};
use prost::Message;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The protobuf messages, with TensorBoard's field numbers (`tensorboard/compat/proto/*.proto`,
/// `tensorboard/plugins/hparams/plugin_data.proto`). Enums are written as their `int32` values.
pub mod proto {
    use std::collections::BTreeMap;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Event {
        #[prost(double, tag = "1")]
        pub wall_time: f64,
        #[prost(int64, tag = "2")]
        pub step: i64,
        #[prost(oneof = "What", tags = "3, 5, 7")]
        pub what: Option<What>,
    }

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum What {
        #[prost(string, tag = "3")]
        FileVersion(String),
        #[prost(message, tag = "5")]
        Summary(Summary),
        #[prost(message, tag = "7")]
        SessionLog(SessionLog),
    }

    /// `SessionLog.status`: START = 1.
    pub const SESSION_START: i32 = 1;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SessionLog {
        #[prost(int32, tag = "1")]
        pub status: i32,
        #[prost(string, tag = "3")]
        pub msg: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Summary {
        #[prost(message, repeated, tag = "1")]
        pub value: Vec<Value>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Value {
        #[prost(string, tag = "1")]
        pub tag: String,
        #[prost(message, optional, tag = "9")]
        pub metadata: Option<SummaryMetadata>,
        #[prost(oneof = "ValueKind", tags = "2, 4, 8")]
        pub value: Option<ValueKind>,
    }

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum ValueKind {
        #[prost(float, tag = "2")]
        SimpleValue(f32),
        #[prost(message, tag = "4")]
        Image(Image),
        #[prost(message, tag = "8")]
        Tensor(TensorProto),
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Image {
        #[prost(int32, tag = "1")]
        pub height: i32,
        #[prost(int32, tag = "2")]
        pub width: i32,
        /// 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA.
        #[prost(int32, tag = "3")]
        pub colorspace: i32,
        #[prost(bytes = "vec", tag = "4")]
        pub encoded_image_string: Vec<u8>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SummaryMetadata {
        #[prost(message, optional, tag = "1")]
        pub plugin_data: Option<PluginData>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PluginData {
        #[prost(string, tag = "1")]
        pub plugin_name: String,
        #[prost(bytes = "vec", tag = "2")]
        pub content: Vec<u8>,
    }

    /// `DataType.DT_FLOAT`.
    pub const DT_FLOAT: i32 = 1;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorProto {
        #[prost(int32, tag = "1")]
        pub dtype: i32,
        #[prost(message, optional, tag = "2")]
        pub tensor_shape: Option<TensorShape>,
        #[prost(float, repeated, tag = "5")]
        pub float_val: Vec<f32>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorShape {
        #[prost(message, repeated, tag = "2")]
        pub dim: Vec<Dim>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Dim {
        #[prost(int64, tag = "1")]
        pub size: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HParamsPluginData {
        #[prost(int32, tag = "1")]
        pub version: i32,
        #[prost(oneof = "HParamsData", tags = "3, 4")]
        pub data: Option<HParamsData>,
    }

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum HParamsData {
        #[prost(message, tag = "3")]
        SessionStartInfo(SessionStartInfo),
        #[prost(message, tag = "4")]
        SessionEndInfo(SessionEndInfo),
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SessionStartInfo {
        #[prost(btree_map = "string, message", tag = "1")]
        pub hparams: BTreeMap<String, prost_types::Value>,
        #[prost(string, tag = "4")]
        pub group_name: String,
        #[prost(double, tag = "5")]
        pub start_time_secs: f64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SessionEndInfo {
        /// `hparams.Status`: 1 success, 2 failure.
        #[prost(int32, tag = "1")]
        pub status: i32,
        #[prost(double, tag = "2")]
        pub end_time_secs: f64,
    }
}

const HPARAMS_PLUGIN: &str = "hparams";
const SESSION_START_INFO_TAG: &str = "_hparams_/session_start_info";
const SESSION_END_INFO_TAG: &str = "_hparams_/session_end_info";

/// A hyperparameter value as TensorBoard's HParams plugin shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum HParam {
    Number(f64),
    Text(String),
    Bool(bool),
}

/// How a run ended, for the HParams plugin's session-end record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStatus {
    Success,
    Failure,
}

/// Appends events to one new event file in a log directory.
pub struct EventWriter {
    path: PathBuf,
    out: std::io::BufWriter<std::fs::File>,
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty() && !h.contains('/'))
        .unwrap_or_else(|| "localhost".into())
}

/// CRC-32C masked as TFRecord does, so that a CRC of data holding CRCs stays well distributed.
fn masked_crc(bytes: &[u8]) -> u32 {
    let c = crc32c::crc32c(bytes);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One TFRecord: length, its masked CRC, the data, the data's masked CRC.
pub fn record_bytes(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
    out
}

/// Split a file's bytes into TFRecord payloads, checking both CRCs of each.
pub fn read_records(bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        anyhow::ensure!(rest.len() >= 12, "event file ends inside a record header");
        let (len_bytes, tail) = rest.split_at(8);
        let len = u64::from_le_bytes(len_bytes.try_into().expect("8 bytes")) as usize;
        let len_crc = u32::from_le_bytes(tail[..4].try_into().expect("4 bytes"));
        anyhow::ensure!(masked_crc(len_bytes) == len_crc, "record length CRC mismatch");
        let tail = &tail[4..];
        anyhow::ensure!(tail.len() >= len + 4, "event file ends inside a record");
        let (data, tail) = tail.split_at(len);
        let crc = u32::from_le_bytes(tail[..4].try_into().expect("4 bytes"));
        anyhow::ensure!(masked_crc(data) == crc, "record data CRC mismatch");
        out.push(data.to_vec());
        rest = &tail[4..];
    }
    Ok(out)
}

impl EventWriter {
    /// Create `dir` if needed and start a new event file in it. Each call makes a new file (a
    /// resumed run appends a file beside the earlier ones; TensorBoard reads them in name order).
    pub fn create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let secs = now_secs() as u64;
        let (host, pid) = (hostname(), std::process::id());
        let mut n = 0u32;
        let (path, file) = loop {
            let path = dir.join(format!("events.out.tfevents.{secs:010}.{host}.{pid}.{n}"));
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(f) => break (path, f),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
                Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
            }
        };
        let mut w = Self {
            path,
            out: std::io::BufWriter::new(file),
        };
        w.write_event(proto::Event {
            wall_time: now_secs(),
            step: 0,
            what: Some(proto::What::FileVersion("brain.Event:2".into())),
        })?;
        w.flush()?;
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write_event(&mut self, event: proto::Event) -> Result<()> {
        self.out
            .write_all(&record_bytes(&event.encode_to_vec()))
            .with_context(|| format!("writing {}", self.path.display()))
    }

    fn write_summary(&mut self, step: u64, values: Vec<proto::Value>) -> Result<()> {
        self.write_event(proto::Event {
            wall_time: now_secs(),
            step: step as i64,
            what: Some(proto::What::Summary(proto::Summary { value: values })),
        })
    }

    /// Scalars at one step, in one event. TensorBoard stores them as f32 (`simple_value`).
    pub fn scalars(&mut self, step: u64, values: &[(&str, f64)]) -> Result<()> {
        let values = values
            .iter()
            .map(|&(tag, v)| proto::Value {
                tag: tag.to_string(),
                metadata: None,
                value: Some(proto::ValueKind::SimpleValue(v as f32)),
            })
            .collect();
        self.write_summary(step, values)
    }

    pub fn scalar(&mut self, tag: &str, step: u64, value: f64) -> Result<()> {
        self.scalars(step, &[(tag, value)])
    }

    /// An image already encoded as PNG, `channels` 1 (grey), 3 (RGB) or 4 (RGBA).
    pub fn png(
        &mut self,
        tag: &str,
        step: u64,
        png: Vec<u8>,
        width: u32,
        height: u32,
        channels: u8,
    ) -> Result<()> {
        let image = proto::Image {
            height: height as i32,
            width: width as i32,
            colorspace: channels as i32,
            encoded_image_string: png,
        };
        self.write_summary(
            step,
            vec![proto::Value {
                tag: tag.to_string(),
                metadata: None,
                value: Some(proto::ValueKind::Image(image)),
            }],
        )
    }

    /// A PNG file's bytes; its size and colour type are read from its header.
    pub fn png_bytes(&mut self, tag: &str, step: u64, png: Vec<u8>) -> Result<()> {
        let decoder = image::codecs::png::PngDecoder::new(std::io::Cursor::new(&png))
            .with_context(|| format!("image {tag}: not a PNG"))?;
        use image::ImageDecoder;
        let (width, height) = decoder.dimensions();
        let channels = decoder.color_type().channel_count();
        self.png(tag, step, png, width, height, channels)
    }

    /// TensorBoard's restart marker: events of earlier files at `step` or later are dropped.
    pub fn restart_at(&mut self, step: u64) -> Result<()> {
        self.write_event(proto::Event {
            wall_time: now_secs(),
            step: step as i64,
            what: Some(proto::What::SessionLog(proto::SessionLog {
                status: proto::SESSION_START,
                msg: String::new(),
            })),
        })
    }

    fn hparams_event(&mut self, tag: &str, data: proto::HParamsData) -> Result<()> {
        let content = proto::HParamsPluginData {
            version: 0,
            data: Some(data),
        }
        .encode_to_vec();
        // The HParams plugin reads this through TensorBoard's tensor store, which keeps only
        // values with a tensor: an empty float vector, as TensorBoard's own hparams summary writes.
        let null_tensor = proto::TensorProto {
            dtype: proto::DT_FLOAT,
            tensor_shape: Some(proto::TensorShape {
                dim: vec![proto::Dim { size: 0 }],
            }),
            float_val: Vec::new(),
        };
        self.write_summary(
            0,
            vec![proto::Value {
                tag: tag.to_string(),
                metadata: Some(proto::SummaryMetadata {
                    plugin_data: Some(proto::PluginData {
                        plugin_name: HPARAMS_PLUGIN.into(),
                        content,
                    }),
                }),
                value: Some(proto::ValueKind::Tensor(null_tensor)),
            }],
        )
    }

    /// The HParams plugin's session-start record: this run's hyperparameters.
    pub fn hparams(&mut self, hparams: &BTreeMap<String, HParam>) -> Result<()> {
        use prost_types::value::Kind;
        let hparams = hparams
            .iter()
            .map(|(k, v)| {
                let kind = match v {
                    HParam::Number(x) => Kind::NumberValue(*x),
                    HParam::Text(s) => Kind::StringValue(s.clone()),
                    HParam::Bool(b) => Kind::BoolValue(*b),
                };
                (k.clone(), prost_types::Value { kind: Some(kind) })
            })
            .collect();
        self.hparams_event(
            SESSION_START_INFO_TAG,
            proto::HParamsData::SessionStartInfo(proto::SessionStartInfo {
                hparams,
                group_name: String::new(),
                start_time_secs: now_secs(),
            }),
        )
    }

    /// The HParams plugin's session-end record.
    pub fn session_end(&mut self, status: SessionStatus) -> Result<()> {
        let status = match status {
            SessionStatus::Success => 1,
            SessionStatus::Failure => 2,
        };
        self.hparams_event(
            SESSION_END_INFO_TAG,
            proto::HParamsData::SessionEndInfo(proto::SessionEndInfo {
                status,
                end_time_secs: now_secs(),
            }),
        )
    }

    /// Push everything written so far to the file, so a live TensorBoard sees it.
    pub fn flush(&mut self) -> Result<()> {
        self.out
            .flush()
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        let _ = self.out.flush();
    }
}

/// Flatten a serialisable value (a resolved config) into dotted keys: numbers, strings and
/// booleans as they are, arrays as their JSON text, nulls (unset options) left out.
pub fn flatten_hparams<T: serde::Serialize>(value: &T) -> Result<BTreeMap<String, HParam>> {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, HParam>) {
        use serde_json::Value as J;
        let key = |k: &str| {
            if prefix.is_empty() {
                k.to_string()
            } else {
                format!("{prefix}.{k}")
            }
        };
        match v {
            J::Object(map) => {
                for (k, v) in map {
                    walk(&key(k), v, out);
                }
            }
            J::Null => {}
            J::Bool(b) => {
                out.insert(prefix.to_string(), HParam::Bool(*b));
            }
            J::Number(n) => {
                out.insert(prefix.to_string(), HParam::Number(n.as_f64().unwrap_or(f64::NAN)));
            }
            J::String(s) => {
                out.insert(prefix.to_string(), HParam::Text(s.clone()));
            }
            J::Array(_) => {
                out.insert(prefix.to_string(), HParam::Text(v.to_string()));
            }
        }
    }
    let json = serde_json::to_value(value).context("serialising hyperparameters")?;
    let mut out = BTreeMap::new();
    walk("", &json, &mut out);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(path: &Path) -> Vec<proto::Event> {
        let bytes = std::fs::read(path).unwrap();
        read_records(&bytes)
            .unwrap()
            .iter()
            .map(|r| proto::Event::decode(r.as_slice()).unwrap())
            .collect()
    }

    #[test]
    fn masked_crc_matches_tfrecord_reference() {
        // CRC-32C("123456789") = 0xE3069283 (RFC 3720's check value), masked as TFRecord does.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(
            masked_crc(b"123456789"),
            0xE306_9283u32.rotate_right(15).wrapping_add(0xa282_ead8)
        );
    }

    #[test]
    fn events_round_trip_and_corruption_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::create(dir.path()).unwrap();
        w.scalars(3, &[("a", 1.5), ("b", -0.25)]).unwrap();
        w.restart_at(4).unwrap();
        let mut hp = BTreeMap::new();
        hp.insert("model.latent_dim".to_string(), HParam::Number(8.0));
        w.hparams(&hp).unwrap();
        w.flush().unwrap();
        let path = w.path().to_path_buf();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with("events.out.tfevents."), "{name}");
        let ev = events(&path);
        assert_eq!(ev.len(), 4);
        assert_eq!(ev[0].what, Some(proto::What::FileVersion("brain.Event:2".into())));
        let Some(proto::What::Summary(s)) = &ev[1].what else {
            panic!("not a summary: {:?}", ev[1])
        };
        assert_eq!(ev[1].step, 3);
        assert_eq!(s.value[1].tag, "b");
        assert_eq!(s.value[1].value, Some(proto::ValueKind::SimpleValue(-0.25)));
        assert!(matches!(&ev[2].what, Some(proto::What::SessionLog(l)) if l.status == proto::SESSION_START));
        // A second writer in the same directory gets its own file.
        let w2 = EventWriter::create(dir.path()).unwrap();
        assert_ne!(w2.path(), path.as_path());
        // One flipped bit in the data is caught by the CRC.
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 10;
        bytes[last] ^= 1;
        assert!(read_records(&bytes).is_err());
    }

    #[test]
    fn hparams_flatten_to_dotted_keys() {
        let v = serde_json::json!({"seed": 3, "model": {"kind": "conv", "conv": {"bn": true}},
            "train": {"max_steps": null, "sizes": [1, 2]}});
        let h = flatten_hparams(&v).unwrap();
        assert_eq!(h["seed"], HParam::Number(3.0));
        assert_eq!(h["model.kind"], HParam::Text("conv".into()));
        assert_eq!(h["model.conv.bn"], HParam::Bool(true));
        assert_eq!(h["train.sizes"], HParam::Text("[1,2]".into()));
        assert!(!h.contains_key("train.max_steps"));
    }
}
