//! DICOM pixel data: decoding through dicom-pixeldata with the rescale applied, the checks that
//! keep malformed RLE, JPEG and JPEG 2000 codestreams away from decoders that index them
//! unchecked, the guard that turns a decoder panic into an error, and transfer syntax names.

use std::path::Path;

use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, InMemDicomObject};
use dicom_pixeldata::PixelDecoder;

use super::object::{FileInfo, elem_int, elem_str};
use crate::volume::VolumeError;

/// Name of a transfer syntax UID, for error messages.
pub(super) fn transfer_syntax_name(uid: &str) -> &'static str {
    match uid {
        "1.2.840.10008.1.2" => "Implicit VR Little Endian",
        "1.2.840.10008.1.2.1" => "Explicit VR Little Endian",
        "1.2.840.10008.1.2.1.99" => "Deflated Explicit VR Little Endian",
        "1.2.840.10008.1.2.2" => "Explicit VR Big Endian",
        "1.2.840.10008.1.2.5" => "RLE Lossless",
        "1.2.840.10008.1.2.4.50" => "JPEG Baseline (Process 1)",
        "1.2.840.10008.1.2.4.51" => "JPEG Extended (Process 2 & 4)",
        "1.2.840.10008.1.2.4.57" => "JPEG Lossless, Non-Hierarchical (Process 14)",
        "1.2.840.10008.1.2.4.70" => {
            "JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14, SV1)"
        }
        "1.2.840.10008.1.2.4.80" => "JPEG-LS Lossless",
        "1.2.840.10008.1.2.4.81" => "JPEG-LS Near-Lossless",
        "1.2.840.10008.1.2.4.90" => "JPEG 2000 (Lossless Only)",
        "1.2.840.10008.1.2.4.91" => "JPEG 2000",
        "1.2.840.10008.1.2.4.201" => "High-Throughput JPEG 2000 (Lossless Only)",
        "1.2.840.10008.1.2.4.202" => "High-Throughput JPEG 2000 with RPCL Options (Lossless Only)",
        "1.2.840.10008.1.2.4.203" => "High-Throughput JPEG 2000",
        "1.2.840.10008.1.2.4.100" | "1.2.840.10008.1.2.4.101" => "MPEG-2",
        "1.2.840.10008.1.2.4.102" | "1.2.840.10008.1.2.4.103" => "MPEG-4 AVC/H.264",
        "1.2.840.10008.1.2.4.110" | "1.2.840.10008.1.2.4.111" | "1.2.840.10008.1.2.4.112" => {
            "JPEG XL"
        }
        _ => "unknown transfer syntax",
    }
}

/// How stored samples map to values.
#[derive(Clone, Copy, Debug)]
struct SampleFormat {
    bits_allocated: u16,
    bits_stored: u16,
    signed: bool,
    slope: f64,
    intercept: f64,
}

/// Converts one decoded frame (native little-endian samples) to f32 with rescale.
fn frame_to_f32(
    path: &Path,
    bytes: &[u8],
    fmt: SampleFormat,
    out: &mut [f32],
) -> Result<(), VolumeError> {
    let SampleFormat {
        bits_allocated,
        bits_stored,
        signed,
        slope,
        intercept,
    } = fmt;
    let stored = u32::from(bits_stored.clamp(1, bits_allocated.max(1)));
    let fix_i = |raw: u64, width: u32| -> i64 {
        // Keep the stored bits; sign-extend when signed.
        let bits = stored.min(width);
        let mask = if bits >= 64 {
            u64::MAX
        } else {
            (1u64 << bits) - 1
        };
        let v = raw & mask;
        if signed && bits < 64 && (v >> (bits - 1)) & 1 == 1 {
            (v | !mask) as i64
        } else {
            v as i64
        }
    };
    let scale = |v: f64| (v * slope + intercept) as f32;
    match bits_allocated {
        8 => {
            for (o, &b) in out.iter_mut().zip(bytes.iter()) {
                *o = scale(fix_i(u64::from(b), 8) as f64);
            }
        }
        16 => {
            for (o, ch) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                let raw = u16::from_le_bytes([ch[0], ch[1]]);
                *o = scale(fix_i(u64::from(raw), 16) as f64);
            }
        }
        32 => {
            for (o, ch) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                let raw = u32::from_le_bytes([ch[0], ch[1], ch[2], ch[3]]);
                *o = scale(fix_i(u64::from(raw), 32) as f64);
            }
        }
        other => {
            return Err(VolumeError::UnsupportedDicom {
                path: path.to_path_buf(),
                detail: format!("BitsAllocated {other} (8, 16 or 32 supported)"),
            });
        }
    }
    Ok(())
}

