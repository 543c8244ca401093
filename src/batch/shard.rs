//! Splitting the sorted job list among the tasks of a job array: `--shard I/N`, or the shard a
//! scheduler gives through the environment (Slurm job arrays, Kubernetes Indexed Jobs). Job `j`
//! of the sorted list belongs to shard `j mod N` (round robin, so that sorted runs of large and
//! small volumes spread over the tasks).

use super::BatchError;

/// The environment variable giving the number of shards of a Kubernetes Indexed Job (set it to
/// the Job's `completions`; Kubernetes gives only the index, `JOB_COMPLETION_INDEX`).
pub const K8S_COUNT_VAR: &str = "DELTAWKV_SHARD_COUNT";

/// Shard `index` of `count` (0-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Shard {
    /// 0-based index, below `count`.
    pub index: usize,
    /// Number of shards, at least 1.
    pub count: usize,
}

impl Shard {
    /// The whole list.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// A checked shard.
    pub fn new(index: usize, count: usize) -> Result<Self, BatchError> {
        if count == 0 || index >= count {
            return Err(BatchError::Shard(format!(
                "shard {index}/{count}: the index must be below the count, the count at least 1"
            )));
        }
        Ok(Self { index, count })
    }

    /// Parses `I/N` (`--shard 0/4`).
    pub fn parse(s: &str) -> Result<Self, BatchError> {
        let bad = || BatchError::Shard(format!("--shard {s}: expected I/N, e.g. 0/4"));
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let i = i.trim().parse().map_err(|_| bad())?;
        let n = n.trim().parse().map_err(|_| bad())?;
        Self::new(i, n)
    }

    /// Whether job `j` of the sorted list belongs to this shard.
    pub fn owns(&self, j: usize) -> bool {
        j % self.count == self.index
    }

    /// This shard's part of `items` (in order).
    pub fn select<T>(&self, items: Vec<T>) -> Vec<T> {
        items
            .into_iter()
            .enumerate()
            .filter(|(j, _)| self.owns(*j))
            .map(|(_, t)| t)
            .collect()
    }

    /// The shard a scheduler set in the environment (`var` looks a variable up), with the
    /// variables it came from; `None` when none is set.
    /// - Slurm job arrays: `SLURM_ARRAY_TASK_ID`, `SLURM_ARRAY_TASK_COUNT`, and
    ///   `SLURM_ARRAY_TASK_MIN` / `SLURM_ARRAY_TASK_STEP` so that `--array=1-8` or `0-14:2` map to
    ///   0..count (an array of listed ids such as `1,5,9` cannot be mapped and is refused).
    /// - Kubernetes Indexed Jobs: `JOB_COMPLETION_INDEX` with [`K8S_COUNT_VAR`].
    pub fn from_env(
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<(Self, String)>, BatchError> {
        let num = |name: &str| -> Result<Option<usize>, BatchError> {
            match var(name) {
                None => Ok(None),
                Some(v) if v.trim().is_empty() => Ok(None),
                Some(v) => v.trim().parse().map(Some).map_err(|_| {
                    BatchError::Shard(format!("{name}={v} is not a non-negative integer"))
                }),
            }
        };
        if let Some(id) = num("SLURM_ARRAY_TASK_ID")? {
            let count = num("SLURM_ARRAY_TASK_COUNT")?.ok_or_else(|| {
                BatchError::Shard(
                    "SLURM_ARRAY_TASK_ID is set without SLURM_ARRAY_TASK_COUNT".into(),
                )
            })?;
            let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let step = num("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
            let offset = id.checked_sub(min).ok_or_else(|| {
                BatchError::Shard(format!(
                    "SLURM_ARRAY_TASK_ID={id} is below SLURM_ARRAY_TASK_MIN={min}"
                ))
            })?;
            if offset % step != 0 || offset / step >= count {
                return Err(BatchError::Shard(format!(
                    "SLURM_ARRAY_TASK_ID={id} (min {min}, step {step}, count {count}) is not one \
                     of an evenly spaced array: use --array=A-B[:S], or pass --shard I/N"
                )));
            }
            let shard = Self::new(offset / step, count)?;
            let from = format!(
                "SLURM_ARRAY_TASK_ID={id} SLURM_ARRAY_TASK_MIN={min} SLURM_ARRAY_TASK_STEP={step} \
                 SLURM_ARRAY_TASK_COUNT={count}"
            );
            return Ok(Some((shard, from)));
        }
        if let Some(index) = num("JOB_COMPLETION_INDEX")? {
            let count = num(K8S_COUNT_VAR)?.ok_or_else(|| {
                BatchError::Shard(format!(
                    "JOB_COMPLETION_INDEX is set without {K8S_COUNT_VAR} (set it to the Job's \
                     completions)"
                ))
            })?;
            let shard = Self::new(index, count)?;
            return Ok(Some((
                shard,
                format!("JOB_COMPLETION_INDEX={index} {K8S_COUNT_VAR}={count}"),
            )));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn shards_partition_the_list() {
        let items: Vec<usize> = (0..11).collect();
        let mut union: Vec<usize> = (0..3)
            .flat_map(|i| Shard::new(i, 3).unwrap().select(items.clone()))
            .collect();
        union.sort();
        assert_eq!(union, items);
        assert_eq!(Shard::new(1, 3).unwrap().select(items), vec![1, 4, 7, 10]);
    }

    #[test]
    fn parse_checks_the_range() {
        assert_eq!(Shard::parse("2/4").unwrap(), Shard { index: 2, count: 4 });
        for bad in ["4/4", "0/0", "1", "a/2", "-1/2"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn slurm_arrays_map_from_their_minimum_and_step() {
        let s = Shard::from_env(env(&[
            ("SLURM_ARRAY_TASK_ID", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(s.0, Shard { index: 2, count: 3 });
        let s = Shard::from_env(env(&[
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(s.0, Shard { index: 2, count: 3 });
        let s = Shard::from_env(env(&[
            ("SLURM_ARRAY_TASK_ID", "14"),
            ("SLURM_ARRAY_TASK_COUNT", "8"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_STEP", "2"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(s.0, Shard { index: 7, count: 8 });
        // An array of listed ids (1,5,9: count 3) cannot be mapped.
        assert!(
            Shard::from_env(env(&[
                ("SLURM_ARRAY_TASK_ID", "9"),
                ("SLURM_ARRAY_TASK_COUNT", "3"),
                ("SLURM_ARRAY_TASK_MIN", "1"),
            ]))
            .is_err()
        );
        assert!(Shard::from_env(env(&[("SLURM_ARRAY_TASK_ID", "1")])).is_err());
    }

    #[test]
    fn kubernetes_index_needs_its_count() {
        let s = Shard::from_env(env(&[("JOB_COMPLETION_INDEX", "4"), (K8S_COUNT_VAR, "5")]))
            .unwrap()
            .unwrap();
        assert_eq!(s.0, Shard { index: 4, count: 5 });
        assert!(Shard::from_env(env(&[("JOB_COMPLETION_INDEX", "4")])).is_err());
        assert!(
            Shard::from_env(env(&[("JOB_COMPLETION_INDEX", "5"), (K8S_COUNT_VAR, "5")])).is_err()
        );
        assert_eq!(Shard::from_env(env(&[])).unwrap(), None);
    }
}
