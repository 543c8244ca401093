//! DICOM reader on a whole file (meta group, data set, functional groups, pixel data), plain and
//! gzip (first byte: see `write_input`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = deltawkv_fuzz::scratch("input.dcm");
    if deltawkv_fuzz::write_input(&path, data) {
        deltawkv_fuzz::load(&path);
    }
    let _ = std::fs::remove_file(&path);
});
