//! GPU pinning for schedulers: Vulkan ignores `CUDA_VISIBLE_DEVICES`, so the GPU a scheduler
//! allotted (a CUDA index or GPU UUID in `CUDA_VISIBLE_DEVICES`, Slurm's device numbers in
//! `SLURM_STEP_GPUS` / `SLURM_JOB_GPUS`) is mapped to its PCI bus id through the NVIDIA driver's
//! own listing (`nvidia-smi --query-gpu=index,uuid,pci.bus_id`, or
//! `/proc/driver/nvidia/gpus/*/information`), and the wgpu adapter on that bus is used. So N
//! tasks on one node use N different GPUs.
//!
//! [`choose`] is the pure decision (environment and listings in, bus id and reason out), tested
//! on recorded inputs; [`from_system`] gathers the inputs on this machine.

use std::cmp::Ordering;

/// One NVIDIA GPU as the driver lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GpuListing {
    /// nvidia-smi's index (PCI bus order, what CUDA numbers with `CUDA_DEVICE_ORDER=PCI_BUS_ID`).
    pub index: Option<u32>,
    /// The device minor (`/dev/nvidiaN`: what Slurm's gres numbers).
    pub minor: Option<u32>,
    /// `GPU-xxxxxxxx-...`.
    pub uuid: String,
    /// Normalised `dddd:bb:dd.f` (lower-case hex, 4-digit domain), wgpu's format.
    pub pci_bus_id: String,
}

/// Which GPU the pin chose and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Pin {
    /// The PCI bus id of the allotted GPU (`dddd:bb:dd.f`); `None`: no pin (any adapter).
    pub pci_bus_id: Option<String>,
    /// Why, for the user (`CUDA_VISIBLE_DEVICES=2 -> nvidia-smi index 2 -> 0000:41:00.0`).
    pub reason: String,
}

/// A PCI bus id in wgpu's form `dddd:bb:dd.f` from nvidia-smi's `00000000:1B:00.0`, the
/// driver's `0000:1b:00.0` or a short `1b:00.0`; `None` when malformed.
pub fn normalise_bus_id(s: &str) -> Option<String> {
    let s = s.trim();
    let (head, func) = s.rsplit_once('.')?;
    let parts: Vec<&str> = head.split(':').collect();
    let (domain, bus, dev) = match parts.as_slice() {
        [d, b, v] => (*d, *b, *v),
        [b, v] => ("0", *b, *v),
        _ => return None,
    };
    let hex = |x: &str| u32::from_str_radix(x, 16).ok();
    Some(format!(
        "{:04x}:{:02x}:{:02x}.{}",
        hex(domain)?,
        hex(bus)?,
        hex(dev)?,
        hex(func)?
    ))
}

/// Parses `nvidia-smi --query-gpu=index,uuid,pci.bus_id --format=csv,noheader`.
pub fn parse_nvidia_smi(csv: &str) -> Vec<GpuListing> {
    csv.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(',').map(str::trim).collect();
            match f.as_slice() {
                [index, uuid, bus] => Some(GpuListing {
                    index: index.parse().ok(),
                    minor: None,
                    uuid: uuid.to_string(),
                    pci_bus_id: normalise_bus_id(bus)?,
                }),
                _ => None,
            }
        })
        .collect()
}

/// Parses one `/proc/driver/nvidia/gpus/<bus>/information` file (`GPU UUID:`, `Bus Location:`,
/// `Device Minor:` lines).
pub fn parse_proc_information(text: &str) -> Option<GpuListing> {
    let field = |key: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == key).then(|| v.trim().to_string())
        })
    };
    Some(GpuListing {
        index: None,
        minor: field("Device Minor").and_then(|m| m.parse().ok()),
        uuid: field("GPU UUID").unwrap_or_default(),
        pci_bus_id: normalise_bus_id(&field("Bus Location")?)?,
    })
}

