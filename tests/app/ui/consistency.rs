//! Data consistency in the viewer: the toggle (D) swaps the SR shown for its data-consistent
//! version, and the consistency residual map shows |result - DC(result)| in the map row.

use super::*;
use deltawkv::app::layout::PaneEmpty;
use deltawkv::plane::Plane;

fn image(h: &mut Harness<'static, DeltaApp>, kind: PaneKind) -> Plane {
    let img = h.state_mut().viewer.pane_image(kind).expect("pane image");
    (*img.plane).clone()
}

fn mean(p: &Plane) -> f64 {
    p.data.iter().map(|&v| f64::from(v)).sum::<f64>() / p.data.len() as f64
}

/// Mean |k-space truncation of the SR shown - LR| over the stored SR slices (what DC zeroes,
/// up to the [0, 1] clamp of simulate mode).
fn departure(v: &deltawkv::app::Viewer) -> f64 {
    let p = v.prepared().expect("prepared");
    let run = v.run(Slot::A).expect("run");
    let stored = p
        .reorient
        .to_stored_volume(&run.volume, &p.sr_stored)
        .expect("stored SR");
    let (mut sum, mut n) = (0.0f64, 0usize);
    for k in 0..p.sr_slices() {
        let sr = stored.slice(p.params.stored_sr_axis, k).expect("SR slice");
        let lr = p.lr_plane(k).expect("LR slice");
        let d = deltawkv::degrade::kspace_truncate(&sr, p.params.scale).expect("degrade");
        for (a, b) in d.data.iter().zip(&lr.data) {
            sum += f64::from((a - b).abs());
            n += 1;
        }
    }
    sum / n as f64
}

const SR_RESIDUAL: PaneKind = PaneKind::Map(MapKind::Residual, ResultId::Sr(Slot::A));

#[test]
fn the_toggle_swaps_in_the_consistent_sr_and_the_residual_map_follows() {
    let mut h = open_crop(Settings {
        map: Some(MapKind::Residual),
        ..test_settings()
    });
    assert_eq!(
        h.state().viewer.pane_rows()[1],
        vec![
            PaneKind::Map(MapKind::Residual, ResultId::Baseline(Baseline::Bicubic)),
            SR_RESIDUAL,
        ]
    );
    assert!(h.query_by_label("pane |SR - DC(SR)|").is_some());
    assert!(h.query_by_label("pane |bicubic - DC(bicubic)|").is_some());
    h.snapshot_options("app_consistency_residual", &snapshot_options());
    let sr_net = image(&mut h, PaneKind::Sr(Slot::A));
    let res_net = image(&mut h, SR_RESIDUAL);
    let dep_net = departure(&h.state().viewer);
    let psnr_net = h
        .state()
        .viewer
        .metrics()
        .volume(ResultId::Sr(Slot::A))
        .expect("SR metrics")
        .psnr;
    // Measured on this crop: mean residual 0.071, mean departure 0.070.
    assert!(mean(&res_net) > 0.01, "{}", mean(&res_net));
    assert!(dep_net > 0.01, "{dep_net}");

    h.key_press(Key::D);
    settle(&mut h);
    {
        let v = &h.state().viewer;
        assert!(v.settings().data_consistency);
        assert!(v.run(Slot::A).expect("run").consistent_shown);
        assert!(v.messages().iter().all(|m| !m.error), "{:?}", v.messages());
    }
    let sr_dc = image(&mut h, PaneKind::Sr(Slot::A));
    let res_dc = image(&mut h, SR_RESIDUAL);
    let dep_dc = departure(&h.state().viewer);
    assert_ne!(sr_dc, sr_net, "the SR pane shows the consistent SR");
    // What is left is the [0, 1] clamp's doing: measured 0.00050 and 0.00028 (PSNR of this
    // brightened test network: 21.4 dB without DC, 29.2 dB with).
    assert!(mean(&res_dc) < 0.1 * mean(&res_net), "{}", mean(&res_dc));
    assert!(dep_dc < 0.1 * dep_net, "{dep_dc} vs {dep_net}");
    let psnr_dc = h
        .state()
        .viewer
        .metrics()
        .volume(ResultId::Sr(Slot::A))
        .expect("SR metrics after the toggle")
        .psnr;
    assert!(
        psnr_dc > psnr_net + 3.0,
        "the metrics follow the SR shown: {psnr_net} -> {psnr_dc}"
    );

    // Off again: the network's SR and its residual, exactly.
    h.key_press(Key::D);
    settle(&mut h);
    assert!(!h.state().viewer.settings().data_consistency);
    assert_eq!(image(&mut h, PaneKind::Sr(Slot::A)), sr_net);
    assert_eq!(image(&mut h, SR_RESIDUAL), res_net);

    // Zero-filling is consistent by construction: its residual is the clamp's only (measured
    // mean 0.0021, the bicubic baseline's 0.0087).
    h.key_press(Key::B);
    h.run_steps(2);
    let zf = image(
        &mut h,
        PaneKind::Map(MapKind::Residual, ResultId::Baseline(Baseline::Zerofill)),
    );
    let bic = h
        .state()
        .viewer
        .prepared()
        .and_then(|p| p.baseline_residual(Baseline::Bicubic))
        .map(|v| {
            mean(&Plane {
                width: v.data.len(),
                height: 1,
                data: v.data.clone(),
            })
        })
        .expect("bicubic residual");
    assert!(mean(&zf) < 0.5 * bic, "{} vs {bic}", mean(&zf));
}

