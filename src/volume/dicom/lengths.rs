//! A pre-pass over the element headers of a DICOM file that refuses values whose declared length
//! runs past the end of the file, before dicom-object parses it. The parser reserves and
//! zero-fills each value's declared length before reading it, so a 10 KB file declaring a 4 GB
//! element made it allocate and touch 4 GB (found by the `dicom` fuzz target; FUZZING.md).
//!
//! The walk is flat (items and sequences are entered, not skipped) and conservative: where it
//! cannot follow the encoding (an unknown VR, an undefined-length UN) it stops and leaves the
//! verdict to the parser. It also bounds the inflated size of a Deflated Explicit VR data set,
//! which the parser would otherwise inflate whole into memory.

use std::io::{Read, Seek, SeekFrom};

/// Why a file was refused.
#[derive(Debug, PartialEq)]
pub(crate) enum Problem {
    /// A length that does not fit the file: the message for a `VolumeError::Dicom`.
    Length(String),
    /// The inflated data set of a Deflated transfer syntax exceeds the budget (bytes inflated
    /// before stopping).
    Inflated(u64),
}

const EXPLICIT_LE: u8 = 0;
const IMPLICIT_LE: u8 = 1;
const EXPLICIT_BE: u8 = 2;

/// Walks the element headers of the DICOM stream `r` (`total` bytes, preamble and `DICM` marker
/// included when present). With `stop_at_pixels`, the walk ends at the top-level Pixel Data
/// element (its length is checked when the pixels are read). `budget` bounds the inflated data
/// set of a deflated file.
pub(crate) fn check<R: Read + Seek>(
    r: &mut R,
    total: u64,
    stop_at_pixels: bool,
    budget: u64,
) -> Result<(), Problem> {
    let mut head = [0u8; 132];
    let n = crate::volume::nifti::read_full(r, &mut head).unwrap_or(0);
    let start = if n >= 132 && &head[128..132] == b"DICM" {
        132
    } else if n >= 4 && &head[0..4] == b"DICM" {
        4
    } else {
        return Ok(());
    };
    let Ok(mut pos) = r.seek(SeekFrom::Start(start)) else {
        return Ok(());
    };
    // File meta group: explicit VR little endian, group 0002.
    let mut ts = String::new();
    loop {
        let Some(tag) = read_array::<4>(r) else {
            return Ok(());
        };
        let group = u16::from_le_bytes([tag[0], tag[1]]);
        let elem = u16::from_le_bytes([tag[2], tag[3]]);
        if group != 0x0002 {
            if r.seek(SeekFrom::Start(pos)).is_err() {
                return Ok(());
            }
            break;
        }
        let Some((len, long, _)) = explicit_length(r, false) else {
            return Ok(());
        };
        let here = pos + 8 + if long { 4 } else { 0 };
        if u64::from(len) > total.saturating_sub(here) {
            return Err(too_long(group, elem, len, total.saturating_sub(here)));
        }
        if elem == 0x0010 && len <= 128 {
            let mut v = vec![0u8; len as usize];
            if r.read_exact(&mut v).is_err() {
                return Ok(());
            }
            ts = String::from_utf8_lossy(&v)
                .trim_matches(|c: char| c == '\0' || c.is_whitespace())
                .to_string();
        } else if r.seek(SeekFrom::Current(i64::from(len))).is_err() {
            return Ok(());
        }
        pos = here + u64::from(len);
    }
    let encoding = match ts.as_str() {
        "1.2.840.10008.1.2" => IMPLICIT_LE,
        "1.2.840.10008.1.2.2" => EXPLICIT_BE,
        _ => EXPLICIT_LE,
    };
    if ts == "1.2.840.10008.1.2.1.99" {
        let mut inflated = Vec::new();
        let got = flate2::read::DeflateDecoder::new(r)
            .take(budget.saturating_add(1))
            .read_to_end(&mut inflated);
        if got.is_err() {
            return Ok(());
        }
        if inflated.len() as u64 > budget {
            return Err(Problem::Inflated(inflated.len() as u64));
        }
        let len = inflated.len() as u64;
        return walk(
            &mut std::io::Cursor::new(inflated),
            0,
            len,
            encoding,
            stop_at_pixels,
        );
    }
    walk(r, pos, total, encoding, stop_at_pixels)
}

fn too_long(group: u16, elem: u16, len: u32, remaining: u64) -> Problem {
    Problem::Length(format!(
        "element ({group:04X},{elem:04X}) declares {len} bytes but only {remaining} remain in the file"
    ))
}

fn read_array<const N: usize>(r: &mut impl Read) -> Option<[u8; N]> {
    let mut b = [0u8; N];
    r.read_exact(&mut b).ok()?;
    Some(b)
}