/// nvidia-smi's and /proc's listings merged by bus id (index from one, minor from the other),
/// sorted by bus id.
pub fn merge(smi: &[GpuListing], proc_: &[GpuListing]) -> Vec<GpuListing> {
    let mut all: Vec<GpuListing> = smi.to_vec();
    for p in proc_ {
        match all.iter_mut().find(|g| g.pci_bus_id == p.pci_bus_id) {
            Some(g) => {
                g.minor = g.minor.or(p.minor);
                if g.uuid.is_empty() {
                    g.uuid = p.uuid.clone();
                }
            }
            None => all.push(p.clone()),
        }
    }
    all.sort_by(|a, b| a.pci_bus_id.cmp(&b.pci_bus_id));
    all
}

/// The first entry of a device list (`0,1`, `GPU-ab..,GPU-cd..`); `None` for empty, `all`,
/// `none`, `void`, `NoDevFiles`.
fn first_entry(list: &str) -> Option<&str> {
    let first = list.split(',').next()?.trim();
    let lower = first.to_lowercase();
    if first.is_empty() || ["all", "none", "void", "nodevfiles"].contains(&lower.as_str()) {
        None
    } else {
        Some(first)
    }
}

/// The GPU the environment allots among `gpus`, and why. `var` looks a variable up.
///
/// Order: a GPU UUID in `CUDA_VISIBLE_DEVICES` (or `NVIDIA_VISIBLE_DEVICES`); Slurm's device
/// numbers (`SLURM_STEP_GPUS`, else `SLURM_JOB_GPUS`: device minors, unaffected by cgroup
/// renumbering); a CUDA index in `CUDA_VISIBLE_DEVICES` (nvidia-smi's index, or the n-th GPU by
/// bus id when only /proc was read). The first of several allotted GPUs is used (one process
/// drives one GPU; run one task per GPU).
pub fn choose(var: impl Fn(&str) -> Option<String>, gpus: &[GpuListing]) -> Pin {
    let none = |reason: String| Pin {
        pci_bus_id: None,
        reason,
    };
    let found = |what: String, g: &GpuListing| Pin {
        pci_bus_id: Some(g.pci_bus_id.clone()),
        reason: format!("{what} -> PCI {}", g.pci_bus_id),
    };
    let cuda = var("CUDA_VISIBLE_DEVICES");
    let nvidia = var("NVIDIA_VISIBLE_DEVICES");
    for (name, value) in [
        ("CUDA_VISIBLE_DEVICES", &cuda),
        ("NVIDIA_VISIBLE_DEVICES", &nvidia),
    ] {
        let Some(v) = value.as_deref() else { continue };
        if let Some(e) = first_entry(v)
            && (e.starts_with("GPU-") || e.starts_with("MIG-"))
        {
            return match gpus
                .iter()
                .find(|g| !g.uuid.is_empty() && e.starts_with(&g.uuid))
            {
                Some(g) => found(format!("{name}={v}: UUID {e}"), g),
                None => none(format!(
                    "{name}={v}: no listed GPU has UUID {e} ({} listed); not pinned",
                    gpus.len()
                )),
            };
        }
    }
    if gpus.is_empty() {
        return none(
            "no NVIDIA GPU listed (no nvidia-smi, no /proc/driver/nvidia): not pinned".into(),
        );
    }
    for name in ["SLURM_STEP_GPUS", "SLURM_JOB_GPUS"] {
        let Some(v) = var(name) else { continue };
        let Some(e) = first_entry(&v) else { continue };
        let Ok(n) = e.parse::<u32>() else { continue };
        let hit = gpus
            .iter()
            .find(|g| g.minor == Some(n))
            .map(|g| (g, "device minor"))
            .or_else(|| {
                // Without /proc's minors, nvidia-smi's index is the usual numbering of gres.conf.
                gpus.iter()
                    .find(|g| g.minor.is_none() && g.index == Some(n))
                    .map(|g| (g, "nvidia-smi index"))
            });
        return match hit {
            Some((g, how)) => found(format!("{name}={v}: {how} {n}"), g),
            None => none(format!(
                "{name}={v}: no GPU with number {n} listed; not pinned"
            )),
        };
    }
    if let Some(v) = cuda.as_deref()
        && let Some(e) = first_entry(v)
        && let Ok(n) = e.parse::<u32>()
    {
        let by_index = gpus.iter().find(|g| g.index == Some(n));
        let hit = match by_index {
            Some(g) => Some((g, "nvidia-smi index")),
            None if gpus.iter().all(|g| g.index.is_none()) => {
                let mut sorted: Vec<&GpuListing> = gpus.iter().collect();
                sorted.sort_by(|a, b| match a.pci_bus_id.cmp(&b.pci_bus_id) {
                    Ordering::Equal => a.uuid.cmp(&b.uuid),
                    o => o,
                });
                sorted
                    .get(n as usize)
                    .map(|g| (*g, "n-th GPU in PCI order"))
            }
            None => None,
        };
        return match hit {
            Some((g, how)) => found(format!("CUDA_VISIBLE_DEVICES={v}: {how} {n}"), g),
            None => none(format!(
                "CUDA_VISIBLE_DEVICES={v}: no GPU with index {n} listed; not pinned"
            )),
        };
    }
    none("no GPU allotted by the environment (CUDA_VISIBLE_DEVICES, SLURM_STEP_GPUS, SLURM_JOB_GPUS unset): not pinned".into())
}

