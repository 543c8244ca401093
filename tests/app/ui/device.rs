//! The viewer's inference device: on eframe's own wgpu device against the CPU reference, an
//! absent GPU reported while the run goes on, and a device switch restarting inference.

use super::*;

/// Engines on the viewer's device share one context: the second run's engine (a new factory, as
/// each run makes one, and another checkpoint of the same configuration) compiles no pipeline
/// the first one compiled, and gives the same result as a fresh context would.
#[test]
fn engines_on_the_viewers_device_reuse_the_first_ones_pipelines() {
    use deltawkv::app::backend::{SharedGpu, shared_engine_factory};
    use deltawkv::engine::DeviceChoice;
    use deltawkv::plane::Plane;
    let Some(ctx) = crate::common::ctx() else {
        return;
    };
    let shared = SharedGpu::new(ctx.device.clone(), ctx.queue.clone(), ctx.info.clone());
    let config = tiny_config(2, Degradation::Kspace);
    let input = [Plane::from_vec(9, 7, (0..63).map(|i| (i % 10) as f32 / 10.0).collect()).unwrap()];
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let run = |seed: u64| {
        let factory = shared_engine_factory(DeviceChoice::Gpu, shared.clone());
        let mut engine = factory(&Checkpoint::random(&config, seed)).expect("engine");
        engine
            .upscale(&input, &|_, _| {}, &cancel)
            .expect("upscale")
    };
    assert_eq!(shared.context().compiled_pipelines(), 0);
    let first = run(7);
    let compiled = shared.context().compiled_pipelines();
    assert!(compiled > 5, "{compiled} pipelines after the first run");
    let second = run(8);
    assert_eq!(
        shared.context().compiled_pipelines(),
        compiled,
        "the second engine compiled again"
    );
    assert_ne!(
        first[0].data, second[0].data,
        "two checkpoints, two results"
    );
    // the same checkpoint on a context of its own gives the same slice
    let fresh = SharedGpu::new(ctx.device.clone(), ctx.queue.clone(), ctx.info.clone());
    let mut engine =
        shared_engine_factory(DeviceChoice::Gpu, fresh)(&Checkpoint::random(&config, 8))
            .expect("engine");
    let again = engine
        .upscale(&input, &|_, _| {}, &cancel)
        .expect("upscale");
    assert_eq!(again[0].data, second[0].data);
}

#[test]
fn inference_on_the_viewers_own_wgpu_device_matches_the_cpu_reference() {
    use deltawkv::app::backend::{SharedGpu, shared_engine_factory};
    use deltawkv::engine::Upscaler;
    let ckpt = tiny_checkpoint(2);
    let mut h = Harness::builder()
        .with_size(SIZE)
        .wgpu()
        .build_eframe(move |cc| {
            let rs = cc.wgpu_render_state.as_ref().expect("wgpu render state");
            let shared = SharedGpu::new(rs.device.clone(), rs.queue.clone(), rs.adapter.get_info());
            DeltaApp::new(
                cc,
                AppOptions {
                    path: Some(data("pd_crop_96x96x6.nii.gz")),
                    checkpoint: Some(ckpt),
                    no_weights_discovery: true,
                    settings: Some(test_settings()),
                    engine_factory: Some(shared_engine_factory(
                        deltawkv::engine::DeviceChoice::Gpu,
                        shared,
                    )),
                    ..Default::default()
                },
            )
        });
    settle(&mut h);
    let v = &h.state().viewer;
    assert!(v.messages().iter().all(|m| !m.error), "{:?}", v.messages());
    let run = v.run(Slot::A).expect("run");
    assert!(run.complete(), "{:?}", run.state);
    let engine = run.engine.clone().unwrap_or_default();
    assert!(!engine.starts_with("CPU"), "engine: {engine}");
    // The same slices through the CPU reference.
    let p = v.prepared().expect("prepared");
    let CheckpointSource::Memory { checkpoint, .. } = tiny_checkpoint(2) else {
        unreachable!("memory checkpoint")
    };
    let mut cpu = deltawkv::model::cpu::CpuUpscaler::new((*checkpoint).clone()).expect("cpu");
    let inputs: Vec<_> = (0..6).filter_map(|k| p.lr_plane(k)).collect();
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let want = cpu
        .upscale(&inputs, &|_, _| {}, &cancel)
        .expect("cpu upscale");
    // Placed through the same stored-to-canonical mapping, clamped as the viewer clamps.
    let mut expect = deltawkv::app::runs::SrRun::new(Slot::A, 0, "cpu".into(), p);
    for (k, w) in want.iter().enumerate() {
        let mut w = w.clone();
        w.data.iter_mut().for_each(|x| *x = x.clamp(0.0, 1.0));
        assert!(expect.apply_stored_slice(p, k, &w).is_some());
    }
    let mut num = 0.0f64;
    let mut den = 0.0f64;
    for (a, b) in run.volume.data.iter().zip(&expect.volume.data) {
        num += f64::from(a - b).powi(2);
        den += f64::from(*b).powi(2);
    }
    let inside = expect
        .volume
        .data
        .iter()
        .filter(|x| **x > 0.0 && **x < 1.0)
        .count();
    assert!(
        inside * 10 > expect.volume.data.len(),
        "the comparison needs unclamped outputs: {inside} of {}",
        expect.volume.data.len()
    );
    let rel = (num / den.max(1e-30)).sqrt();
    assert!(
        rel < 1e-4,
        "GPU in the viewer vs CPU reference: relative error {rel}"
    );
}

