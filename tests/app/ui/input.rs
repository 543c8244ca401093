//! Mouse and keyboard: crosshair, slice steps and window by mouse, the shortcut help, the PSNR
//! plot as a slice selector.

use super::*;

#[test]
fn mouse_moves_the_crosshair_steps_slices_and_sets_the_window() {
    use egui::{Event, Modifiers, MouseWheelUnit, PointerButton, Pos2, TouchPhase, vec2};
    let mut h = open_crop(test_settings());
    // The LR pane is the first pane of the central area; find a point inside its image.
    let pane_area = h.state().viewer.navigation().panes_size();
    assert!(pane_area.x > 300.0, "{pane_area:?}");
    let before = h.state().viewer.crosshair().voxel;
    let p = Pos2::new(60.0, 200.0);
    h.hover_at(p);
    h.run_steps(1);
    h.run_steps(1);
    assert!(
        h.state().viewer.navigation().hover().is_some(),
        "hover readout under the mouse"
    );
    // The status line reads out voxel, position and every pane's value.
    for part in ["voxel (", " mm ", "LR (", "SR = ", "GT = "] {
        assert!(
            h.query_by_label_contains(part).is_some(),
            "no readout label with {part:?}"
        );
    }
    h.drag_at(p);
    h.run_steps(1);
    h.drop_at(p);
    h.run_steps(2);
    let after = h.state().viewer.crosshair().voxel;
    assert_ne!(before, after, "a click moves the crosshair");
    assert_eq!(before[2], after[2], "in-plane only");

    // The wheel steps slices.
    h.hover_at(p);
    h.event(Event::MouseWheel {
        unit: MouseWheelUnit::Line,
        delta: vec2(0.0, 1.0),
        phase: TouchPhase::Move,
        source: egui::MouseWheelSource::Wheel,
        modifiers: Modifiers::NONE,
    });
    h.run_steps(2);
    assert_eq!(h.state().viewer.crosshair().voxel[2], after[2] + 1);

    // Right drag to the right widens the window.
    let w0 = h.state().viewer.navigation().window();
    for (x, pressed) in [(60.0, true), (90.0, true), (120.0, false)] {
        let pos = Pos2::new(x, 200.0);
        h.event(Event::PointerMoved(pos));
        if x == 60.0 || !pressed {
            h.event(Event::PointerButton {
                pos,
                button: PointerButton::Secondary,
                pressed,
                modifiers: Modifiers::NONE,
            });
        }
        h.run_steps(1);
    }
    let w1 = h.state().viewer.navigation().window();
    assert!(w1.width > w0.width, "{w0:?} -> {w1:?}");
}

#[test]
fn help_lists_every_shortcut() {
    let mut h = harness(AppOptions {
        open_nothing: true,
        no_weights_discovery: true,
        settings: Some(test_settings()),
        ..Default::default()
    });
    h.run_steps(2);
    h.key_press(Key::F1);
    h.run_steps(2);
    assert!(h.state().viewer.dialogs().show_help());
    for s in deltawkv::app::settings::SHORTCUTS {
        assert!(
            h.query_by_label(s.action).is_some(),
            "help misses {:?}",
            s.action
        );
    }
    h.key_press(Key::Escape);
    h.run_steps(2);
    assert!(!h.state().viewer.dialogs().show_help());
}

#[test]
fn clicking_the_psnr_plot_jumps_to_that_slice() {
    use egui::Pos2;
    let mut h = open_crop(test_settings());
    // Start on the coronal view: a click on the plot also switches to the SR (axial) axis.
    h.key_press(Key::Y);
    h.run_steps(2);
    assert_eq!(h.state().viewer.crosshair().axis, Axis::Coronal);
    // The plot spans the bottom panel (see the app_simulate_x2 snapshot): slice 1 at x = 89,
    // slice 6 at x = 1044, so x = 280 is slice 2 (index 1) and x = 853 slice 5 (index 4).
    for (x, want) in [(280.0, 1), (853.0, 4)] {
        let p = Pos2::new(x, 600.0);
        h.hover_at(p);
        h.run_steps(1);
        h.drag_at(p);
        h.run_steps(1);
        h.drop_at(p);
        h.run_steps(2);
        let v = &h.state().viewer;
        assert_eq!(v.crosshair().axis, Axis::Axial, "click at x = {x}");
        assert_eq!(v.crosshair().slice(), want, "click at x = {x}");
    }
}
