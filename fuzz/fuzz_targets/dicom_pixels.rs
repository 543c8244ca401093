//! DICOM pixel data decoding for each supported transfer syntax (and an unknown one): the target
//! wraps the fuzz input's pixel bytes in a small valid MR image header, so every execution reaches
//! the decoder of the transfer syntax chosen by the first byte.
//!
//! Input: `[ts, rows, cols, sample, frames, pixel bytes...]`; `sample` bits 0-1 pick
//! BitsAllocated 8/16/32 (3: 1), bit 2 signed, bits 3-7 subtract from BitsStored.
#![no_main]
use std::io::Write;

use libfuzzer_sys::fuzz_target;

const TRANSFER_SYNTAXES: [&str; 16] = [
    "1.2.840.10008.1.2.1",     // explicit VR little endian
    "1.2.840.10008.1.2",       // implicit VR little endian
    "1.2.840.10008.1.2.2",     // explicit VR big endian
    "1.2.840.10008.1.2.1.99",  // deflated explicit VR little endian
    "1.2.840.10008.1.2.5",     // RLE lossless
    "1.2.840.10008.1.2.4.50",  // JPEG baseline
    "1.2.840.10008.1.2.4.51",  // JPEG extended
    "1.2.840.10008.1.2.4.57",  // JPEG lossless
    "1.2.840.10008.1.2.4.70",  // JPEG lossless SV1
    "1.2.840.10008.1.2.4.80",  // JPEG-LS lossless
    "1.2.840.10008.1.2.4.81",  // JPEG-LS near-lossless
    "1.2.840.10008.1.2.4.90",  // JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91",  // JPEG 2000
    "1.2.840.10008.1.2.4.201", // HTJ2K lossless
    "1.2.840.10008.1.2.4.110", // JPEG XL (no decoder)
    "1.2.3.4.5.6.7",           // unknown
];

#[derive(Clone, Copy, PartialEq)]
enum Enc {
    Explicit,
    Implicit,
    BigEndian,
}

fn pad(mut v: Vec<u8>, fill: u8) -> Vec<u8> {
    if v.len() % 2 == 1 {
        v.push(fill);
    }
    v
}

fn tag(out: &mut Vec<u8>, enc: Enc, group: u16, elem: u16) {
    if enc == Enc::BigEndian {
        out.extend_from_slice(&group.to_be_bytes());
        out.extend_from_slice(&elem.to_be_bytes());
    } else {
        out.extend_from_slice(&group.to_le_bytes());
        out.extend_from_slice(&elem.to_le_bytes());
    }
}

fn len32(out: &mut Vec<u8>, enc: Enc, n: u32) {
    if enc == Enc::BigEndian {
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        out.extend_from_slice(&n.to_le_bytes());
    }
}

fn element(out: &mut Vec<u8>, enc: Enc, group: u16, elem: u16, vr: &[u8; 2], value: &[u8]) {
    tag(out, enc, group, elem);
    let long = matches!(vr, b"OB" | b"OW" | b"SQ" | b"UN" | b"UT");
    match enc {
        Enc::Implicit => len32(out, enc, value.len() as u32),
        _ if long => {
            out.extend_from_slice(vr);
            out.extend_from_slice(&[0, 0]);
            len32(out, enc, value.len() as u32);
        }
        _ => {
            out.extend_from_slice(vr);
            let n = value.len() as u16;
            out.extend_from_slice(&if enc == Enc::BigEndian {
                n.to_be_bytes()
            } else {
                n.to_le_bytes()
            });
        }
    }
    out.extend_from_slice(value);
}

fn us(enc: Enc, v: u16) -> [u8; 2] {
    if enc == Enc::BigEndian {
        v.to_be_bytes()
    } else {
        v.to_le_bytes()
    }
}

