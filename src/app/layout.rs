//! The pane grid's content, free of any window: which panes show (per mode, maps, A/B
//! comparison, presentation), and the plane each pane shows for a slice.

use serde::{Deserialize, Serialize};

use super::metrics_cache::{ResultId, Slot};
use super::runs::SrRun;
use super::session::{Mode, Prepared};
use crate::degrade::Baseline;
use crate::plane::Plane;
use crate::volume::{Axis, Volume};

/// The derived maps of a result against the ground truth.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MapKind {
    /// |result - GT|.
    AbsDiff,
    /// result - GT.
    Signed,
    /// Per-voxel SSIM.
    Ssim,
    /// Consistency residual `|result - DC(result)|` of the result as shown against the LR
    /// (see [`crate::consistency`]): what the result's central k-space says that the measured LR
    /// does not. Needs no ground truth (upscale mode has it too); k-space LR only.
    Residual,
}

impl MapKind {
    pub const ALL: [MapKind; 4] = [
        MapKind::AbsDiff,
        MapKind::Signed,
        MapKind::Ssim,
        MapKind::Residual,
    ];

    /// Name shown to the user.
    pub fn label(self) -> &'static str {
        match self {
            MapKind::AbsDiff => "|error|",
            MapKind::Signed => "signed error",
            MapKind::Ssim => "SSIM map",
            MapKind::Residual => "consistency residual",
        }
    }

    /// Whether the map compares with the ground truth (simulate mode only).
    pub fn needs_gt(self) -> bool {
        self != MapKind::Residual
    }
}

/// What a pane shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PaneKind {
    /// The LR input at the display grid, through the chosen interpolation.
    Lr,
    Sr(Slot),
    Gt,
    /// A map of a result against GT.
    Map(MapKind, ResultId),
}

impl PaneKind {
    /// Title shown on the pane.
    pub fn title(self) -> String {
        match self {
            PaneKind::Lr => "LR".to_string(),
            PaneKind::Sr(Slot::A) => "SR".to_string(),
            PaneKind::Sr(Slot::B) => "SR (B)".to_string(),
            PaneKind::Gt => "GT".to_string(),
            PaneKind::Map(m, r) => match m {
                MapKind::AbsDiff => format!("|{} - GT|", r.label()),
                MapKind::Signed => format!("{} - GT", r.label()),
                MapKind::Ssim => format!("SSIM({}, GT)", r.label()),
                MapKind::Residual => format!("|{0} - DC({0})|", r.label()),
            },
        }
    }

    /// Whether the pane shows intensities (window/level applies) rather than a map.
    pub fn is_intensity(self) -> bool {
        !matches!(self, PaneKind::Map(..))
    }
}

/// The pane grid: rows of panes.
pub fn layout(
    mode: Mode,
    compare_b: bool,
    map: Option<MapKind>,
    map_baseline: Baseline,
) -> Vec<Vec<PaneKind>> {
    let mut top = vec![PaneKind::Lr, PaneKind::Sr(Slot::A)];
    if compare_b {
        top.push(PaneKind::Sr(Slot::B));
    }
    if mode == Mode::Simulate {
        top.push(PaneKind::Gt);
    }
    let mut rows = vec![top];
    if let Some(m) = map.filter(|m| mode == Mode::Simulate || !m.needs_gt()) {
        let mut bottom = vec![
            PaneKind::Map(m, ResultId::Baseline(map_baseline)),
            PaneKind::Map(m, ResultId::Sr(Slot::A)),
        ];
        if compare_b {
            bottom.push(PaneKind::Map(m, ResultId::Sr(Slot::B)));
        }
        rows.push(bottom);
    }
    rows
}

/// The panes presentation mode cycles through with one key.
pub fn presentation_cycle(mode: Mode, compare_b: bool) -> Vec<PaneKind> {
    layout(mode, compare_b, None, Baseline::Bicubic)
        .into_iter()
        .flatten()
        .collect()
}

/// The run of `slot`, if it has one.
fn slot_run(runs: &[Option<SrRun>; 2], slot: Slot) -> Option<&SrRun> {
    runs.get(slot.index()).and_then(|r| r.as_ref())
}

/// The run of `slot` when its slice `index` along `axis` can be shown: [`PaneEmpty::NoRun`]
/// without a run, [`PaneEmpty::Pending`] while that SR slice is not computed.
fn ready_run<'a>(
    prepared: &Prepared,
    runs: &'a [Option<SrRun>; 2],
    slot: Slot,
    axis: Axis,
    index: usize,
) -> Result<&'a SrRun, PaneEmpty> {
    let run = slot_run(runs, slot).ok_or(PaneEmpty::NoRun)?;
    if axis == prepared.sr_axis && !run.done.get(index).copied().unwrap_or(false) {
        return Err(PaneEmpty::Pending);
    }
    Ok(run)
}