/// Decodes the frames `wanted` (frame index -> output slice index) of one object into `data`.
pub(super) fn decode_into(
    path: &Path,
    obj: &DefaultDicomObject,
    info: &FileInfo,
    wanted: &[(usize, usize)],
    data: &mut [f32],
) -> Result<(), VolumeError> {
    let ds: &InMemDicomObject = obj;
    if ds.get(tags::PIXEL_DATA).is_none() {
        if ds.get(tags::FLOAT_PIXEL_DATA).is_some()
            || ds.get(tags::DOUBLE_FLOAT_PIXEL_DATA).is_some()
        {
            return Err(VolumeError::UnsupportedDicom {
                path: path.to_path_buf(),
                detail: "Float/Double Float Pixel Data is not supported".into(),
            });
        }
        let sop = elem_str(ds, tags::SOP_CLASS_UID)
            .unwrap_or_else(|| obj.meta().media_storage_sop_class_uid().to_string());
        return Err(VolumeError::NoPixelData {
            path: path.to_path_buf(),
            sop_class: sop,
        });
    }
    let spp = elem_int(ds, tags::SAMPLES_PER_PIXEL).unwrap_or(1);
    if spp != 1 {
        let pi = elem_str(ds, tags::PHOTOMETRIC_INTERPRETATION).unwrap_or_default();
        return Err(VolumeError::UnsupportedDicom {
            path: path.to_path_buf(),
            detail: format!("{spp} samples per pixel ({pi}): only greyscale images are supported"),
        });
    }
    let ts_uid = obj.meta().transfer_syntax().to_string();
    let decode_err = |detail: String| VolumeError::DicomDecode {
        path: path.to_path_buf(),
        ts_uid: ts_uid.clone(),
        ts_name: transfer_syntax_name(&ts_uid).to_string(),
        detail,
    };
    check_codestreams(ds, &ts_uid, info.rows, info.cols).map_err(|e| decode_err(e.to_string()))?;
    let decoded = catch_quietly(|| obj.decode_pixel_data())
        .map_err(|e| decode_err(e.to_string()))?
        .map_err(|e| decode_err(e.to_string()))?;
    if decoded.rows() as usize != info.rows || decoded.columns() as usize != info.cols {
        return Err(decode_err(format!(
            "decoded size {}x{} differs from Rows/Columns {}x{}",
            decoded.columns(),
            decoded.rows(),
            info.cols,
            info.rows
        )));
    }
    let signed = decoded.pixel_representation() == dicom_pixeldata::PixelRepresentation::Signed;
    let plane = info.rows * info.cols;
    for &(frame, slice) in wanted {
        let bytes = decoded
            .frame_data(frame as u32)
            .map_err(|e| decode_err(format!("frame {}: {e}", frame + 1)))?;
        let need = plane * usize::from(decoded.bits_allocated()).div_ceil(8);
        if bytes.len() < need {
            return Err(VolumeError::Truncated {
                path: path.to_path_buf(),
                expected: need as u64,
                found: bytes.len() as u64,
            });
        }
        let g = info.frame_geo.get(frame);
        let (slope, intercept) = g.map(|g| (g.slope, g.intercept)).unwrap_or((1.0, 0.0));
        let out = data
            .get_mut(slice * plane..(slice + 1) * plane)
            .ok_or_else(|| decode_err(format!("slice {slice} outside the volume")))?;
        let fmt = SampleFormat {
            bits_allocated: decoded.bits_allocated(),
            bits_stored: decoded.bits_stored(),
            signed,
            slope,
            intercept,
        };
        frame_to_f32(path, bytes, fmt, out)?;
    }
    Ok(())
}