/// Reads an explicit VR and its length as dicom-parser does (an unknown VR reads as UN, in the
/// long form); `(length, long_form, vr)`.
fn explicit_length(r: &mut impl Read, be: bool) -> Option<(u32, bool, [u8; 2])> {
    let vr = read_array::<2>(r)?;
    let short = matches!(
        &vr,
        b"AE"
            | b"AS"
            | b"AT"
            | b"CS"
            | b"DA"
            | b"DS"
            | b"DT"
            | b"FL"
            | b"FD"
            | b"IS"
            | b"LO"
            | b"LT"
            | b"PN"
            | b"SH"
            | b"SL"
            | b"SS"
            | b"ST"
            | b"TM"
            | b"UI"
            | b"UL"
            | b"US"
    );
    if short {
        let b = read_array::<2>(r)?;
        Some((
            u32::from(if be {
                u16::from_be_bytes(b)
            } else {
                u16::from_le_bytes(b)
            }),
            false,
            vr,
        ))
    } else {
        let b = read_array::<6>(r)?;
        let l = [b[2], b[3], b[4], b[5]];
        Some((
            if be {
                u32::from_be_bytes(l)
            } else {
                u32::from_le_bytes(l)
            },
            true,
            vr,
        ))
    }
}

/// The VR the standard dictionary gives `tag` (how the implicit VR parser decides), as two
/// letters; `UN` when unknown.
fn dictionary_vr(group: u16, elem: u16) -> [u8; 2] {
    use dicom_core::dictionary::DataDictionary;
    if (group, elem) == (0x7fe0, 0x0010) || (group >> 8 == 0x60 && elem == 0x3000) {
        return *b"OW";
    }
    dicom_dictionary_std::StandardDataDictionary
        .by_tag(dicom_core::Tag(group, elem))
        .and_then(|e| e.vr.relaxed().to_string().as_bytes().try_into().ok())
        .unwrap_or(*b"UN")
}

/// Bytes dicom-parser consumes for a value of `len` bytes: binary numbers are read as
/// `len / size` whole numbers, so a length that is not a multiple of the size leaves the rest
/// unread (and the next header is read from there, found by the `dicom` fuzz target).
fn consumed(vr: &[u8; 2], len: u32) -> u64 {
    let size: u32 = match vr {
        b"SS" | b"US" | b"OW" => 2,
        b"AT" | b"FL" | b"OF" | b"SL" | b"OL" | b"UL" => 4,
        b"FD" | b"OD" | b"SV" | b"OV" | b"UV" => 8,
        _ => 1,
    };
    u64::from(len - len % size)
}

/// What the parser is inside of: a sequence (expecting items), an item of a sequence, or
/// encapsulated pixel data (expecting fragments); with the end offset of a defined length.
#[derive(Clone, Copy, PartialEq)]
enum Open {
    Sequence(Option<u64>),
    Item(Option<u64>),
    Fragments,
}

/// Nesting deeper than this ends the walk (the parser decides).
const MAX_DEPTH: usize = 64;