/// The volume a result id refers to.
pub fn result_volume<'a>(
    prepared: &'a Prepared,
    runs: &'a [Option<SrRun>; 2],
    id: ResultId,
) -> Option<&'a Volume> {
    match id {
        ResultId::Sr(slot) => slot_run(runs, slot).map(|r| &r.volume),
        ResultId::Baseline(b) => prepared.baseline(b),
    }
}

/// The consistency residual volume of a result id (`None`: no run, or no residual because the
/// LR is not k-space).
pub fn residual_volume<'a>(
    prepared: &'a Prepared,
    runs: &'a [Option<SrRun>; 2],
    id: ResultId,
) -> Option<&'a Volume> {
    match id {
        ResultId::Sr(slot) => slot_run(runs, slot).and_then(|r| r.residual.as_ref()),
        ResultId::Baseline(b) => prepared.baseline_residual(b),
    }
}

/// Why a pane has no picture.
#[derive(Clone, Debug, PartialEq)]
pub enum PaneEmpty {
    /// No ground truth in upscale mode.
    NoGroundTruth,
    /// No SR run in this slot (no checkpoint chosen).
    NoRun,
    /// The SR slice is not computed yet.
    Pending,
    /// The map cannot be computed (message).
    Error(String),
}

/// The plane a pane shows for slice `index` along `axis`, in normalised units (maps: the map's
/// own values). `lr_interp` picks the baseline that shows the LR input at the display grid.
pub fn pane_plane(
    prepared: &Prepared,
    runs: &[Option<SrRun>; 2],
    kind: PaneKind,
    axis: Axis,
    index: usize,
    lr_interp: Baseline,
) -> Result<Plane, PaneEmpty> {
    let missing = || PaneEmpty::Error(format!("slice {index} is out of range"));
    match kind {
        PaneKind::Lr => prepared
            .baseline(lr_interp)
            .and_then(|v| v.slice(axis, index))
            .ok_or_else(missing),
        PaneKind::Gt => prepared
            .gt
            .as_ref()
            .ok_or(PaneEmpty::NoGroundTruth)?
            .slice(axis, index)
            .ok_or_else(missing),
        PaneKind::Sr(slot) => ready_run(prepared, runs, slot, axis, index)?
            .volume
            .slice(axis, index)
            .ok_or_else(missing),
        PaneKind::Map(MapKind::Residual, id) => {
            if let ResultId::Sr(slot) = id {
                ready_run(prepared, runs, slot, axis, index)?;
            }
            residual_volume(prepared, runs, id)
                .ok_or_else(|| {
                    PaneEmpty::Error(format!(
                        "no consistency residual: data consistency needs k-space LR (this LR \
                         is {})",
                        prepared.params.degradation.as_str()
                    ))
                })?
                .slice(axis, index)
                .ok_or_else(missing)
        }
        PaneKind::Map(map, id) => {
            let gt = prepared
                .gt
                .as_ref()
                .ok_or(PaneEmpty::NoGroundTruth)?
                .slice(axis, index)
                .ok_or_else(missing)?;
            if let ResultId::Sr(slot) = id {
                ready_run(prepared, runs, slot, axis, index)?;
            }
            let test = result_volume(prepared, runs, id)
                .ok_or(PaneEmpty::NoRun)?
                .slice(axis, index)
                .ok_or_else(missing)?;
            map_plane(map, &gt, &test, prepared.data_range())
        }
    }
}

