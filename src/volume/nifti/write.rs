//! NIfTI-1 float32 writing: atomic (a temporary file, then a rename), never over an input.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::volume::geometry;
use crate::volume::{Volume, VolumeError};

use super::NIFTI1_HEADER;

/// Writes `vol` as NIfTI-1 float32 (`.nii` or `.nii.gz` by the extension of `path`), with sform
/// and qform set from the affine, atomically (temporary file in the same folder, then rename).
pub(crate) fn save(vol: &Volume, path: &Path) -> Result<(), VolumeError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let gz = if name.ends_with(".nii.gz") {
        true
    } else if name.ends_with(".nii") {
        false
    } else {
        return Err(VolumeError::Write {
            path: path.to_path_buf(),
            detail: "the output name must end in .nii.gz or .nii".into(),
        });
    };
    validate(vol, path)?;
    check_not_input(vol, path)?;
    let header = header_bytes(vol);
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let write_err = |context: &str, e: std::io::Error| VolumeError::Io {
        path: path.to_path_buf(),
        context: context.into(),
        source: e,
    };
    let tmp = tempfile::Builder::new()
        .prefix(".deltawkv-")
        .suffix(".part")
        .tempfile_in(&dir)
        .map_err(|e| write_err("cannot create a temporary file in the output folder", e))?;
    {
        let file = tmp
            .as_file()
            .try_clone()
            .map_err(|e| write_err("cannot write", e))?;
        let buffered = std::io::BufWriter::with_capacity(1 << 16, file);
        encode_to(vol, &header, gz, buffered).map_err(|e| write_err("cannot write", e))?;
    }
    tmp.as_file()
        .sync_all()
        .map_err(|e| write_err("cannot flush to disk", e))?;
    tmp.persist(path)
        .map_err(|e| write_err("cannot move the finished file into place", e.error))?;
    Ok(())
}

/// Checks that `vol` can be written as NIfTI-1 (data size, dims limit, an invertible affine);
/// `path` names the output in errors.
fn validate(vol: &Volume, path: &Path) -> Result<(), VolumeError> {
    let n = vol.dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if n != Some(vol.data.len()) || vol.dims.contains(&0) {
        return Err(VolumeError::InvalidVolume(format!(
            "{} voxels of data for dims {:?}",
            vol.data.len(),
            vol.dims
        )));
    }
    if vol.dims.iter().any(|&d| d > i16::MAX as usize) {
        return Err(VolumeError::Write {
            path: path.to_path_buf(),
            detail: format!(
                "dims {:?} exceed the NIfTI-1 limit of 32767 per axis",
                vol.dims
            ),
        });
    }
    if !vol.affine.iter().flatten().all(|v| v.is_finite())
        || geometry::det3(&geometry::linear_part(&vol.affine)).abs() < 1e-12
    {
        return Err(VolumeError::InvalidVolume(
            "the affine is singular or not finite".into(),
        ));
    }
    Ok(())
}

/// The NIfTI-1 bytes of `vol`, gzipped when `gz` (what [`save`] writes).
pub(crate) fn encode(vol: &Volume, gz: bool) -> Result<Vec<u8>, VolumeError> {
    validate(vol, Path::new("(in memory)"))?;
    let header = header_bytes(vol);
    let mut out = Vec::with_capacity(if gz {
        vol.data.len()
    } else {
        vol.data.len() * 4 + 352
    });
    encode_to(vol, &header, gz, &mut out).map_err(|e| VolumeError::Write {
        path: PathBuf::from("(in memory)"),
        detail: e.to_string(),
    })?;
    Ok(out)
}

/// Writes the header, the 4-byte extension flag and the voxels (float32 little-endian) to `w`,
/// through gzip when `gz`.
fn encode_to(vol: &Volume, header: &[u8], gz: bool, mut w: impl Write) -> std::io::Result<()> {
    if gz {
        let mut z = flate2::write::GzEncoder::new(w, flate2::Compression::new(6));
        write_body(vol, header, &mut z)?;
        z.finish()?.flush()
    } else {
        write_body(vol, header, &mut w)?;
        w.flush()
    }
}