/// The data set walk from `pos` to `total`, following dicom-parser's data set reader: a stack of
/// open sequences and items, items only inside sequences, any other undefined-length element a
/// sequence.
fn walk<R: Read + Seek>(
    r: &mut R,
    mut pos: u64,
    total: u64,
    encoding: u8,
    stop_at_pixels: bool,
) -> Result<(), Problem> {
    let be = encoding == EXPLICIT_BE;
    let u16_of = |b: [u8; 2]| {
        if be {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        }
    };
    let u32_of = |b: [u8; 4]| {
        if be {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    };
    let mut stack: Vec<Open> = Vec::new();
    let check_len = |group: u16, elem: u16, len: u32, pos: u64| -> Result<u64, Problem> {
        let remaining = total.saturating_sub(pos);
        if u64::from(len) > remaining {
            Err(too_long(group, elem, len, remaining))
        } else {
            Ok(pos + u64::from(len))
        }
    };
    loop {
        // Close what ends here by its length.
        while let Some(&(Open::Sequence(Some(end)) | Open::Item(Some(end)))) = stack.last() {
            if pos < end {
                break;
            }
            stack.pop();
        }
        if stack.len() > MAX_DEPTH {
            return Ok(());
        }
        let Some(tag) = read_array::<4>(r) else {
            return Ok(());
        };
        let group = u16_of([tag[0], tag[1]]);
        let elem = u16_of([tag[2], tag[3]]);
        pos += 4;
        let top = stack.last().copied();
        if matches!(top, Some(Open::Sequence(_) | Open::Fragments)) {
            // Only items (or fragments) and the sequence delimiter may follow.
            let Some(l) = read_array::<4>(r) else {
                return Ok(());
            };
            let len = u32_of(l);
            pos += 4;
            match (group, elem, top) {
                (0xfffe, 0xe000, Some(Open::Fragments)) => {
                    let end = check_len(group, elem, len, pos)?;
                    if r.seek(SeekFrom::Start(end)).is_err() {
                        return Ok(());
                    }
                    pos = end;
                }
                (0xfffe, 0xe000, _) => {
                    let end = if len == u32::MAX {
                        None
                    } else {
                        Some(check_len(group, elem, len, pos)?)
                    };
                    stack.push(Open::Item(end));
                }
                (0xfffe, 0xe0dd, _) => {
                    stack.pop();
                }
                // The parser fails here (an unexpected tag), before allocating anything.
                _ => return Ok(()),
            }
            continue;
        }
        if stop_at_pixels && stack.is_empty() && (group, elem) == (0x7fe0, 0x0010) {
            return Ok(());
        }
        // A data element header (or an item delimiter) inside an item or at the top level.
        let (len, vr) = if group == 0xfffe {
            let Some(l) = read_array::<4>(r) else {
                return Ok(());
            };
            pos += 4;
            if elem == 0xe00d {
                if matches!(top, Some(Open::Item(_))) {
                    stack.pop();
                }
                continue;
            }
            (u32_of(l), *b"UN")
        } else if encoding == IMPLICIT_LE {
            let Some(l) = read_array::<4>(r) else {
                return Ok(());
            };
            pos += 4;
            (u32::from_le_bytes(l), dictionary_vr(group, elem))
        } else {
            let Some((len, long, vr)) = explicit_length(r, be) else {
                return Ok(());
            };
            pos += if long { 8 } else { 4 };
            (len, vr)
        };
        let sq = &vr == b"SQ";
        if len == u32::MAX {
            let pixels = (group, elem) == (0x7fe0, 0x0010) && !sq;
            stack.push(if pixels {
                Open::Fragments
            } else {
                Open::Sequence(None)
            });
            continue;
        }
        let end = check_len(group, elem, len, pos)?;
        if sq {
            stack.push(Open::Sequence(Some(end)));
        } else {
            let end = pos + consumed(&vr, len);
            if r.seek(SeekFrom::Start(end)).is_err() {
                return Ok(());
            }
            pos = end;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn element(out: &mut Vec<u8>, tag: (u16, u16), vr: &[u8; 2], len: u32, value: &[u8]) {
        out.extend_from_slice(&tag.0.to_le_bytes());
        out.extend_from_slice(&tag.1.to_le_bytes());
        out.extend_from_slice(vr);
        if matches!(vr, b"OB" | b"OW" | b"SQ" | b"UN" | b"UT") {
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&len.to_le_bytes());
        } else {
            out.extend_from_slice(&(len as u16).to_le_bytes());
        }
        out.extend_from_slice(value);
    }

    fn file(dataset: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 128];
        f.extend_from_slice(b"DICM");
        element(&mut f, (2, 0x10), b"UI", 20, b"1.2.840.10008.1.2.1\0");
        f.extend_from_slice(dataset);
        f
    }

    fn run(bytes: &[u8], stop: bool) -> Result<(), Problem> {
        check(
            &mut std::io::Cursor::new(bytes),
            bytes.len() as u64,
            stop,
            1 << 20,
        )
    }

    #[test]
    fn lying_lengths_are_found_at_any_depth() {
        let mut ds = Vec::new();
        element(&mut ds, (0x28, 0x10), b"US", 2, &[8, 0]);
        assert_eq!(run(&file(&ds), false), Ok(()));
        // A 3 GB OB value in a small file.
        let mut bad = ds.clone();
        element(&mut bad, (0x7fe0, 0x10), b"OB", 3_000_000_000, &[0; 16]);
        assert!(matches!(run(&file(&bad), false), Err(Problem::Length(_))));
        // ...which a header-only read does not look at.
        assert_eq!(run(&file(&bad), true), Ok(()));
        // Inside an undefined-length sequence item.
        let mut sq = ds.clone();
        element(&mut sq, (0x5200, 0x9229), b"SQ", u32::MAX, &[]);
        sq.extend_from_slice(&[0xfe, 0xff, 0x00, 0xe0, 0xff, 0xff, 0xff, 0xff]);
        element(&mut sq, (0x18, 0x50), b"UT", 2_000_000_000, b"ab");
        assert!(matches!(run(&file(&sq), true), Err(Problem::Length(_))));
        // Encapsulated fragments are skipped as bytes, but their lengths are checked.
        let mut enc = ds.clone();
        element(&mut enc, (0x7fe0, 0x10), b"OB", u32::MAX, &[]);
        enc.extend_from_slice(&[0xfe, 0xff, 0x00, 0xe0, 4, 0, 0, 0, 0xfe, 0xff, 0x00, 0xe0]);
        enc.extend_from_slice(&[0xfe, 0xff, 0xdd, 0xe0, 0, 0, 0, 0]);
        assert_eq!(run(&file(&enc), false), Ok(()));
        let mut enc2 = ds;
        element(&mut enc2, (0x7fe0, 0x10), b"OB", u32::MAX, &[]);
        enc2.extend_from_slice(&[0xfe, 0xff, 0x00, 0xe0, 0, 0, 0, 0x80, 1, 2]);
        assert!(matches!(run(&file(&enc2), false), Err(Problem::Length(_))));
    }
}
