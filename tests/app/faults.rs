//! Faults in the viewer's job machinery, driven on its state without a window (issue #6): a new
//! file opened while inference runs cancels the old job (no stale slice reaches the new volume,
//! its worker ends), a failed or cancelled run leaves the viewer usable with a message, and an
//! absent or lost GPU moves the run to the CPU reference with a message. Backends are scripted
//! fakes (timing, failures) or the CPU reference with a tiny random checkpoint.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use deltawkv::app::jobs::{CheckpointSource, EngineFactory, Event, SrEvent};
use deltawkv::app::metrics_cache::Slot;
use deltawkv::app::runs::RunState;
use deltawkv::app::{AppOptions, Settings, Viewer};
use deltawkv::engine::{DeviceChoice, EngineError, Progress, Upscaler};
use deltawkv::model::{Checkpoint, Degradation};
use deltawkv::plane::Plane;

use crate::common::tiny_config;

fn crop() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/app/pd_crop_96x96x6.nii.gz")
}

fn tiny_checkpoint() -> Arc<Checkpoint> {
    let config = tiny_config(2, Degradation::Kspace);
    Arc::new(Checkpoint::random(&config, 7))
}

fn tiny_source() -> CheckpointSource {
    CheckpointSource::Memory {
        label: "tiny random x2".into(),
        checkpoint: tiny_checkpoint(),
    }
}

/// What a scripted engine does.
#[derive(Clone)]
struct Script {
    /// Value of every output voxel.
    value: f32,
    /// Time per slice (cancel is checked every 5 ms meanwhile).
    delay: Duration,
    /// Fails its `n`th call (0-based) with the error made by `error`.
    fail_at: Option<usize>,
    error: fn() -> EngineError,
}

impl Script {
    fn constant(value: f32, delay_ms: u64) -> Self {
        Self {
            value,
            delay: Duration::from_millis(delay_ms),
            fail_at: None,
            error: || EngineError::Internal("unused".into()),
        }
    }
}

/// Counters shared by a fake factory and its engines.
#[derive(Default)]
struct Counters {
    created: AtomicUsize,
    alive: AtomicUsize,
    calls: AtomicUsize,
    saw_cancel: AtomicBool,
}

struct FakeEngine {
    script: Script,
    calls: usize,
    counters: Arc<Counters>,
}