fn build(data: &[u8]) -> Option<Vec<u8>> {
    let (&[ts_i, rows, cols, sample, frames], pixels) = data.split_first_chunk::<5>()?;
    let ts = TRANSFER_SYNTAXES[usize::from(ts_i) % TRANSFER_SYNTAXES.len()];
    let rows = u16::from(rows % 64) + 1;
    let cols = u16::from(cols % 64) + 1;
    let bits: u16 = [8, 16, 32, 1][usize::from(sample & 3)];
    let signed = u16::from(sample >> 2 & 1);
    let stored = bits.saturating_sub(u16::from(sample >> 3)).max(1);
    let frames = frames % 4 + 1;
    let enc = match ts {
        "1.2.840.10008.1.2" => Enc::Implicit,
        "1.2.840.10008.1.2.2" => Enc::BigEndian,
        _ => Enc::Explicit,
    };
    let encapsulated = ts.starts_with("1.2.840.10008.1.2.4") || ts == "1.2.840.10008.1.2.5";

    // File meta group (always explicit VR little endian).
    let sop = pad(b"1.2.840.10008.5.1.4.1.1.4".to_vec(), 0);
    let mut meta = Vec::new();
    element(&mut meta, Enc::Explicit, 2, 1, b"OB", &[0, 1]);
    element(&mut meta, Enc::Explicit, 2, 2, b"UI", &sop);
    element(
        &mut meta,
        Enc::Explicit,
        2,
        3,
        b"UI",
        &pad(b"1.2.3.4".to_vec(), 0),
    );
    element(
        &mut meta,
        Enc::Explicit,
        2,
        0x10,
        b"UI",
        &pad(ts.as_bytes().to_vec(), 0),
    );
    element(
        &mut meta,
        Enc::Explicit,
        2,
        0x12,
        b"UI",
        &pad(b"1.2.3.4.5".to_vec(), 0),
    );
    let mut file = vec![0u8; 128];
    file.extend_from_slice(b"DICM");
    element(
        &mut file,
        Enc::Explicit,
        2,
        0,
        b"UL",
        &(meta.len() as u32).to_le_bytes(),
    );
    file.extend_from_slice(&meta);

    // Data set.
    let mut ds = Vec::new();
    element(&mut ds, enc, 8, 0x16, b"UI", &sop);
    element(&mut ds, enc, 8, 0x18, b"UI", &pad(b"1.2.3.4".to_vec(), 0));
    element(&mut ds, enc, 8, 0x60, b"CS", b"MR");
    element(
        &mut ds,
        enc,
        0x20,
        0x0e,
        b"UI",
        &pad(b"1.2.3.4.5.6".to_vec(), 0),
    );
    element(&mut ds, enc, 0x28, 2, b"US", &us(enc, 1));
    element(&mut ds, enc, 0x28, 4, b"CS", b"MONOCHROME2 ");
    element(
        &mut ds,
        enc,
        0x28,
        8,
        b"IS",
        &pad(frames.to_string().into_bytes(), b' '),
    );
    element(&mut ds, enc, 0x28, 0x10, b"US", &us(enc, rows));
    element(&mut ds, enc, 0x28, 0x11, b"US", &us(enc, cols));
    element(&mut ds, enc, 0x28, 0x100, b"US", &us(enc, bits));
    element(&mut ds, enc, 0x28, 0x101, b"US", &us(enc, stored));
    element(&mut ds, enc, 0x28, 0x102, b"US", &us(enc, stored - 1));
    element(&mut ds, enc, 0x28, 0x103, b"US", &us(enc, signed));
    if encapsulated {
        // Encapsulated pixel data: an empty offset table, then one fragment per frame.
        tag(&mut ds, enc, 0x7fe0, 0x10);
        ds.extend_from_slice(b"OB\0\0");
        ds.extend_from_slice(&u32::MAX.to_le_bytes());
        let item = |ds: &mut Vec<u8>, body: &[u8]| {
            ds.extend_from_slice(&[0xfe, 0xff, 0x00, 0xe0]);
            ds.extend_from_slice(&(body.len() as u32).to_le_bytes());
            ds.extend_from_slice(body);
        };
        item(&mut ds, &[]);
        let per = pixels.len().div_ceil(usize::from(frames)).max(1);
        for chunk in pixels.chunks(per) {
            item(&mut ds, &pad(chunk.to_vec(), 0));
        }
        ds.extend_from_slice(&[0xfe, 0xff, 0xdd, 0xe0, 0, 0, 0, 0]);
    } else {
        let vr = if bits > 8 { b"OW" } else { b"OB" };
        element(&mut ds, enc, 0x7fe0, 0x10, vr, &pad(pixels.to_vec(), 0));
    }
    if ts == "1.2.840.10008.1.2.1.99" {
        let mut d = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        d.write_all(&ds).ok()?;
        ds = d.finish().ok()?;
    }
    file.extend_from_slice(&ds);
    Some(file)
}

fuzz_target!(|data: &[u8]| {
    let Some(bytes) = build(data) else { return };
    let path = deltawkv_fuzz::scratch("pixels.dcm");
    if std::fs::write(&path, bytes).is_ok() {
        deltawkv_fuzz::load(&path);
    }
    let _ = std::fs::remove_file(&path);
});