/// Why pixel data is refused before it reaches a decoder, or how a decoder failed; the detail of a
/// [`VolumeError::DicomDecode`]. Fragments and segments count from 1.
#[derive(Debug, PartialEq, thiserror::Error)]
enum CodecError {
    /// An RLE fragment shorter than its header.
    #[error("RLE fragment {frag} is {len} bytes, shorter than its 64-byte header")]
    RleHeader { frag: usize, len: usize },
    /// An RLE segment count outside 1..=15.
    #[error("RLE fragment {frag} declares {segments} segments (1 to 15)")]
    RleSegments { frag: usize, segments: usize },
    /// An RLE segment offset before the previous segment or past the fragment.
    #[error("RLE fragment {frag}: segment {segment} starts at {offset}, outside {lo}..={len}")]
    RleOffset {
        frag: usize,
        segment: usize,
        offset: usize,
        lo: usize,
        len: usize,
    },
    /// An RLE segment that decodes to fewer bytes than a plane.
    #[error("RLE fragment {frag}: segment {segment} decodes to {produced} bytes, {plane} expected")]
    RleShort {
        frag: usize,
        segment: usize,
        produced: usize,
        plane: usize,
    },
    /// A JPEG frame whose size, components or precision disagree with the header.
    #[error(
        "JPEG codestream in fragment {frag} is {width}x{height}, {components} component(s) of \
         {precision} bits, but the header says {cols}x{rows}, 1 sample of {bits} bits"
    )]
    JpegFrame {
        frag: usize,
        width: usize,
        height: usize,
        components: usize,
        precision: usize,
        cols: usize,
        rows: usize,
        bits: i64,
    },
    /// A JPEG 2000 SIZ marker cut short.
    #[error("JPEG 2000 codestream in fragment {frag} is cut short")]
    J2kShort { frag: usize },
    /// A JPEG 2000 image whose components disagree with the header.
    #[error(
        "JPEG 2000 codestream in fragment {frag} holds {components} component(s) of sizes \
         {sizes:?}, but the header says one of {cols}x{rows}"
    )]
    J2kComponents {
        frag: usize,
        components: usize,
        sizes: Vec<(usize, usize)>,
        cols: usize,
        rows: usize,
    },
    /// A decoder panicked (see [`catch_quietly`]): its message.
    #[error("the decoder crashed on this data ({0})")]
    Panic(String),
}

/// The checks of [`check_rle`], [`check_jpeg`] or [`check_j2k`] that apply to the codestreams of
/// transfer syntax `ts_uid`.
fn check_codestreams(
    ds: &InMemDicomObject,
    ts_uid: &str,
    rows: usize,
    cols: usize,
) -> Result<(), CodecError> {
    match ts_uid {
        "1.2.840.10008.1.2.5" => check_rle(ds, rows * cols),
        "1.2.840.10008.1.2.4.50"
        | "1.2.840.10008.1.2.4.51"
        | "1.2.840.10008.1.2.4.57"
        | "1.2.840.10008.1.2.4.70" => {
            let bits = elem_int(ds, tags::BITS_ALLOCATED).unwrap_or(0);
            check_jpeg(ds, rows, cols, bits)
        }
        "1.2.840.10008.1.2.4.90"
        | "1.2.840.10008.1.2.4.91"
        | "1.2.840.10008.1.2.4.201"
        | "1.2.840.10008.1.2.4.202"
        | "1.2.840.10008.1.2.4.203" => check_j2k(ds, rows, cols),
        _ => Ok(()),
    }
}