impl Drop for FakeEngine {
    fn drop(&mut self) {
        self.counters.alive.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Upscaler for FakeEngine {
    fn describe(&self) -> String {
        format!("fake GPU ({})", self.script.value)
    }
    fn scale(&self) -> usize {
        2
    }
    fn upscale(
        &mut self,
        inputs: &[Plane],
        _progress: Progress<'_>,
        cancel: &AtomicBool,
    ) -> Result<Vec<Plane>, EngineError> {
        let call = self.calls;
        self.calls += 1;
        self.counters.calls.fetch_add(1, Ordering::SeqCst);
        let t0 = Instant::now();
        while t0.elapsed() < self.script.delay {
            if cancel.load(Ordering::Relaxed) {
                self.counters.saw_cancel.store(true, Ordering::SeqCst);
                return Err(EngineError::Cancelled);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if self.script.fail_at == Some(call) {
            return Err((self.script.error)());
        }
        Ok(inputs
            .iter()
            .map(|p| Plane {
                width: p.width * 2,
                height: p.height * 2,
                data: vec![self.script.value; p.width * p.height * 4],
            })
            .collect())
    }
}

/// A factory whose `n`th engine follows `scripts[n]` (the last one repeats); `Err` scripts fail
/// at creation.
fn fake_factory(
    scripts: Vec<Result<Script, fn() -> EngineError>>,
) -> (EngineFactory, Arc<Counters>) {
    let counters = Arc::new(Counters::default());
    let c = counters.clone();
    let f: EngineFactory = Arc::new(move |_ck: &Checkpoint| {
        let n = c.created.fetch_add(1, Ordering::SeqCst);
        let script = scripts
            .get(n)
            .or(scripts.last())
            .cloned()
            .ok_or_else(|| EngineError::Internal("no script".into()))?;
        let script = script.map_err(|make| make())?;
        c.alive.fetch_add(1, Ordering::SeqCst);
        let engine: Box<dyn Upscaler> = Box::new(FakeEngine {
            script,
            calls: 0,
            counters: c.clone(),
        });
        Ok(engine)
    });
    (f, counters)
}

fn settings(device: DeviceChoice) -> Settings {
    Settings {
        device,
        ..Settings::default()
    }
}

/// A windowless viewer on the crop with the given backend.
fn viewer(factory: EngineFactory, device: DeviceChoice) -> Viewer {
    Viewer::new(
        AppOptions {
            path: Some(crop()),
            checkpoint: Some(tiny_source()),
            no_weights_discovery: true,
            settings: Some(settings(device)),
            engine_factory: Some(factory),
            ..Default::default()
        },
        settings(device),
        None,
        Arc::new(|| {}),
    )
}

/// Applies reports until `done` holds (panics after 120 s).
fn wait_for(v: &mut Viewer, what: &str, done: impl Fn(&Viewer) -> bool) {
    let t0 = Instant::now();
    loop {
        v.poll();
        if done(v) {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "timed out waiting for {what}: {:?}",
            v.messages()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn settle(v: &mut Viewer) {
    wait_for(v, "the viewer to settle", |v| !v.busy());
}

/// Waits until `counter` reaches `want` (a worker thread finishing after its last report).
fn wait_count(counter: &AtomicUsize, want: usize, what: &str) {
    let t0 = Instant::now();
    while counter.load(Ordering::SeqCst) != want {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{what}: {} (want {want})",
            counter.load(Ordering::SeqCst)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn run_a(v: &Viewer) -> &deltawkv::app::runs::SrRun {
    v.run(Slot::A).expect("run A")
}

fn messages(v: &Viewer) -> String {
    v.messages()
        .iter()
        .map(|m| format!("[{}] {}", if m.error { "error" } else { "info" }, m.text))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn opening_a_new_file_while_inference_runs_cancels_the_old_job() {
    // A second volume with other dimensions: the crop's first four slices.
    let dir = tempfile::tempdir().expect("tempdir");
    let second = dir.path().join("second.nii.gz");
    let mut vol = deltawkv::volume::load(&crop(), &Default::default()).expect("load crop");
    vol.dims[2] = 4;
    vol.data.truncate(96 * 96 * 4);
    deltawkv::volume::save_nifti(&vol, &second).expect("write the second volume");

    // The first engine is slow and writes 0.25; the next ones are fast and write 0.75.
    let (factory, counters) = fake_factory(vec![
        Ok(Script::constant(0.25, 400)),
        Ok(Script::constant(0.75, 0)),
    ]);
    let mut v = viewer(factory, DeviceChoice::Cpu);
    wait_for(&mut v, "the first slice", |v| {
        v.run(Slot::A).is_some_and(|r| r.n_done >= 1)
    });
    let old_run = run_a(&v).run_id;
    assert!(!run_a(&v).complete(), "the slow run is still going");

    v.open(second.clone(), None);
    // The old run is marked cancelled at once; its worker stops within one slice.
    assert_eq!(run_a(&v).state, RunState::Cancelled);
    settle(&mut v);
    wait_count(&counters.alive, 0, "engines still alive after the old job");
    assert!(
        counters.saw_cancel.load(Ordering::SeqCst),
        "the old engine saw the cancel"
    );
    assert!(
        counters.calls.load(Ordering::SeqCst) < 6 + 4,
        "the old job stopped early: {} calls",
        counters.calls.load(Ordering::SeqCst)
    );
    assert_eq!(counters.created.load(Ordering::SeqCst), 2);

    let p = v.prepared().cloned().expect("the new volume is prepared");
    assert_eq!(p.sr_stored_dims, [96, 96, 4]);
    let run = run_a(&v);
    assert_ne!(run.run_id, old_run);
    assert!(run.complete(), "{:?}", run.state);
    assert!(
        run.volume.data.iter().all(|&x| x == 0.75),
        "a value of the old job reached the new volume"
    );
    assert!(v.messages().iter().all(|m| !m.error), "{}", messages(&v));

    // A late report of the old job (a slice finished after the cancel) is dropped.
    let before = run.volume.data.clone();
    v.handle(Event::Sr {
        run_id: old_run,
        slot: Slot::A,
        event: SrEvent::Slice {
            index: 0,
            // The size of a new SR slice: only the run id tells it apart.
            plane: Plane {
                width: 96,
                height: 96,
                data: vec![0.25; 96 * 96],
            },
            secs: 0.1,
        },
    });
    v.handle(Event::Sr {
        run_id: old_run,
        slot: Slot::A,
        event: SrEvent::Failed("stale failure".into()),
    });
    let run = run_a(&v);
    assert_eq!(run.volume.data, before);
    assert!(
        matches!(run.state, RunState::Finished(_)),
        "{:?}",
        run.state
    );
    assert!(v.messages().iter().all(|m| !m.text.contains("stale")));
}

#[test]
fn a_failed_inference_leaves_the_viewer_usable_with_a_message() {
    // The first engine fails on its third slice (not a device fault); the next one works.
    let (factory, counters) = fake_factory(vec![
        Ok(Script {
            fail_at: Some(2),
            error: || EngineError::Internal("kernel returned garbage".into()),
            ..Script::constant(0.5, 0)
        }),
        Ok(Script::constant(0.5, 0)),
    ]);
    let mut v = viewer(factory, DeviceChoice::Gpu);
    settle(&mut v);
    let run = run_a(&v);
    assert!(
        matches!(&run.state, RunState::Failed(e) if e.contains("kernel returned garbage")),
        "{:?}",
        run.state
    );
    assert_eq!(run.n_done, 2, "the slices done before the failure stay");
    assert!(
        v.messages()
            .iter()
            .any(|m| m.error && m.text.contains("SR failed") && m.text.contains("garbage")),
        "{}",
        messages(&v)
    );
    wait_count(&counters.alive, 0, "engine of the failed run");
    // Still usable: navigation works, and inference runs again.
    assert!(v.prepared().is_some());
    let k = v.crosshair().slice();
    v.step_slice(1);
    assert_eq!(v.crosshair().slice(), k + 1);
    v.start_run(Slot::A);
    settle(&mut v);
    assert!(run_a(&v).complete(), "{:?}", run_a(&v).state);

    // An engine that cannot start (not a device fault): a message, no run, no crash.
    let (factory, _) = fake_factory(vec![Err(|| {
        EngineError::Checkpoint("unsupported network shape".into())
    })]);
    let mut v = viewer(factory, DeviceChoice::Gpu);
    settle(&mut v);
    assert!(
        matches!(&run_a(&v).state, RunState::Failed(e) if e.contains("cannot start the engine")),
        "{:?}",
        run_a(&v).state
    );
    assert!(
        v.messages()
            .iter()
            .any(|m| m.error && m.text.contains("unsupported network shape")),
        "{}",
        messages(&v)
    );

    // A checkpoint of the wrong scale, then a file that is not a checkpoint.
    let mut v = viewer(backend_cpu(), DeviceChoice::Cpu);
    settle(&mut v);
    let mut x4 = (*tiny_checkpoint()).clone();
    x4.config.scale = 4;
    v.set_checkpoint(
        Slot::A,
        CheckpointSource::Memory {
            label: "x4 net".into(),
            checkpoint: Arc::new(x4),
        },
    );
    settle(&mut v);
    assert!(
        v.messages()
            .iter()
            .any(|m| m.error && m.text.contains("x4 net upscales x4")),
        "{}",
        messages(&v)
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"\x10\0\0\0\0\0\0\0{\"a\": 1}        ").expect("write");
    v.set_checkpoint(Slot::A, CheckpointSource::File(junk));
    settle(&mut v);
    assert!(
        v.messages()
            .iter()
            .any(|m| m.error && m.text.contains("junk.safetensors")),
        "{}",
        messages(&v)
    );
    // And a good checkpoint again works.
    v.set_checkpoint(Slot::A, tiny_source());
    settle(&mut v);
    assert!(run_a(&v).complete(), "{:?}", run_a(&v).state);
}

fn backend_cpu() -> EngineFactory {
    deltawkv::app::backend::cpu_engine_factory()
}

#[test]
fn cancelling_keeps_finished_slices_and_says_how_to_go_on() {
    let (factory, counters) = fake_factory(vec![Ok(Script::constant(0.5, 300))]);
    let mut v = viewer(factory, DeviceChoice::Cpu);
    wait_for(&mut v, "the first slice", |v| {
        v.run(Slot::A).is_some_and(|r| r.n_done >= 1)
    });
    v.user_cancel(Slot::A);
    settle(&mut v);
    wait_count(&counters.alive, 0, "engine of the cancelled run");
    let run = run_a(&v);
    assert_eq!(run.state, RunState::Cancelled);
    assert!(run.n_done >= 1 && run.n_done < 6, "{}", run.n_done);
    assert!(
        v.messages()
            .iter()
            .any(|m| !m.error && m.text.contains("cancelled at") && m.text.contains("Restart")),
        "{}",
        messages(&v)
    );
    // Restart: a new run completes.
    v.start_run(Slot::A);
    settle(&mut v);
    assert!(run_a(&v).complete());
}

#[test]
fn an_absent_gpu_falls_back_to_the_cpu_reference_with_a_message() {
    let (factory, _) = fake_factory(vec![Err(|| {
        EngineError::NoAdapter("no Vulkan, Metal or DX12 adapter".into())
    })]);
    let mut v = viewer(factory, DeviceChoice::Gpu);
    settle(&mut v);
    let run = run_a(&v);
    assert!(run.complete(), "{:?} {}", run.state, messages(&v));
    let engine = run.engine.clone().unwrap_or_default();
    assert!(engine.starts_with("CPU"), "engine: {engine}");
    assert!(
        v.messages()
            .iter()
            .any(|m| m.text.contains("could not start")
                && m.text.contains("no Vulkan")
                && m.text.contains("continuing on CPU")),
        "{}",
        messages(&v)
    );
    // The CPU reference's result, as without any GPU.
    let mut cpu = deltawkv::app::backend::cpu_engine_factory()(&tiny_checkpoint()).expect("cpu");
    let p = v.prepared().cloned().expect("prepared");
    let k = 3;
    let want = cpu
        .upscale(
            &[p.lr_plane(k).expect("slice")],
            &|_, _| {},
            &AtomicBool::new(false),
        )
        .expect("cpu upscale");
    let mut expect = deltawkv::app::runs::SrRun::new(Slot::A, 0, "cpu".into(), &p);
    let mut w = want[0].clone();
    w.data.iter_mut().for_each(|x| *x = x.clamp(0.0, 1.0));
    let c = expect.apply_stored_slice(&p, k, &w).expect("fits");
    let axis = p.sr_axis;
    let got = v
        .run(Slot::A)
        .and_then(|r| r.volume.slice(axis, c))
        .expect("slice");
    let exp = expect.volume.slice(axis, c).expect("slice");
    assert_eq!(got.data, exp.data);

    // With the CPU chosen there is nothing to fall back to: the run fails with the message.
    let (factory, _) = fake_factory(vec![Err(|| EngineError::NoAdapter("none".into()))]);
    let mut v = viewer(factory, DeviceChoice::Cpu);
    settle(&mut v);
    assert!(
        matches!(&run_a(&v).state, RunState::Failed(e) if e.contains("no usable GPU adapter")),
        "{:?}",
        run_a(&v).state
    );
}

#[test]
fn a_gpu_lost_mid_run_continues_on_the_cpu_reference() {
    // The GPU engine writes 0.25 and loses its device on its fourth slice.
    let (factory, counters) = fake_factory(vec![Ok(Script {
        fail_at: Some(3),
        error: || EngineError::Device("VK_ERROR_DEVICE_LOST".into()),
        ..Script::constant(0.25, 0)
    })]);
    let mut v = viewer(factory, DeviceChoice::Auto);
    settle(&mut v);
    let run = run_a(&v);
    assert!(run.complete(), "{:?} {}", run.state, messages(&v));
    let engine = run.engine.clone().unwrap_or_default();
    assert!(engine.starts_with("CPU"), "engine now: {engine}");
    assert!(
        v.messages()
            .iter()
            .any(|m| m.text.contains("GPU failed on slice")
                && m.text.contains("DEVICE_LOST")
                && m.text.contains("continuing on CPU")),
        "{}",
        messages(&v)
    );
    wait_count(&counters.alive, 0, "the lost GPU engine");
    // Three slices came from the GPU engine, the other three (including the one that failed)
    // from the CPU reference.
    let p = v.prepared().cloned().expect("prepared");
    let axis = p.sr_axis;
    let from_gpu = (0..6)
        .filter(|&k| {
            run.volume
                .slice(axis, k)
                .is_some_and(|s| s.data.iter().all(|&x| x == 0.25))
        })
        .count();
    assert_eq!(from_gpu, 3);
    assert_eq!(counters.calls.load(Ordering::SeqCst), 4);
}

#[test]
fn changing_the_device_while_inference_runs_cancels_it_and_restarts_on_the_new_one() {
    // The first engine is slow and writes 0.25; after the device change, engines write 0.75.
    let (factory, counters) = fake_factory(vec![
        Ok(Script::constant(0.25, 400)),
        Ok(Script::constant(0.75, 0)),
    ]);
    let mut v = viewer(factory, DeviceChoice::Gpu);
    wait_for(&mut v, "the first slice", |v| {
        v.run(Slot::A).is_some_and(|r| r.n_done >= 1)
    });
    let old_run = run_a(&v).run_id;
    assert!(!run_a(&v).complete(), "the slow run is still going");

    v.set_device(DeviceChoice::Cpu);
    assert_eq!(v.settings().device, DeviceChoice::Cpu);
    let run = run_a(&v);
    assert_ne!(run.run_id, old_run, "a new run starts at once");
    assert_eq!(run.state, RunState::Starting);
    assert_eq!(run.n_done, 0, "the new run starts from scratch");
    settle(&mut v);
    wait_count(&counters.alive, 0, "engines still alive after the old job");
    assert!(
        counters.saw_cancel.load(Ordering::SeqCst),
        "the old engine saw the cancel"
    );
    assert_eq!(counters.created.load(Ordering::SeqCst), 2);
    let run = run_a(&v);
    assert!(run.complete(), "{:?}", run.state);
    assert_eq!(run.engine.as_deref(), Some("fake GPU (0.75)"));
    assert!(
        run.volume.data.iter().all(|&x| x == 0.75),
        "a slice of the cancelled run reached the new volume"
    );
    assert!(v.messages().iter().all(|m| !m.error), "{}", messages(&v));
    assert!(
        v.messages()
            .iter()
            .any(|m| m.text.contains("device: CPU reference: inference restarts")),
        "{}",
        messages(&v)
    );
    // Choosing the same device again changes nothing.
    let id = run_a(&v).run_id;
    v.set_device(DeviceChoice::Cpu);
    assert_eq!(run_a(&v).run_id, id);
    assert!(!v.busy());
}
