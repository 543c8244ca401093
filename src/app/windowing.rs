//! Window/level maths: the intensity window shared by the LR, SR and GT panes, its mouse
//! interaction, the robust automatic window and the presets.

use serde::{Deserialize, Serialize};

/// An intensity window given by its centre (level) and width, in the volume's units.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowLevel {
    pub center: f32,
    pub width: f32,
}

/// Narrowest window allowed, as a fraction of the data range (keeps the mapping invertible).
const MIN_WIDTH_FRACTION: f32 = 1e-4;

impl WindowLevel {
    /// The window spanning `lo..hi` (swapped if given in reverse).
    pub fn from_range(lo: f32, hi: f32) -> Self {
        let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
        Self {
            center: 0.5 * (lo + hi),
            width: hi - lo,
        }
    }

    /// Lower and upper bound of the window.
    pub fn range(&self) -> (f32, f32) {
        (
            self.center - 0.5 * self.width,
            self.center + 0.5 * self.width,
        )
    }

    /// Where `v` falls in the window: 0 at the lower bound, 1 at the upper, clamped.
    /// This is what the display shader computes before the colour lookup.
    pub fn normalise(&self, v: f32) -> f32 {
        let (lo, _) = self.range();
        if self.width <= 0.0 || !v.is_finite() {
            return 0.0;
        }
        ((v - lo) / self.width).clamp(0.0, 1.0)
    }

    /// Applies a right-drag of `(dx, dy)` screen points: dragging right widens the window,
    /// dragging up raises the level (darker image), with a sensitivity proportional to
    /// `data_range` so that a drag across ~500 points sweeps the whole range.
    pub fn drag(&mut self, dx: f32, dy: f32, data_range: f32) {
        let range = if data_range.is_finite() && data_range > 0.0 {
            data_range
        } else {
            1.0
        };
        let k = range / 500.0;
        self.width = (self.width + dx * k).max(range * MIN_WIDTH_FRACTION);
        self.center -= dy * k;
    }
}

/// Window presets, each defined by percentiles of the reference volume's voxels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WindowPreset {
    /// 2nd to 98th percentile: the robust automatic window.
    Robust,
    /// 1st to 99th percentile.
    Wide,
    /// Minimum to maximum.
    Full,
    /// 10th to 90th percentile: high contrast.
    Narrow,
}

impl WindowPreset {
    /// All presets, in the order of their number keys (1..4).
    pub const ALL: [WindowPreset; 4] = [
        WindowPreset::Robust,
        WindowPreset::Wide,
        WindowPreset::Full,
        WindowPreset::Narrow,
    ];

    /// Lower and upper percentile.
    pub fn percentiles(self) -> (f32, f32) {
        match self {
            WindowPreset::Robust => (2.0, 98.0),
            WindowPreset::Wide => (1.0, 99.0),
            WindowPreset::Full => (0.0, 100.0),
            WindowPreset::Narrow => (10.0, 90.0),
        }
    }

    /// Name shown to the user.
    pub fn label(self) -> &'static str {
        match self {
            WindowPreset::Robust => "auto (2-98 %)",
            WindowPreset::Wide => "wide (1-99 %)",
            WindowPreset::Full => "full (min-max)",
            WindowPreset::Narrow => "contrast (10-90 %)",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_round_trip_and_normalise() {
        let w = WindowLevel::from_range(100.0, 300.0);
        assert_eq!(w.center, 200.0);
        assert_eq!(w.width, 200.0);
        assert_eq!(w.range(), (100.0, 300.0));
        assert_eq!(w.normalise(100.0), 0.0);
        assert_eq!(w.normalise(300.0), 1.0);
        assert_eq!(w.normalise(200.0), 0.5);
        assert_eq!(w.normalise(-5.0), 0.0);
        assert_eq!(w.normalise(1e9), 1.0);
        assert_eq!(w.normalise(f32::NAN), 0.0);
        assert_eq!(WindowLevel::from_range(3.0, 1.0).range(), (1.0, 3.0));
    }

    #[test]
    fn drag_widens_and_moves_level_and_never_collapses() {
        let mut w = WindowLevel::from_range(0.0, 100.0);
        w.drag(50.0, 0.0, 1000.0);
        assert!((w.width - 200.0).abs() < 1e-3, "{w:?}");
        assert_eq!(w.center, 50.0);
        w.drag(0.0, -50.0, 1000.0);
        assert!((w.center - 150.0).abs() < 1e-3, "{w:?}");
        w.drag(-1e6, 0.0, 1000.0);
        assert!(w.width > 0.0 && w.width <= 0.1 + 1e-6, "{w:?}");
        // A degenerate data range still gives a usable sensitivity.
        let mut z = WindowLevel::from_range(0.0, 1.0);
        z.drag(10.0, 0.0, 0.0);
        assert!(z.width > 1.0);
    }
}
