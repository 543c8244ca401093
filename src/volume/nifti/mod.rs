//! NIfTI-1 and NIfTI-2 reading (own header parser: the `nifti` crate reads no NIfTI-2) and
//! NIfTI-1 float32 writing: [`header`] parses and checks the header and its geometry, this file
//! streams and converts the voxels, [`write`] writes atomically.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use flate2::read::MultiGzDecoder;

use super::error::human_bytes;
use super::geometry::{self};
use super::{LoadOptions, Volume, VolumeError, VolumeMeta};

mod header;
mod write;

pub(crate) use header::*;
pub(crate) use write::{encode, save};

fn map_read_error(path: &Path, gz: bool, e: std::io::Error, what: &str) -> VolumeError {
    if gz {
        match e.kind() {
            std::io::ErrorKind::UnexpectedEof => {
                return VolumeError::Gzip {
                    path: path.to_path_buf(),
                    problem: "truncated",
                    detail: e.to_string(),
                };
            }
            std::io::ErrorKind::InvalidInput
            | std::io::ErrorKind::InvalidData
            | std::io::ErrorKind::Other => {
                return VolumeError::Gzip {
                    path: path.to_path_buf(),
                    problem: "corrupt",
                    detail: e.to_string(),
                };
            }
            _ => {}
        }
    }
    VolumeError::Io {
        path: path.to_path_buf(),
        context: what.to_string(),
        source: e,
    }
}

/// Reads as many bytes as possible into `buf` (stopping at end of stream); returns the count.
pub(crate) fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Opens `path` as a byte stream, transparently decompressing gzip.
pub(crate) fn open_stream(path: &Path, gz: bool) -> Result<Box<dyn Read>, VolumeError> {
    let file = File::open(path).map_err(|e| VolumeError::Io {
        path: path.to_path_buf(),
        context: "cannot open".into(),
        source: e,
    })?;
    let reader = BufReader::with_capacity(1 << 16, file);
    Ok(if gz {
        Box::new(MultiGzDecoder::new(reader))
    } else {
        Box::new(reader)
    })
}

/// Loads a NIfTI-1/2 file whose header prefix (`prefix`, at least 540 bytes unless the file is
/// shorter) was already read and recognised as `flavour`.
pub(crate) fn load(
    path: &Path,
    gz: bool,
    prefix: &[u8],
    flavour: Flavour,
    opts: &LoadOptions,
) -> Result<Volume, VolumeError> {
    let h = parse_header(path, prefix, flavour)?;
    let lay = layout(path, &h, opts)?;
    if opts.volume >= lay.volumes {
        return Err(VolumeError::VolumeIndex {
            path: path.to_path_buf(),
            index: opts.volume,
            count: lay.volumes,
        });
    }
    let header_size = if h.version == 1 {
        NIFTI1_HEADER
    } else {
        NIFTI2_HEADER
    } as f64;
    if !h.vox_offset.is_finite() || h.vox_offset < header_size || h.vox_offset > 1e15 {
        return Err(VolumeError::InvalidHeader {
            path: path.to_path_buf(),
            detail: format!(
                "vox_offset {} is not a valid data offset (must be at least {header_size})",
                h.vox_offset
            ),
        });
    }
    let nvox = lay.dims[0] * lay.dims[1] * lay.dims[2];
    let vol_bytes = (nvox as u64) * lay.bpv as u64;
    let offset = vol_bytes
        .checked_mul(opts.volume as u64)
        .and_then(|o| o.checked_add(h.vox_offset as u64))
        .ok_or_else(|| VolumeError::InvalidHeader {
            path: path.to_path_buf(),
            detail: format!("volume {} lies beyond any possible file size", opts.volume),
        })?;

    let slope_raw = h.scl_slope;
    let (slope, inter) = if slope_raw.is_finite() && slope_raw != 0.0 {
        (
            slope_raw,
            if h.scl_inter.is_finite() {
                h.scl_inter
            } else {
                0.0
            },
        )
    } else {
        (1.0, 0.0)
    };
    let scaled = slope != 1.0 || inter != 0.0;

    let mut data = Vec::new();
    data.try_reserve_exact(nvox)
        .map_err(|_| VolumeError::TooLarge {
            path: path.to_path_buf(),
            dims: format!("{}x{}x{}", lay.dims[0], lay.dims[1], lay.dims[2]),
            needed_bytes: nvox as u64 * 4,
            needed: human_bytes(nvox as u64 * 4),
            budget: "the memory available".into(),
        })?;
    read_voxels(
        path, gz, offset, vol_bytes, &h, lay.bpv, slope, inter, &mut data,
    )?;

    let (affine, xform_code, affine_note) = header_affine(&h);
    let mut notes = Vec::new();
    if let Some(n) = affine_note {
        notes.push(n);
    }
    if lay.volumes > 1 {
        notes.push(format!(
            "4-D input: volume {} of {} shown",
            opts.volume + 1,
            lay.volumes
        ));
    }
    if scaled {
        notes.push(format!("scl_slope {slope} and scl_inter {inter} applied"));
    }
    let non_finite = data.iter().filter(|v| !v.is_finite()).count();
    if non_finite > 0 {
        notes.push(format!("{non_finite} voxel(s) are NaN or infinite"));
    }
    let ext = if gz { ".nii.gz" } else { ".nii" };
    let order = if h.big_endian { ", big-endian" } else { "" };
    let meta = VolumeMeta {
        source_path: Some(path.to_path_buf()),
        format: format!("NIfTI-{} ({ext}{order})", h.version),
        datatype: lay.type_name.to_string(),
        modality: None,
        series_description: if h.descrip.is_empty() {
            None
        } else {
            Some(h.descrip.clone())
        },
        notes,
        non_finite,
        xform_code,
        ..VolumeMeta::default()
    };
    let spacing = geometry::column_norms(&affine);
    Ok(Volume {
        data,
        dims: lay.dims,
        spacing,
        affine,
        meta,
    })
}

