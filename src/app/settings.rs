//! What the viewer remembers between runs (kept apart from runtime state, which is rebuilt on
//! every start), and the keyboard shortcuts it offers.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::colormap::Colormap;
use super::geometry::Convention;
use super::layout::MapKind;
use super::session::{Mode, SrAxisChoice};
use super::windowing::WindowPreset;
use crate::degrade::Baseline;
use crate::engine::DeviceChoice;
use crate::model::Degradation;
use crate::volume::Axis;

/// Most recent files kept.
pub const MAX_RECENT: usize = 10;

/// Persisted settings (eframe storage).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Recently opened files and folders, newest first.
    pub recent: Vec<PathBuf>,
    pub mode: Mode,
    /// Upscaling factor (2 or 4).
    pub scale: usize,
    /// LR simulation in simulate mode; assumed sampling geometry in upscale mode.
    pub degradation: Degradation,
    pub sr_axis: SrAxisChoice,
    /// Slicing axis of the panes.
    pub view_axis: Axis,
    /// How the LR pane shows the LR input at the SR grid (nearest or bicubic).
    pub lr_interp: Baseline,
    pub convention: Convention,
    /// Map row under the panes (simulate mode), or none.
    pub map: Option<MapKind>,
    /// Baseline shown in the map row next to the SR map.
    pub map_baseline: Baseline,
    /// Show the data-consistent SR (central k-space replaced by the LR's; k-space LR only).
    pub data_consistency: bool,
    /// Average the network over the eight flips and transposes of each slice (eight times the
    /// inference time; [`crate::ensemble`]).
    pub self_ensemble: bool,
    /// Colour map of |error| and SSIM maps.
    pub map_colormap: Colormap,
    /// Colour map of the intensity panes.
    pub intensity_colormap: Colormap,
    /// Window preset applied when a volume opens.
    pub window_preset: WindowPreset,
    /// Bilinear display interpolation between voxels (off: nearest, voxels visible when zoomed).
    pub smooth_display: bool,
    /// Checkpoint files for A and B (None: pick from weights/).
    pub checkpoint_a: Option<PathBuf>,
    pub checkpoint_b: Option<PathBuf>,
    /// Show checkpoint B next to A.
    pub compare_b: bool,
    pub device: DeviceChoice,
    /// Per-slice PSNR plot visible.
    pub show_plot: bool,
    /// Side panel visible.
    pub show_side_panel: bool,
    /// Folder of the last file dialog.
    pub last_dir: Option<PathBuf>,
    /// UI zoom in presentation mode.
    pub presentation_zoom: f32,
    /// PACS nodes known to the viewer (File > Open from PACS, File > Send SR to PACS).
    pub pacs_nodes: Vec<PacsNode>,
    /// Index into `pacs_nodes` of the node in use.
    pub pacs_selected: usize,
}

/// A PACS the viewer talks to, as set in File > PACS nodes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PacsNode {
    /// A name for the menus (e.g. "Orthanc on this machine").
    pub name: String,
    /// The PACS's AE title (the called AE title).
    pub ae_title: String,
    /// Host name or IP address of the PACS.
    pub host: String,
    /// Its DICOM port.
    pub port: u16,
    /// Our AE title (the calling AE title; the PACS must know it).
    pub calling_ae: String,
    /// Seconds to wait to connect and for each answer.
    pub timeout_secs: f64,
    /// DICOM over TLS.
    pub tls: bool,
    /// The CA certificate (PEM) that signed the PACS's certificate (TLS); none: the system's
    /// trusted roots.
    pub tls_ca: Option<PathBuf>,
    /// Our client certificate and key (PEM), when the PACS asks for one (TLS).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