/// A map of `test` against `gt` (same size). Pending (NaN) voxels stay NaN in the difference
/// maps; the SSIM map needs a complete slice.
pub fn map_plane(
    map: MapKind,
    gt: &Plane,
    test: &Plane,
    data_range: f64,
) -> Result<Plane, PaneEmpty> {
    if gt.width != test.width || gt.height != test.height {
        return Err(PaneEmpty::Error(format!(
            "size mismatch: GT {}x{}, result {}x{}",
            gt.width, gt.height, test.width, test.height
        )));
    }
    match map {
        MapKind::AbsDiff | MapKind::Signed => {
            let data = gt
                .data
                .iter()
                .zip(&test.data)
                .map(|(g, t)| {
                    if map == MapKind::AbsDiff {
                        (t - g).abs()
                    } else {
                        t - g
                    }
                })
                .collect();
            Ok(Plane {
                width: gt.width,
                height: gt.height,
                data,
            })
        }
        MapKind::Ssim => {
            if test.data.iter().any(|v| !v.is_finite()) {
                return Err(PaneEmpty::Pending);
            }
            crate::metrics::ssim_map(gt, test, data_range)
                .map(|r| r.map)
                .map_err(|e| PaneEmpty::Error(format!("SSIM map: {e}")))
        }
        MapKind::Residual => Err(PaneEmpty::Error(
            "the consistency residual is not a map against the GT".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::session::prepare;
    use crate::app::session::tests::{params, phantom};
    use crate::model::Degradation;

    #[test]
    fn layouts_per_mode() {
        use PaneKind::*;
        let sim = layout(Mode::Simulate, false, None, Baseline::Bicubic);
        assert_eq!(sim, vec![vec![Lr, Sr(Slot::A), Gt]]);
        let up = layout(
            Mode::Upscale,
            false,
            Some(MapKind::AbsDiff),
            Baseline::Bicubic,
        );
        assert_eq!(
            up,
            vec![vec![Lr, Sr(Slot::A)]],
            "no GT and no maps in upscale mode"
        );
        let ab = layout(
            Mode::Simulate,
            true,
            Some(MapKind::Ssim),
            Baseline::Zerofill,
        );
        assert_eq!(ab[0], vec![Lr, Sr(Slot::A), Sr(Slot::B), Gt]);
        assert_eq!(
            ab[1],
            vec![
                Map(MapKind::Ssim, ResultId::Baseline(Baseline::Zerofill)),
                Map(MapKind::Ssim, ResultId::Sr(Slot::A)),
                Map(MapKind::Ssim, ResultId::Sr(Slot::B)),
            ]
        );
        assert_eq!(
            presentation_cycle(Mode::Simulate, false),
            vec![Lr, Sr(Slot::A), Gt]
        );
        assert_eq!(
            presentation_cycle(Mode::Upscale, false),
            vec![Lr, Sr(Slot::A)]
        );
    }

    #[test]
    fn consistency_residual_pane_and_toggle() {
        use crate::app::runs::SliceConsistency;
        let v = phantom([16, 16, 2], [1.0, 1.0, 2.0]);
        for mode in [Mode::Simulate, Mode::Upscale] {
            let p = prepare(&v, "RAS", params(mode, 2), &|| false).expect("prepare");
            assert_eq!(
                layout(mode, false, Some(MapKind::Residual), Baseline::Bicubic)[1],
                vec![
                    PaneKind::Map(MapKind::Residual, ResultId::Baseline(Baseline::Bicubic)),
                    PaneKind::Map(MapKind::Residual, ResultId::Sr(Slot::A)),
                ],
                "{mode:?}"
            );
            let mut runs: [Option<SrRun>; 2] = [Some(SrRun::new(Slot::A, 1, "t".into(), &p)), None];
            let kind = PaneKind::Map(MapKind::Residual, ResultId::Sr(Slot::A));
            let plane = |runs: &[Option<SrRun>; 2], kind| {
                pane_plane(&p, runs, kind, Axis::Axial, 0, Baseline::Nearest)
            };
            assert_eq!(plane(&runs, kind), Err(PaneEmpty::Pending));
            // An "SR" that is the nearest upsampling of the LR: not consistent.
            let lr = p.lr_plane(0).expect("lr");
            let sr = crate::degrade::nearest_upsample(&lr, 2, Degradation::Kspace).expect("up");
            let c =
                SliceConsistency::compute(&sr, &lr, 2, Degradation::Kspace, mode == Mode::Simulate)
                    .expect("dc")
                    .expect("k-space");
            let run = runs[0].as_mut().expect("run");
            assert!(run.apply_consistency(&p, 0, &c));
            assert_eq!(run.apply_stored_slice(&p, 0, &sr), Some(0));
            let net = plane(&runs, kind).expect("residual");
            let net_sr = plane(&runs, PaneKind::Sr(Slot::A)).expect("sr");
            assert!(net.data.iter().any(|&x| x > 1e-3));
            let run = runs[0].as_mut().expect("run");
            assert!(run.show_consistent(true));
            assert!(!run.show_consistent(true), "already shown");
            let dc = plane(&runs, kind).expect("residual");
            assert_ne!(plane(&runs, PaneKind::Sr(Slot::A)).expect("sr"), net_sr);
            let sum = |p: &Plane| p.data.iter().map(|&x| f64::from(x)).sum::<f64>();
            // Upscale mode: rounding only. Simulate mode: the [0, 1] clamp of the DC SR's ringing
            // at the phantom's sharp edges is left (measured 7.6 against 19.2).
            let bound = if mode == Mode::Upscale { 1e-5 } else { 0.5 };
            assert!(
                sum(&dc) < bound * sum(&net),
                "{mode:?}: {} vs {}",
                sum(&dc),
                sum(&net)
            );
            // The baselines' residuals exist for k-space LR.
            assert!(
                plane(
                    &runs,
                    PaneKind::Map(MapKind::Residual, ResultId::Baseline(Baseline::Zerofill))
                )
                .is_ok()
            );
        }
        // Bicubic LR: no residual, said so; the toggle changes nothing.
        let mut bp = params(Mode::Simulate, 2);
        bp.degradation = Degradation::Bicubic;
        let p = prepare(&v, "RAS", bp, &|| false).expect("prepare");
        assert!(p.baseline_residuals.is_empty());
        let mut run = SrRun::new(Slot::A, 1, "t".into(), &p);
        assert!(!run.show_consistent(true));
        let runs = [Some(run), None];
        let e = pane_plane(
            &p,
            &runs,
            PaneKind::Map(MapKind::Residual, ResultId::Baseline(Baseline::Bicubic)),
            Axis::Axial,
            0,
            Baseline::Nearest,
        );
        assert!(matches!(e, Err(PaneEmpty::Error(m)) if m.contains("k-space")));
    }

    #[test]
    fn pane_planes_and_pending_slices() {
        let v = phantom([16, 16, 3], [1.0, 1.0, 2.0]);
        let p = prepare(&v, "RAS", params(Mode::Simulate, 2), &|| false).expect("prepare");
        let mut runs: [Option<SrRun>; 2] = [Some(SrRun::new(Slot::A, 1, "t".into(), &p)), None];
        let lr =
            pane_plane(&p, &runs, PaneKind::Lr, Axis::Axial, 1, Baseline::Nearest).expect("lr");
        assert_eq!((lr.width, lr.height), (16, 16));
        assert_eq!(
            pane_plane(
                &p,
                &runs,
                PaneKind::Sr(Slot::A),
                Axis::Axial,
                1,
                Baseline::Nearest
            ),
            Err(PaneEmpty::Pending)
        );
        assert_eq!(
            pane_plane(
                &p,
                &runs,
                PaneKind::Sr(Slot::B),
                Axis::Axial,
                1,
                Baseline::Nearest
            ),
            Err(PaneEmpty::NoRun)
        );
        // Fill slice 1 of the SR with the GT: the |SR - GT| map is then zero.
        let g =
            p.gt.as_ref()
                .and_then(|g| g.slice(Axis::Axial, 1))
                .expect("gt");
        let run = runs[0].as_mut().expect("run");
        assert_eq!(run.apply_stored_slice(&p, 1, &g), Some(1));
        assert_eq!(run.apply_stored_slice(&p, 1, &Plane::zeros(3, 3)), None);
        assert_eq!(run.n_done, 1);
        let m = pane_plane(
            &p,
            &runs,
            PaneKind::Map(MapKind::AbsDiff, ResultId::Sr(Slot::A)),
            Axis::Axial,
            1,
            Baseline::Nearest,
        )
        .expect("map");
        assert!(m.data.iter().all(|&x| x == 0.0));
        let s = pane_plane(
            &p,
            &runs,
            PaneKind::Map(MapKind::Ssim, ResultId::Sr(Slot::A)),
            Axis::Axial,
            1,
            Baseline::Nearest,
        )
        .expect("ssim map");
        assert!(s.data.iter().all(|&x| (x - 1.0).abs() < 1e-6));
        // A coronal slice crosses pending SR slices: NaN rows, signed map keeps NaN there.
        let c = pane_plane(
            &p,
            &runs,
            PaneKind::Map(MapKind::Signed, ResultId::Sr(Slot::A)),
            Axis::Coronal,
            4,
            Baseline::Nearest,
        )
        .expect("coronal map");
        assert_eq!((c.width, c.height), (16, 3));
        assert!(c.data[0].is_nan() && c.data[16] == 0.0);
        // Upscale mode has no GT.
        let pu = prepare(&v, "RAS", params(Mode::Upscale, 2), &|| false).expect("prepare");
        assert_eq!(
            pane_plane(
                &pu,
                &[None, None],
                PaneKind::Gt,
                Axis::Axial,
                0,
                Baseline::Nearest
            ),
            Err(PaneEmpty::NoGroundTruth)
        );
    }
}