#[test]
fn an_absent_gpu_is_reported_in_the_message_panel_and_the_run_goes_on() {
    use deltawkv::app::jobs::EngineFactory;
    use deltawkv::engine::{DeviceChoice, EngineError};
    // The GPU factory finds no adapter; the viewer falls back to the CPU reference.
    let no_gpu: EngineFactory = Arc::new(|_ck: &Checkpoint| {
        Err(EngineError::NoAdapter(
            "no Vulkan, Metal or DX12 adapter".into(),
        ))
    });
    let mut h = harness(AppOptions {
        path: Some(data("pd_crop_96x96x6.nii.gz")),
        checkpoint: Some(tiny_checkpoint(2)),
        no_weights_discovery: true,
        settings: Some(Settings {
            device: DeviceChoice::Gpu,
            ..test_settings()
        }),
        engine_factory: Some(no_gpu),
        ..Default::default()
    });
    settle(&mut h);
    let run = h.state().viewer.run(Slot::A).expect("run");
    assert!(run.complete(), "{:?}", run.state);
    assert!(
        run.engine.as_deref().unwrap_or_default().starts_with("CPU"),
        "{:?}",
        run.engine
    );
    // The message panel shows why and what now.
    for part in [
        "no Vulkan, Metal or DX12 adapter",
        "continuing on CPU reference",
    ] {
        assert!(
            h.query_by_label_contains(part).is_some(),
            "no message with {part:?} on screen: {:?}",
            h.state().viewer.messages()
        );
    }
}

#[test]
fn switching_the_device_restarts_inference_on_it_and_the_status_line_says_so() {
    use deltawkv::app::runs::RunState;
    use deltawkv::engine::DeviceChoice;
    // Starts on the CPU reference (test settings); switched to the GPU (lavapipe here) from the
    // Checkpoints menu while the first run may still be going, then back to the CPU.
    let mut h = harness(AppOptions {
        path: Some(data("pd_crop_96x96x6.nii.gz")),
        checkpoint: Some(tiny_checkpoint(2)),
        no_weights_discovery: true,
        settings: Some(test_settings()),
        ..Default::default()
    });
    let t0 = Instant::now();
    while h.state().viewer.run(Slot::A).is_none() {
        h.step();
        assert!(t0.elapsed() < Duration::from_secs(120), "no run started");
        std::thread::sleep(Duration::from_millis(10));
    }
    let first = h.state().viewer.run(Slot::A).map(|r| r.run_id);
    for (device, label, cpu) in [
        (DeviceChoice::Gpu, "GPU", false),
        (DeviceChoice::Cpu, "CPU reference", true),
    ] {
        let before = h.state().viewer.run(Slot::A).map(|r| r.run_id);
        h.get_by_label("Checkpoints").click();
        h.run_steps(2);
        h.get_by_label(label).click();
        h.run_steps(2);
        let v = &h.state().viewer;
        assert_eq!(v.settings().device, device);
        let run = v.run(Slot::A).expect("run");
        assert_ne!(Some(run.run_id), before, "the run restarts");
        assert_ne!(Some(run.run_id), first);
        settle(&mut h);
        let v = &h.state().viewer;
        assert!(v.messages().iter().all(|m| !m.error), "{:?}", v.messages());
        let run = v.run(Slot::A).expect("run");
        assert!(
            run.complete() && matches!(run.state, RunState::Finished(_)),
            "{:?}",
            run.state
        );
        let engine = run.engine.clone().expect("engine");
        assert_eq!(engine.starts_with("CPU"), cpu, "{label}: engine {engine}");
        let status = format!("device: {label}  |  SR on {engine}");
        assert!(
            h.query_by_label(&status).is_some(),
            "no status line {status:?}"
        );
    }
}