#[test]
fn the_residual_map_in_upscale_mode_and_its_absence_for_bicubic_lr() {
    let mut h = open_crop(Settings {
        map: Some(MapKind::Residual),
        mode: Mode::Upscale,
        ..test_settings()
    });
    assert_eq!(
        h.state().viewer.pane_rows().len(),
        2,
        "a map row without GT"
    );
    let r = image(&mut h, SR_RESIDUAL);
    assert!(mean(&r) > 0.0);
    h.key_press(Key::D);
    settle(&mut h);
    assert!(h.state().viewer.run(Slot::A).expect("run").consistent_shown);
    // Upscale mode keeps values unclamped, so only rounding is left: measured 0.070 -> 7e-9.
    let r_dc = mean(&image(&mut h, SR_RESIDUAL));
    assert!(r_dc < 1e-6 * mean(&r).max(1.0), "{r_dc}");

    // Bicubic LR: no data consistency, said so.
    let mut h = open_crop(Settings {
        map: Some(MapKind::Residual),
        degradation: Degradation::Bicubic,
        ..test_settings()
    });
    match h.state_mut().viewer.pane_image(SR_RESIDUAL) {
        Err(PaneEmpty::Error(m)) => assert!(m.contains("k-space"), "{m}"),
        other => panic!("{:?}", other.map(|i| i.stamp)),
    }
    h.key_press(Key::D);
    h.run_steps(2);
    let v = &h.state().viewer;
    assert!(!v.run(Slot::A).expect("run").consistent_shown);
    assert!(
        v.messages()
            .iter()
            .any(|m| m.text.contains("data consistency needs k-space LR")),
        "{:?}",
        v.messages()
    );
}

/// The self-ensemble (Checkpoints menu) restarts the SR run with the network averaged over the
/// eight orientations of each slice, names it in the engine label (and so in metric reports),
/// and turning it off gives the network's own SR back, bit for bit.
#[test]
fn the_self_ensemble_restarts_the_run_averaged_over_eight_orientations() {
    let mut h = open_crop(test_settings());
    let plain = image(&mut h, PaneKind::Sr(Slot::A));
    let (plain_id, plain_engine) = {
        let run = h.state().viewer.run(Slot::A).expect("run");
        (run.run_id, run.engine.clone().expect("engine"))
    };
    assert!(!plain_engine.contains("self-ensemble"), "{plain_engine}");
    let toggle = |h: &mut Harness<'static, DeltaApp>| {
        h.get_by_label("Checkpoints").click();
        h.run_steps(2);
        h.get_by_label("Self-ensemble (8 orientations)").click();
        h.run_steps(2);
        settle(h);
    };
    toggle(&mut h);
    let ensemble = image(&mut h, PaneKind::Sr(Slot::A));
    {
        let v = &h.state().viewer;
        assert!(v.settings().self_ensemble);
        let run = v.run(Slot::A).expect("run");
        assert_ne!(run.run_id, plain_id, "the run restarted");
        assert!(run.complete(), "{:?}", run.state);
        let engine = run.engine.as_deref().unwrap_or_default();
        assert_eq!(engine, format!("{plain_engine} (self-ensemble x8)"));
        assert!(v.messages().iter().all(|m| !m.error), "{:?}", v.messages());
        assert!(
            v.messages()
                .iter()
                .any(|m| m.text.contains("self-ensemble on") && m.text.contains("restarts")),
            "{:?}",
            v.messages()
        );
    }
    // The test network is not orientation-equivariant: the average differs from its SR, but
    // not by much (the same network on the same slices).
    assert_ne!(ensemble, plain);
    let d = ensemble
        .data
        .iter()
        .zip(&plain.data)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        d < 0.5 * plain.data.iter().fold(0f32, |m, v| m.max(v.abs())),
        "{d}"
    );

    toggle(&mut h);
    assert!(!h.state().viewer.settings().self_ensemble);
    assert_eq!(image(&mut h, PaneKind::Sr(Slot::A)), plain);
}