impl Default for PacsNode {
    fn default() -> Self {
        Self {
            name: "local Orthanc".into(),
            ae_title: "ORTHANC".into(),
            host: "127.0.0.1".into(),
            port: 4242,
            calling_ae: crate::pacs::DEFAULT_CALLING_AE.into(),
            timeout_secs: 30.0,
            tls: false,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl PacsNode {
    /// The node and the options of the DICOM client, or a message saying which field is wrong.
    pub fn client(&self) -> Result<(crate::pacs::Node, crate::pacs::Options), String> {
        crate::pacs::check_ae_title(&self.ae_title).map_err(|e| format!("PACS AE title: {e}"))?;
        crate::pacs::check_ae_title(&self.calling_ae)
            .map_err(|e| format!("our (calling) AE title: {e}"))?;
        if self.host.trim().is_empty() {
            return Err("the PACS host is empty".into());
        }
        if self.port == 0 {
            return Err("the PACS port is 0".into());
        }
        if !(self.timeout_secs.is_finite()
            && self.timeout_secs > 0.0
            && self.timeout_secs <= 3600.0)
        {
            return Err(format!(
                "timeout {} s: choose a number of seconds in (0, 3600]",
                self.timeout_secs
            ));
        }
        let node = crate::pacs::Node {
            ae_title: self.ae_title.trim().to_string(),
            host: self.host.trim().to_string(),
            port: self.port,
        };
        if self.tls && self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(
                "TLS: a client certificate needs its key, and a key its certificate".into(),
            );
        }
        let options = crate::pacs::Options {
            calling_ae: self.calling_ae.trim().to_string(),
            timeout: std::time::Duration::from_secs_f64(self.timeout_secs),
            tls: self.tls.then(|| crate::pacs::Tls {
                ca: self.tls_ca.clone(),
                cert: self.tls_cert.clone(),
                key: self.tls_key.clone(),
            }),
        };
        Ok((node, options))
    }

    /// `name (AET@HOST:PORT)` for menus and messages.
    pub fn label(&self) -> String {
        let tls = if self.tls { ", TLS" } else { "" };
        format!(
            "{} ({}@{}:{}{tls})",
            self.name, self.ae_title, self.host, self.port
        )
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            recent: Vec::new(),
            mode: Mode::Simulate,
            scale: 2,
            degradation: Degradation::Kspace,
            sr_axis: SrAxisChoice::Auto,
            view_axis: Axis::Axial,
            lr_interp: Baseline::Nearest,
            convention: Convention::Radiological,
            map: None,
            map_baseline: Baseline::Bicubic,
            data_consistency: false,
            self_ensemble: false,
            map_colormap: Colormap::Inferno,
            intensity_colormap: Colormap::Gray,
            window_preset: WindowPreset::Robust,
            smooth_display: false,
            checkpoint_a: None,
            checkpoint_b: None,
            compare_b: false,
            device: DeviceChoice::Auto,
            show_plot: true,
            show_side_panel: true,
            last_dir: None,
            presentation_zoom: 1.6,
            pacs_nodes: vec![PacsNode::default()],
            pacs_selected: 0,
        }
    }
}

impl Settings {
    /// Cycles the map row: off, |error|, signed, SSIM, consistency residual.
    pub fn cycle_map(&mut self) {
        self.map = match self.map {
            None => Some(MapKind::AbsDiff),
            Some(MapKind::AbsDiff) => Some(MapKind::Signed),
            Some(MapKind::Signed) => Some(MapKind::Ssim),
            Some(MapKind::Ssim) => Some(MapKind::Residual),
            Some(MapKind::Residual) => None,
        };
    }

    /// Cycles the baseline of the map row.
    pub fn cycle_map_baseline(&mut self) {
        self.map_baseline = match self.map_baseline {
            Baseline::Bicubic => Baseline::Zerofill,
            Baseline::Zerofill => Baseline::Nearest,
            Baseline::Nearest => Baseline::Bicubic,
        };
    }

    /// Toggles the LR pane interpolation between nearest and bicubic.
    pub fn toggle_lr_interp(&mut self) {
        self.lr_interp = if self.lr_interp == Baseline::Nearest {
            Baseline::Bicubic
        } else {
            Baseline::Nearest
        };
    }

    /// Puts `path` first in the recent list (no duplicates, at most [`MAX_RECENT`]).
    pub fn push_recent(&mut self, path: &Path) {
        self.recent.retain(|p| p != path);
        self.recent.insert(0, path.to_path_buf());
        self.recent.truncate(MAX_RECENT);
        if let Some(dir) = path.parent() {
            self.last_dir = Some(dir.to_path_buf());
        }
    }

    /// Repairs values a hand-edited or older settings file may hold.
    pub fn sanitize(&mut self) {
        if self.scale != 2 && self.scale != 4 {
            self.scale = 2;
        }
        if self.lr_interp != Baseline::Nearest && self.lr_interp != Baseline::Bicubic {
            self.lr_interp = Baseline::Nearest;
        }
        if !(self.presentation_zoom.is_finite() && (1.0..=4.0).contains(&self.presentation_zoom)) {
            self.presentation_zoom = 1.6;
        }
        self.recent.truncate(MAX_RECENT);
        if self.pacs_selected >= self.pacs_nodes.len() {
            self.pacs_selected = 0;
        }
    }