/// Checks the segment tables and PackBits runs of RLE fragments, which dicom-pixeldata's RLE
/// decoder indexes unchecked (found by the `dicom_pixels` fuzz target: a slice index panic, a
/// segment table sized by a 32-bit count, an `unwrap` on a short run). `plane` is rows x columns,
/// the bytes each segment must decode to.
fn check_rle(ds: &InMemDicomObject, plane: usize) -> Result<(), CodecError> {
    let Some(frags) = ds.get(tags::PIXEL_DATA).and_then(|e| e.value().fragments()) else {
        return Ok(());
    };
    let u32_at = |f: &[u8], at: usize| {
        f.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    for (i, f) in frags.iter().enumerate() {
        let frag = i + 1;
        if f.len() < 64 {
            return Err(CodecError::RleHeader { frag, len: f.len() });
        }
        let n = u32_at(f, 0).unwrap_or(0);
        if !(1..=15).contains(&n) {
            return Err(CodecError::RleSegments { frag, segments: n });
        }
        let mut offsets = Vec::with_capacity(n + 1);
        for k in 0..n {
            let off = u32_at(f, 4 + 4 * k).unwrap_or(usize::MAX);
            let lo = offsets.last().copied().unwrap_or(64);
            if off < lo || off > f.len() {
                return Err(CodecError::RleOffset {
                    frag,
                    segment: k + 1,
                    offset: off,
                    lo,
                    len: f.len(),
                });
            }
            offsets.push(off);
        }
        offsets.push(f.len());
        for (k, w) in offsets.windows(2).enumerate() {
            let produced = packbits_len(&f[w[0]..w[1]], plane);
            if produced < plane {
                return Err(CodecError::RleShort {
                    frag,
                    segment: k + 1,
                    produced,
                    plane,
                });
            }
        }
    }
    Ok(())
}

/// Checks the frame size in the SOF header of every JPEG codestream against Rows, Columns and
/// BitsAllocated: dicom-pixeldata's JPEG adapter copies each decoded image into a buffer sized
/// from Rows x Columns without a bounds check (found by the `dicom_pixels` fuzz target: a slice
/// index panic).
fn check_jpeg(
    ds: &InMemDicomObject,
    rows: usize,
    cols: usize,
    bits: i64,
) -> Result<(), CodecError> {
    let Some(frags) = ds.get(tags::PIXEL_DATA).and_then(|e| e.value().fragments()) else {
        return Ok(());
    };
    for (i, f) in frags.iter().enumerate() {
        if !f.starts_with(&[0xff, 0xd8]) {
            continue;
        }
        let Some((precision, height, width, components)) = jpeg_sof(f) else {
            continue;
        };
        let bytes = if precision > 8 { 2 } else { 1 };
        if (height, width) != (rows, cols) || components != 1 || bytes * 8 > bits.max(0) as usize {
            return Err(CodecError::JpegFrame {
                frag: i + 1,
                width,
                height,
                components,
                precision,
                cols,
                rows,
                bits,
            });
        }
    }
    Ok(())
}

/// Checks the image and component sizes in the SIZ marker of every JPEG 2000 codestream against
/// Rows and Columns: dicom-pixeldata's JPEG 2000 adapter writes every decoded sample (and one
/// component too many) into a buffer sized from Rows x Columns without a bounds check (found by
/// the `dicom_pixels` fuzz target: a slice index panic).
fn check_j2k(ds: &InMemDicomObject, rows: usize, cols: usize) -> Result<(), CodecError> {
    let Some(frags) = ds.get(tags::PIXEL_DATA).and_then(|e| e.value().fragments()) else {
        return Ok(());
    };
    const SIZ: [u8; 4] = [0xff, 0x4f, 0xff, 0x51];
    for (i, f) in frags.iter().enumerate() {
        // A raw codestream, or one inside a JP2 wrapper near the start.
        let head = &f[..f.len().min(4096)];
        let Some(at) = head.windows(4).position(|w| w == SIZ) else {
            continue;
        };
        let b = &f[at..];
        let u32_at = |o: usize| {
            b.get(o..o + 4)
                .map(|x| u32::from_be_bytes([x[0], x[1], x[2], x[3]]) as usize)
        };
        let (Some(xsiz), Some(ysiz), Some(x0), Some(y0)) =
            (u32_at(8), u32_at(12), u32_at(16), u32_at(20))
        else {
            return Err(CodecError::J2kShort { frag: i + 1 });
        };
        let csiz = b
            .get(40..42)
            .map(|x| usize::from(u16::from_be_bytes([x[0], x[1]])))
            .unwrap_or(0);
        let mut sizes = Vec::new();
        for c in 0..csiz.min(16) {
            let (dx, dy) = match b.get(42 + 3 * c + 1..42 + 3 * c + 3) {
                Some(&[dx, dy]) if dx > 0 && dy > 0 => (usize::from(dx), usize::from(dy)),
                _ => (1, 1),
            };
            let w = xsiz.div_ceil(dx).saturating_sub(x0.div_ceil(dx));
            let h = ysiz.div_ceil(dy).saturating_sub(y0.div_ceil(dy));
            sizes.push((w, h));
        }
        if csiz != 1 || sizes.first() != Some(&(cols, rows)) {
            return Err(CodecError::J2kComponents {
                frag: i + 1,
                components: csiz,
                sizes,
                cols,
                rows,
            });
        }
    }
    Ok(())
}

/// (precision, height, width, components) from the first SOF marker of a JPEG codestream.
fn jpeg_sof(b: &[u8]) -> Option<(usize, usize, usize, usize)> {
    let mut i = 2;
    while i + 1 < b.len() {
        if b[i] != 0xff {
            return None;
        }
        let m = b[i + 1];
        i += 2;
        match m {
            0xff => i -= 1,
            0x01 | 0xd0..=0xd7 => {}
            0xd9 | 0xda => return None,
            _ => {
                let len = usize::from(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]));
                if matches!(m, 0xc0..=0xcf) && !matches!(m, 0xc4 | 0xc8 | 0xcc) {
                    let s = b.get(i + 2..i + 8)?;
                    return Some((
                        usize::from(s[0]),
                        usize::from(u16::from_be_bytes([s[1], s[2]])),
                        usize::from(u16::from_be_bytes([s[3], s[4]])),
                        usize::from(s[5]),
                    ));
                }
                i += len.max(2);
            }
        }
    }
    None
}

