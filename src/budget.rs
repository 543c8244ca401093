//! The memory budget: the most bytes one loaded input (a volume as float32 voxels, or a
//! checkpoint) may need. Loaders compute the size from the header (NIfTI dims, DICOM
//! rows x columns x frames x files, safetensors tensor shapes) and refuse an input over the budget
//! before allocating for it, with the size needed and the budget in the message.
//!
//! The budget comes from, in order: a command's `--memory-budget SIZE`, the environment variable
//! [`ENV_VAR`] (`DELTAWKV_MEMORY_BUDGET`), and otherwise [`default_budget`]: [`FALLBACK`] (4 GiB)
//! or three quarters of the physical memory, whichever is less. Sizes are written like `4GiB`,
//! `512MiB`, `1.5G`, `2000000000` (bytes); `K`, `M`, `G`, `T` and their `iB` forms are powers of
//! 1024, `KB`, `MB`, `GB`, `TB` powers of 1000.

/// Environment variable that overrides the default budget (same syntax as `--memory-budget`).
pub const ENV_VAR: &str = "DELTAWKV_MEMORY_BUDGET";

/// The default budget where physical memory is at least 4/3 of it: 4 GiB.
pub const FALLBACK: u64 = 4 << 30;

/// Smallest budget [`parse_size`] accepts: 1 MiB (a smaller one refuses every real input, which is
/// more likely a typo such as `4` for `4GiB`).
pub const MIN_BUDGET: u64 = 1 << 20;

/// Why a memory budget was refused; each variant holds the text as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    /// The text does not start with a number.
    #[error("`{text}` is not a size (expected e.g. 4GiB, 512MiB, 2000000000)")]
    NotASize {
        /// The text as written.
        text: String,
    },
    /// The unit after the number is not one [`parse_size`] knows.
    #[error("`{text}`: unknown unit `{unit}` (use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB)")]
    UnknownUnit {
        /// The text as written.
        text: String,
        /// The unit, lower-cased.
        unit: String,
    },
    /// More bytes than a `u64` holds.
    #[error("`{text}` is too large")]
    TooLarge {
        /// The text as written.
        text: String,
    },
    /// Below [`MIN_BUDGET`].
    #[error(
        "`{text}` is {}, below the smallest memory budget of {}",
        human_bytes(*bytes),
        human_bytes(MIN_BUDGET)
    )]
    BelowMinimum {
        /// The text as written.
        text: String,
        /// The size it gives.
        bytes: u64,
    },
    /// The value of [`ENV_VAR`] is refused.
    #[error("{var}: {0}", var = ENV_VAR)]
    Env(Box<BudgetError>),
}

/// Parses a size such as `4GiB`, `512 MiB`, `1.5G`, `300MB` or `1048576` into bytes.
pub fn parse_size(text: &str) -> Result<u64, BudgetError> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| BudgetError::NotASize {
        text: text.to_string(),
    })?;
    let multiplier: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        other => {
            return Err(BudgetError::UnknownUnit {
                text: text.to_string(),
                unit: other.to_string(),
            });
        }
    };
    let bytes = value * multiplier;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(BudgetError::TooLarge {
            text: text.to_string(),
        });
    }
    let bytes = bytes.round() as u64;
    if bytes < MIN_BUDGET {
        return Err(BudgetError::BelowMinimum {
            text: text.to_string(),
            bytes,
        });
    }
    Ok(bytes)
}

/// The budget set by [`ENV_VAR`], if any; [`BudgetError::Env`] when it does not parse.
pub fn from_env() -> Result<Option<u64>, BudgetError> {
    match std::env::var(ENV_VAR) {
        Ok(v) if !v.trim().is_empty() => parse_size(&v)
            .map(Some)
            .map_err(|e| BudgetError::Env(Box::new(e))),
        _ => Ok(None),
    }
}

/// Physical memory in bytes (Linux `/proc/meminfo`), `None` where unknown.
pub fn physical_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line
        .trim_start_matches("MemTotal:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

/// The budget when no `--memory-budget` is given: [`ENV_VAR`] when set and valid (an invalid
/// value is logged and ignored here; the command line reports it as an error), else the lesser of
/// [`FALLBACK`] and three quarters of the physical memory.
pub fn default_budget() -> u64 {
    match from_env() {
        Ok(Some(b)) => return b,
        Ok(None) => {}
        Err(e) => tracing::warn!("{e}; using the default memory budget"),
    }
    builtin_default()
}

/// [`FALLBACK`] or three quarters of the physical memory, whichever is less.
pub fn builtin_default() -> u64 {
    match physical_memory() {
        Some(p) => FALLBACK.min(p / 4 * 3).max(MIN_BUDGET),
        None => FALLBACK,
    }
}

/// Resolves the budget of a command: `flag` when given, else [`ENV_VAR`] (an error when it does
/// not parse), else [`builtin_default`].
pub fn resolve(flag: Option<u64>) -> Result<u64, BudgetError> {
    if let Some(b) = flag {
        return Ok(b);
    }
    Ok(from_env()?.unwrap_or_else(builtin_default))
}

/// `1536` -> `1.5 KiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("4GiB"), Ok(4 << 30));
        assert_eq!(parse_size("4G"), Ok(4 << 30));
        assert_eq!(parse_size(" 512 MiB "), Ok(512 << 20));
        assert_eq!(parse_size("1.5g"), Ok(3 << 29));
        assert_eq!(parse_size("300MB"), Ok(300_000_000));
        assert_eq!(parse_size("2000000000"), Ok(2_000_000_000));
        assert!(parse_size("4").is_err(), "below the minimum");
        assert!(parse_size("lots").is_err());
        assert!(parse_size("4 parsecs").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999TiB").is_err());
    }

    #[test]
    fn refusals_name_the_text() {
        let message = |t: &str| parse_size(t).map_err(|e| e.to_string());
        assert_eq!(
            message("lots"),
            Err("`lots` is not a size (expected e.g. 4GiB, 512MiB, 2000000000)".into())
        );
        assert_eq!(
            message("4 parsecs"),
            Err(
                "`4 parsecs`: unknown unit `parsecs` (use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB)"
                    .into()
            )
        );
        assert_eq!(
            message("99999999999TiB"),
            Err("`99999999999TiB` is too large".into())
        );
        assert_eq!(
            message("4"),
            Err("`4` is 4 bytes, below the smallest memory budget of 1.0 MiB".into())
        );
        let env = BudgetError::Env(Box::new(BudgetError::TooLarge {
            text: "9e99".into(),
        }));
        assert_eq!(
            env.to_string(),
            "DELTAWKV_MEMORY_BUDGET: `9e99` is too large"
        );
    }

    #[test]
    fn default_is_bounded() {
        let b = builtin_default();
        assert!((MIN_BUDGET..=FALLBACK).contains(&b), "{b}");
        assert_eq!(resolve(Some(123 << 20)), Ok(123 << 20));
    }
}