/// The NVIDIA GPUs of this machine: `nvidia-smi`'s listing (when it runs) merged with
/// `/proc/driver/nvidia/gpus/*/information`.
pub fn list_gpus() -> Vec<GpuListing> {
    let smi = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=index,uuid,pci.bus_id", "--format=csv,noheader"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| parse_nvidia_smi(&String::from_utf8_lossy(&o.stdout)))
        .unwrap_or_default();
    let proc_: Vec<GpuListing> = std::fs::read_dir("/proc/driver/nvidia/gpus")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| std::fs::read_to_string(e.path().join("information")).ok())
                .filter_map(|t| parse_proc_information(&t))
                .collect()
        })
        .unwrap_or_default();
    merge(&smi, &proc_)
}

/// The pin for this process: none when `DELTAWKV_ADAPTER` is set (the user chose), otherwise
/// [`choose`] on the environment and [`list_gpus`].
pub fn from_system() -> Pin {
    if let Ok(a) = std::env::var("DELTAWKV_ADAPTER") {
        return Pin {
            pci_bus_id: None,
            reason: format!("DELTAWKV_ADAPTER={a} set: the user's choice, not pinned"),
        };
    }
    let var = |name: &str| std::env::var(name).ok();
    let relevant = [
        "CUDA_VISIBLE_DEVICES",
        "NVIDIA_VISIBLE_DEVICES",
        "SLURM_STEP_GPUS",
        "SLURM_JOB_GPUS",
    ];
    if relevant.iter().all(|n| var(n).is_none()) {
        return choose(var, &[]);
    }
    choose(var, &list_gpus())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Recorded on a 4 x H100 node (UUIDs shortened).
    const SMI: &str = "0, GPU-1a2b3c4d-0000-1111-2222-333344445555, 00000000:1B:00.0\n\
                       1, GPU-5e6f7a8b-0000-1111-2222-333344445555, 00000000:43:00.0\n\
                       2, GPU-9c0d1e2f-0000-1111-2222-333344445555, 00000000:52:00.0\n\
                       3, GPU-3a4b5c6d-0000-1111-2222-333344445555, 00000000:61:00.0\n";

    fn proc_info(uuid: &str, bus: &str, minor: u32) -> String {
        format!(
            "Model: \t\t NVIDIA H100 80GB HBM3\nIRQ:   \t\t 0\nGPU UUID: \t {uuid}\n\
             Video BIOS: \t 96.00.74.00.01\nBus Type: \t PCIe\nDMA Size: \t 52 bits\n\
             DMA Mask: \t 0xfffffffffffff\nBus Location: \t {bus}\nDevice Minor: \t {minor}\n\
             GPU Excluded:\t No\n"
        )
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |n: &str| pairs.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone())
    }

    fn node() -> Vec<GpuListing> {
        let proc_: Vec<GpuListing> = [
            (
                "GPU-1a2b3c4d-0000-1111-2222-333344445555",
                "0000:1b:00.0",
                0,
            ),
            (
                "GPU-5e6f7a8b-0000-1111-2222-333344445555",
                "0000:43:00.0",
                1,
            ),
            // Minors need not follow bus order.
            (
                "GPU-9c0d1e2f-0000-1111-2222-333344445555",
                "0000:52:00.0",
                3,
            ),
            (
                "GPU-3a4b5c6d-0000-1111-2222-333344445555",
                "0000:61:00.0",
                2,
            ),
        ]
        .iter()
        .filter_map(|(u, b, m)| parse_proc_information(&proc_info(u, b, *m)))
        .collect();
        merge(&parse_nvidia_smi(SMI), &proc_)
    }

    #[test]
    fn bus_ids_take_wgpus_form() {
        assert_eq!(
            normalise_bus_id("00000000:1B:00.0").as_deref(),
            Some("0000:1b:00.0")
        );
        assert_eq!(normalise_bus_id("1b:00.1").as_deref(), Some("0000:1b:00.1"));
        assert_eq!(normalise_bus_id("junk"), None);
    }

    #[test]
    fn listings_parse_and_merge() {
        let gpus = node();
        assert_eq!(gpus.len(), 4);
        assert_eq!(gpus[2].index, Some(2));
        assert_eq!(gpus[2].minor, Some(3));
        assert_eq!(gpus[2].pci_bus_id, "0000:52:00.0");
    }

    #[test]
    fn cuda_index_maps_through_nvidia_smi() {
        let p = choose(env(&[("CUDA_VISIBLE_DEVICES", "2,3")]), &node());
        assert_eq!(p.pci_bus_id.as_deref(), Some("0000:52:00.0"));
        assert!(
            p.reason.contains("CUDA_VISIBLE_DEVICES=2,3"),
            "{}",
            p.reason
        );
    }

    #[test]
    fn uuid_wins_and_unknown_uuid_does_not_pin() {
        let p = choose(
            env(&[
                (
                    "CUDA_VISIBLE_DEVICES",
                    "GPU-5e6f7a8b-0000-1111-2222-333344445555",
                ),
                ("SLURM_STEP_GPUS", "3"),
            ]),
            &node(),
        );
        assert_eq!(p.pci_bus_id.as_deref(), Some("0000:43:00.0"));
        let p = choose(env(&[("CUDA_VISIBLE_DEVICES", "GPU-ffff")]), &node());
        assert_eq!(p.pci_bus_id, None);
    }

    #[test]
    fn slurm_numbers_are_device_minors() {
        // Under cgroup confinement Slurm sets CUDA_VISIBLE_DEVICES=0 but SLURM_STEP_GPUS keeps
        // the node's device number: minor 2 is the GPU on bus 61.
        let p = choose(
            env(&[("CUDA_VISIBLE_DEVICES", "0"), ("SLURM_STEP_GPUS", "2")]),
            &node(),
        );
        assert_eq!(p.pci_bus_id.as_deref(), Some("0000:61:00.0"));
        let p = choose(env(&[("SLURM_JOB_GPUS", "1")]), &node());
        assert_eq!(p.pci_bus_id.as_deref(), Some("0000:43:00.0"));
    }

    #[test]
    fn proc_only_counts_in_bus_order_and_nothing_set_does_not_pin() {
        let proc_only: Vec<GpuListing> = node()
            .into_iter()
            .map(|g| GpuListing { index: None, ..g })
            .collect();
        let p = choose(env(&[("CUDA_VISIBLE_DEVICES", "1")]), &proc_only);
        assert_eq!(p.pci_bus_id.as_deref(), Some("0000:43:00.0"));
        assert_eq!(choose(env(&[]), &node()).pci_bus_id, None);
        assert_eq!(
            choose(env(&[("CUDA_VISIBLE_DEVICES", "7")]), &node()).pci_bus_id,
            None
        );
        assert_eq!(
            choose(env(&[("NVIDIA_VISIBLE_DEVICES", "all")]), &node()).pci_bus_id,
            None
        );
        assert_eq!(
            choose(env(&[("CUDA_VISIBLE_DEVICES", "0")]), &[]).pci_bus_id,
            None
        );
    }
}