/// Bytes a PackBits segment decodes to (counting stops at `want`); a literal run cut short by
/// the end of the segment ends the count.
fn packbits_len(seg: &[u8], want: usize) -> usize {
    let (mut i, mut out) = (0usize, 0usize);
    while i < seg.len() && out < want {
        let h = seg[i] as i8;
        i += 1;
        match h {
            0..=127 => {
                let n = h as usize + 1;
                if i + n > seg.len() {
                    return out;
                }
                i += n;
                out += n;
            }
            -127..=-1 => {
                if i >= seg.len() {
                    return out;
                }
                i += 1;
                out += (1 - h as isize) as usize;
            }
            _ => {}
        }
    }
    out
}

thread_local! {
    static QUIET_PANICS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, turning a panic into [`CodecError::Panic`] with its message, without the default "thread panicked" report on
/// stderr (the third-party pixel decoders panic on some malformed data; the caller reports a clean
/// error instead). Panics elsewhere, on any thread, are reported as before.
fn catch_quietly<R>(f: impl FnOnce() -> R) -> Result<R, CodecError> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if QUIET_PANICS.with(|q| q.get()) {
                tracing::debug!("pixel decoder panicked: {info}");
            } else {
                previous(info);
            }
        }));
    });
    QUIET_PANICS.with(|q| q.set(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    QUIET_PANICS.with(|q| q.set(false));
    r.map_err(|payload| {
        CodecError::Panic(
            payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".to_string()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::{CodecError, catch_quietly};

    #[test]
    fn decoder_panics_become_errors_with_their_message() {
        assert_eq!(catch_quietly(|| 7), Ok(7));
        let r: Result<(), CodecError> = catch_quietly(|| panic!("index out of bounds"));
        assert_eq!(r, Err(CodecError::Panic("index out of bounds".to_string())));
        let n = 3;
        let r: Result<(), CodecError> = catch_quietly(|| panic!("frame {n} too short"));
        assert_eq!(r, Err(CodecError::Panic("frame 3 too short".to_string())));
        assert_eq!(
            r.map_err(|e| e.to_string()),
            Err("the decoder crashed on this data (frame 3 too short)".to_string())
        );
        assert_eq!(catch_quietly(|| "ok"), Ok("ok"));
    }
}