    /// The PACS node in use, if any.
    pub fn pacs_node(&self) -> Option<&PacsNode> {
        self.pacs_nodes.get(self.pacs_selected)
    }
}

/// One keyboard or mouse shortcut, for the help window and the README.
pub struct Shortcut {
    pub keys: &'static str,
    pub action: &'static str,
}

/// Every shortcut the viewer handles (the help window lists exactly these).
pub const SHORTCUTS: &[Shortcut] = &[
    Shortcut {
        keys: "F1 or ?",
        action: "show / hide this help",
    },
    Shortcut {
        keys: "Ctrl+O",
        action: "open a volume file (NIfTI, DICOM)",
    },
    Shortcut {
        keys: "Ctrl+Shift+O",
        action: "open a DICOM folder",
    },
    Shortcut {
        keys: "Left click / drag",
        action: "move the crosshair (all panes)",
    },
    Shortcut {
        keys: "Mouse wheel",
        action: "previous / next slice",
    },
    Shortcut {
        keys: "Up / Down arrow",
        action: "next / previous slice",
    },
    Shortcut {
        keys: "Page Up / Page Down",
        action: "10 slices forward / back",
    },
    Shortcut {
        keys: "Home / End",
        action: "first / last slice",
    },
    Shortcut {
        keys: "Z / Y / X",
        action: "axial / coronal / sagittal slices",
    },
    Shortcut {
        keys: "Ctrl+wheel, + / -",
        action: "zoom in / out (all panes)",
    },
    Shortcut {
        keys: "Middle drag or Shift+left drag",
        action: "pan (all panes)",
    },
    Shortcut {
        keys: "0",
        action: "reset zoom and pan",
    },
    Shortcut {
        keys: "Right drag",
        action: "window (horizontal) / level (vertical); on a map: its scale",
    },
    Shortcut {
        keys: "W",
        action: "automatic window (2nd-98th percentile)",
    },
    Shortcut {
        keys: "1 / 2 / 3 / 4",
        action: "window presets: auto, wide, full, contrast",
    },
    Shortcut {
        keys: "M",
        action: "map row: off / absolute error / signed error / SSIM map / consistency residual",
    },
    Shortcut {
        keys: "D",
        action: "data consistency: SR with the LR's central k-space / the network's SR",
    },
    Shortcut {
        keys: "B",
        action: "baseline of the map row: bicubic / zero-filled / nearest",
    },
    Shortcut {
        keys: "C",
        action: "colour map of the absolute-error and SSIM maps",
    },
    Shortcut {
        keys: "F",
        action: "flip: show GT in the SR pane (press again for SR)",
    },
    Shortcut {
        keys: "I",
        action: "LR pane interpolation: nearest / bicubic",
    },
    Shortcut {
        keys: "S",
        action: "smooth (bilinear) display on / off",
    },
    Shortcut {
        keys: "F11 or P",
        action: "presentation mode (full screen, one large pane)",
    },
    Shortcut {
        keys: "Space or Tab",
        action: "presentation: next pane (LR / SR / GT)",
    },
    Shortcut {
        keys: "Esc",
        action: "leave presentation mode / close help",
    },
    Shortcut {
        keys: "Ctrl+Period",
        action: "cancel inference",
    },
    Shortcut {
        keys: "Ctrl+S",
        action: "export the SR volume as NIfTI",
    },
    Shortcut {
        keys: "Ctrl+Shift+S",
        action: "export the SR as a derived DICOM series (a new folder)",
    },
    Shortcut {
        keys: "F12",
        action: "save a PNG of the panes at 2x resolution",
    },
    Shortcut {
        keys: "Ctrl+E",
        action: "export metrics (CSV)",
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_list_is_deduplicated_and_bounded() {
        let mut s = Settings::default();
        for i in 0..15 {
            s.push_recent(Path::new(&format!("/d/{i}.nii")));
        }
        s.push_recent(Path::new("/d/3.nii"));
        assert_eq!(s.recent.len(), MAX_RECENT);
        assert_eq!(s.recent[0], PathBuf::from("/d/3.nii"));
        assert_eq!(s.recent.iter().filter(|p| p.ends_with("3.nii")).count(), 1);
        assert_eq!(s.last_dir, Some(PathBuf::from("/d")));
    }

    #[test]
    fn settings_round_trip_and_tolerate_missing_or_bad_fields() {
        let s = Settings {
            scale: 4,
            map: Some(MapKind::Ssim),
            view_axis: Axis::Sagittal,
            ..Default::default()
        };
        let json = serde_json::to_string(&s).expect("serialise");
        let back: Settings = serde_json::from_str(&json).expect("deserialise");
        assert_eq!(back, s);
        // An older file with fewer fields gets defaults for the rest.
        let old: Settings = serde_json::from_str(r#"{"scale": 4}"#).expect("partial");
        assert_eq!(old.scale, 4);
        assert_eq!(old.map_colormap, Colormap::Inferno);
        let mut bad: Settings = serde_json::from_str(r#"{"scale": 3, "presentation_zoom": 99}"#)
            .expect("bad values parse");
        bad.sanitize();
        assert_eq!(bad.scale, 2);
        assert_eq!(bad.presentation_zoom, 1.6);
    }

    #[test]
    fn shortcut_table_has_no_duplicate_keys() {
        let mut keys: Vec<&str> = SHORTCUTS.iter().map(|s| s.keys).collect();
        keys.sort_unstable();
        let n = keys.len();
        keys.dedup();
        assert_eq!(keys.len(), n);
    }
}