/// Streams `len` bytes at `offset` of the (possibly gzip) file and appends them, converted to
/// scaled f32, to `out`. Reads in chunks so the raw bytes never need a second full-size buffer.
#[allow(clippy::too_many_arguments)]
fn read_voxels(
    path: &Path,
    gz: bool,
    offset: u64,
    len: u64,
    h: &Header,
    bpv: usize,
    slope: f64,
    inter: f64,
    out: &mut Vec<f32>,
) -> Result<(), VolumeError> {
    let truncated = |found: u64| VolumeError::Truncated {
        path: path.to_path_buf(),
        expected: len,
        found,
    };
    let mut reader: Box<dyn Read> = if gz {
        let mut r = open_stream(path, true)?;
        let skipped = std::io::copy(&mut (&mut r).take(offset), &mut std::io::sink())
            .map_err(|e| map_read_error(path, true, e, "cannot read"))?;
        if skipped < offset {
            return Err(truncated(0));
        }
        r
    } else {
        let mut file = File::open(path).map_err(|e| VolumeError::Io {
            path: path.to_path_buf(),
            context: "cannot open".into(),
            source: e,
        })?;
        let file_len = file
            .metadata()
            .map_err(|e| VolumeError::Io {
                path: path.to_path_buf(),
                context: "cannot stat".into(),
                source: e,
            })?
            .len();
        if file_len < offset.saturating_add(len) {
            return Err(truncated(file_len.saturating_sub(offset)));
        }
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| VolumeError::Io {
                path: path.to_path_buf(),
                context: "cannot seek".into(),
                source: e,
            })?;
        Box::new(BufReader::with_capacity(1 << 16, file))
    };
    let chunk_voxels = (1usize << 20) / bpv.max(1);
    let mut buf = vec![0u8; chunk_voxels * bpv];
    let mut remaining = len;
    let mut done = 0u64;
    while remaining > 0 {
        let want = remaining.min(buf.len() as u64) as usize;
        let got = read_full(reader.as_mut(), &mut buf[..want])
            .map_err(|e| map_read_error(path, gz, e, "cannot read"))?;
        if got < want {
            return Err(truncated(done + got as u64));
        }
        convert(&buf[..want], h.datatype, h.big_endian, slope, inter, out);
        remaining -= want as u64;
        done += want as u64;
    }
    if gz {
        // Read the rest of the stream (up to 64 MiB more: all of it for all but very large 4-D
        // files) so the gzip CRC check runs and a corrupt stream is reported instead of silently
        // giving wrong voxels.
        std::io::copy(&mut reader.take(64 << 20), &mut std::io::sink())
            .map_err(|e| map_read_error(path, gz, e, "cannot read"))?;
    }
    Ok(())
}

/// Converts raw voxel bytes of NIfTI `datatype` to f32 with `v * slope + inter`.
fn convert(bytes: &[u8], datatype: i32, be: bool, slope: f64, inter: f64, out: &mut Vec<f32>) {
    macro_rules! conv {
        ($t:ty, $n:expr) => {
            out.extend(bytes.chunks_exact($n).map(|c| {
                let mut a = [0u8; $n];
                a.copy_from_slice(c);
                let v = if be {
                    <$t>::from_be_bytes(a)
                } else {
                    <$t>::from_le_bytes(a)
                };
                (v as f64 * slope + inter) as f32
            }))
        };
    }
    match datatype {
        2 => out.extend(bytes.iter().map(|&v| (f64::from(v) * slope + inter) as f32)),
        256 => out.extend(
            bytes
                .iter()
                .map(|&v| (f64::from(v as i8) * slope + inter) as f32),
        ),
        4 => conv!(i16, 2),
        512 => conv!(u16, 2),
        8 => conv!(i32, 4),
        768 => conv!(u32, 4),
        1024 => conv!(i64, 8),
        1280 => conv!(u64, 8),
        16 => conv!(f32, 4),
        64 => conv!(f64, 8),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detect_flavours() {
        assert_eq!(
            detect(&348i32.to_le_bytes()),
            Some(Flavour::V1 { big_endian: false })
        );
        assert_eq!(
            detect(&348i32.to_be_bytes()),
            Some(Flavour::V1 { big_endian: true })
        );
        assert_eq!(
            detect(&540i32.to_le_bytes()),
            Some(Flavour::V2 { big_endian: false })
        );
        assert_eq!(detect(b"DICM"), None);
        assert_eq!(detect(&[1, 2]), None);
    }

    #[test]
    fn slope_zero_means_no_scaling_and_types_convert() {
        let mut out = Vec::new();
        convert(&(-3i16).to_be_bytes(), 4, true, 2.0, 1.0, &mut out);
        convert(&[200u8], 256, false, 1.0, 0.0, &mut out);
        convert(&u64::MAX.to_le_bytes(), 1280, false, 1.0, 0.0, &mut out);
        assert_eq!(out, vec![-5.0, -56.0, u64::MAX as f32]);
    }
}