fn write_body(vol: &Volume, header: &[u8], w: &mut impl Write) -> std::io::Result<()> {
    w.write_all(header)?;
    w.write_all(&[0u8; 4])?;
    let mut chunk = Vec::with_capacity(1 << 16);
    for block in vol.data.chunks(1 << 14) {
        chunk.clear();
        for v in block {
            chunk.extend_from_slice(&v.to_le_bytes());
        }
        w.write_all(&chunk)?;
    }
    Ok(())
}

/// Refuses to write over the source file, or anywhere inside a source folder.
fn check_not_input(vol: &Volume, path: &Path) -> Result<(), VolumeError> {
    let Some(src) = vol.meta.source_path.as_ref() else {
        return Ok(());
    };
    let Ok(src_c) = src.canonicalize() else {
        return Ok(());
    };
    let out_c = match path.canonicalize() {
        Ok(p) => p,
        Err(_) => {
            // Not existing yet: canonicalise the folder and append the name.
            let parent = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            match (parent.canonicalize(), path.file_name()) {
                (Ok(p), Some(n)) => p.join(n),
                _ => return Ok(()),
            }
        }
    };
    let collides = if src_c.is_dir() {
        out_c.starts_with(&src_c)
    } else {
        out_c == src_c
    };
    if collides {
        return Err(VolumeError::OutputIsInput {
            path: path.to_path_buf(),
            input: src.clone(),
        });
    }
    Ok(())
}

/// The 348-byte NIfTI-1 header for `vol` as float32 data at offset 352.
fn header_bytes(vol: &Volume) -> Vec<u8> {
    let mut h = vec![0u8; NIFTI1_HEADER];
    let mut put = |off: usize, bytes: &[u8]| {
        if let Some(dst) = h.get_mut(off..off + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
    };
    put(0, &348i32.to_le_bytes());
    put(38, b"r");
    let dims = [
        3i16,
        vol.dims[0] as i16,
        vol.dims[1] as i16,
        vol.dims[2] as i16,
        1,
        1,
        1,
        1,
    ];
    for (i, d) in dims.iter().enumerate() {
        put(40 + 2 * i, &d.to_le_bytes());
    }
    put(70, &16i16.to_le_bytes());
    put(72, &32i16.to_le_bytes());
    let (b, c, d, qfac, sizes) = geometry::matrix_to_quaternion(&vol.affine);
    let pixdim = [
        qfac as f32,
        sizes[0] as f32,
        sizes[1] as f32,
        sizes[2] as f32,
        1.0,
        1.0,
        1.0,
        1.0,
    ];
    for (i, p) in pixdim.iter().enumerate() {
        put(76 + 4 * i, &p.to_le_bytes());
    }
    put(108, &352f32.to_le_bytes());
    put(112, &1f32.to_le_bytes());
    put(116, &0f32.to_le_bytes());
    put(123, &[2u8]); // xyzt_units: millimetres
    let descrip = vol
        .meta
        .series_description
        .as_deref()
        .unwrap_or("written by deltawkv");
    let mut text: Vec<u8> = descrip
        .bytes()
        .filter(|c| c.is_ascii() && *c != 0)
        .take(79)
        .collect();
    text.push(0);
    put(148, &text);
    let code: i16 = match vol.meta.xform_code {
        1..=5 => vol.meta.xform_code as i16,
        _ => 2,
    };
    put(252, &code.to_le_bytes());
    put(254, &code.to_le_bytes());
    for (i, q) in [b, c, d].iter().enumerate() {
        put(256 + 4 * i, &(*q as f32).to_le_bytes());
    }
    for r in 0..3 {
        put(268 + 4 * r, &(vol.affine[r][3] as f32).to_le_bytes());
        for cc in 0..4 {
            put(
                280 + 16 * r + 4 * cc,
                &(vol.affine[r][cc] as f32).to_le_bytes(),
            );
        }
    }
    put(344, b"n+1\0");
    h
}
