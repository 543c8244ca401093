//! State of the viewer's windows and pending file actions: the help window, the DICOM series
//! picker and a PNG export waiting for the next frame.

use std::path::PathBuf;

use crate::volume::SeriesInfo;

/// A pending series choice for a DICOM folder.
#[derive(Clone, Debug)]
pub struct SeriesChoice {
    pub ticket: u64,
    pub folder: PathBuf,
    pub series: Vec<SeriesInfo>,
}

/// The windows on show and the file actions waiting for a frame.
#[derive(Clone, Debug, Default)]
pub struct Dialogs {
    show_help: bool,
    series_choice: Option<SeriesChoice>,
    /// Screenshot path waiting for the next frame (F12 after the dialog).
    pending_png: Option<PathBuf>,
}

impl Dialogs {
    /// Whether the shortcut window shows.
    pub fn show_help(&self) -> bool {
        self.show_help
    }

    /// Shows or hides the shortcut window.
    pub fn set_help(&mut self, show: bool) {
        self.show_help = show;
    }

    /// The series picker's content, while it shows.
    pub fn series_choice(&self) -> Option<&SeriesChoice> {
        self.series_choice.as_ref()
    }

    /// Shows the series picker (`Some`) or closes it.
    pub fn set_series_choice(&mut self, choice: Option<SeriesChoice>) {
        self.series_choice = choice;
    }

    /// Asks for a PNG of the panes at `path` in the next frame.
    pub fn request_png(&mut self, path: PathBuf) {
        self.pending_png = Some(path);
    }

    /// The PNG path waiting, taken (the caller saves it now).
    pub fn take_png(&mut self) -> Option<PathBuf> {
        self.pending_png.take()
    }
}
