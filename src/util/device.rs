//! The one device choice every stage runs on (`--device`): training, loading a run, the
//! sample-quality classifier and the two-stage VAE. The CLI selects it once per process; the
//! stages ask [`selected`] for it, so a run never mixes devices.
use anyhow::{bail, Result};
use candle_core::Device;
use std::str::FromStr;
use std::sync::Mutex;

/// `--device`: `auto` (the first CUDA device when built with `--features cuda` and one is
/// present, else the CPU), `cpu`, `cuda` (= `cuda:0`) or `cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    #[default]
    Auto,
    Cpu,
    Cuda(usize),
}

/// Whether this binary was built with candle's CUDA backend (`--features cuda`).
pub const CUDA_BUILT: bool = cfg!(feature = "cuda");

impl FromStr for DeviceChoice {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim().to_ascii_lowercase();
        match t.as_str() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            _ => match t.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(n)) => Ok(Self::Cuda(n)),
                _ => bail!("--device {s:?}: expected auto, cpu, cuda or cuda:N (N a GPU index, e.g. cuda:1)"),
            },
        }
    }
}

/// As `--device` takes it (`auto`, `cpu`, `cuda:N`): what a sweep passes to its children.
impl std::fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl DeviceChoice {
    /// Refuse `cuda` on a build without the `cuda` feature, without opening any device: a command
    /// that only launches others (`norbvae sweep`, possibly on a Slurm login node without a GPU)
    /// checks this much before it writes anything, and its children open the device.
    pub fn check_built(self) -> Result<Self> {
        if let Self::Cuda(n) = self {
            if !CUDA_BUILT {
                bail!(
                    "--device cuda:{n}: this norbvae was built without CUDA support; build it with \
                     `cargo build --release --features cuda` (or use --device cpu)"
                );
            }
        }
        Ok(self)
    }

    /// The device this choice stands for. `cuda` on a build without the `cuda` feature, or a GPU
    /// that cannot be opened, is an error naming `--device`.
    pub fn device(self) -> Result<Device> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Auto => Ok(auto_device()),
            Self::Cuda(n) => {
                self.check_built()?;
                Device::new_cuda(n)
                    .map_err(|e| anyhow::anyhow!("--device cuda:{n}: cannot open CUDA device {n}: {e}"))
            }
        }
    }
}

fn auto_device() -> Device {
    #[cfg(feature = "cuda")]
    {
        if let Ok(d) = Device::new_cuda(0) {
            return d;
        }
    }
    Device::Cpu
}

static SELECTED: Mutex<Option<Device>> = Mutex::new(None);

/// Select the device for the rest of this process (the CLI does, from `--device`).
pub fn select(choice: DeviceChoice) -> Result<Device> {
    let device = choice.device()?;
    *SELECTED.lock().unwrap_or_else(|p| p.into_inner()) = Some(device.clone());
    Ok(device)
}

/// The selected device, or `auto`'s when none was selected (library callers, tests): the first
/// CUDA device on a `cuda` build with a GPU, else the CPU.
pub fn selected() -> Device {
    let guard = SELECTED.lock().unwrap_or_else(|p| p.into_inner());
    match &*guard {
        Some(d) => d.clone(),
        None => auto_device(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_choice_parses_good_values() {
        let p = |s: &str| s.parse::<DeviceChoice>().unwrap();
        assert_eq!(p("auto"), DeviceChoice::Auto);
        assert_eq!(p("cpu"), DeviceChoice::Cpu);
        assert_eq!(p("CPU"), DeviceChoice::Cpu);
        assert_eq!(p("cuda"), DeviceChoice::Cuda(0));
        assert_eq!(p("cuda:0"), DeviceChoice::Cuda(0));
        assert_eq!(p("cuda:3"), DeviceChoice::Cuda(3));
        assert_eq!(DeviceChoice::default(), DeviceChoice::Auto);
    }

    #[test]
    fn device_choice_prints_as_the_option_takes_it() {
        for s in ["auto", "cpu", "cuda:0", "cuda:3"] {
            assert_eq!(s.parse::<DeviceChoice>().unwrap().to_string(), s);
        }
        assert_eq!("cuda".parse::<DeviceChoice>().unwrap().to_string(), "cuda:0");
    }

    #[test]
    fn device_choice_rejects_bad_values_naming_the_option() {
        for bad in ["", "gpu", "cuda:", "cuda:x", "cuda:-1", "cuda1", "metal", "cpu:0"] {
            let msg = bad.parse::<DeviceChoice>().unwrap_err().to_string();
            assert!(msg.contains("--device"), "{bad:?}: {msg}");
            assert!(msg.contains("auto, cpu, cuda or cuda:N"), "{bad:?}: {msg}");
        }
    }

    #[test]
    fn device_cpu_and_auto_resolve_to_the_cpu_without_the_cuda_feature() {
        assert!(DeviceChoice::Cpu.device().unwrap().is_cpu());
        if !CUDA_BUILT {
            assert!(DeviceChoice::Auto.device().unwrap().is_cpu());
            let msg = DeviceChoice::Cuda(1).device().unwrap_err().to_string();
            assert!(msg.contains("--device cuda:1"), "{msg}");
            assert!(msg.contains("--features cuda"), "{msg}");
            let msg = DeviceChoice::Cuda(1).check_built().unwrap_err().to_string();
            assert!(msg.contains("--device cuda:1"), "{msg}");
        }
        assert_eq!(DeviceChoice::Cpu.check_built().unwrap(), DeviceChoice::Cpu);
    }
}
