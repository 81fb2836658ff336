//! How a streamed upload is cut into multipart parts: the size of each part
//! and what that implies for memory and for the largest object.
//!
//! S3 allows at most [`MAX_PARTS`] parts of 5 MiB to 5 GiB each (the last
//! one may be smaller). Parts start at the configured size and double every
//! [`PARTS_PER_DOUBLING`] parts up to a ceiling: small dumps use small
//! buffers, and with the defaults (16 MiB growing to 128 MiB) the 10,000
//! parts still hold 984 GiB (1.06 TB). Setting the ceiling equal to the
//! initial size gives equal parts, which Cloudflare R2 requires.

use backup_core::{Error, Result};

/// Most parts one multipart upload may have (S3's limit).
pub const MAX_PARTS: usize = 10_000;

/// Smallest part S3 accepts (except for the last part).
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;

/// Largest part S3 accepts.
pub const MAX_PART_SIZE: usize = 5 * 1024 * 1024 * 1024;

/// Parts uploaded at one size before the size doubles.
pub const PARTS_PER_DOUBLING: usize = 1_000;

/// Default size of the first parts.
pub const DEFAULT_PART_SIZE: usize = 16 * 1024 * 1024;

/// Default ceiling the part size grows to.
pub const DEFAULT_MAX_PART_SIZE: usize = 128 * 1024 * 1024;

/// Default number of parts uploading at once.
pub const DEFAULT_CONCURRENCY: usize = 4;

/// The validated part schedule of an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PartPlan {
    initial: usize,
    max: usize,
    concurrency: usize,
}

impl PartPlan {
    /// Checks the sizes against S3's limits.
    pub(crate) fn new(initial: usize, max: usize, concurrency: usize) -> Result<PartPlan> {
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&initial) {
            return Err(Error::Config(format!(
                "S3 part size must be between 5 MiB and 5 GiB, got {initial} bytes"
            )));
        }
        if !(initial..=MAX_PART_SIZE).contains(&max) {
            return Err(Error::Config(format!(
                "S3 maximum part size must be between the part size ({initial}) and 5 GiB, got {max} bytes"
            )));
        }
        if concurrency == 0 {
            return Err(Error::Config(
                "S3 upload concurrency must be at least 1".into(),
            ));
        }
        Ok(PartPlan {
            initial,
            max,
            concurrency,
        })
    }

    /// Size of part `index` (0-based).
    pub(crate) fn part_size(&self, index: usize) -> usize {
        let doublings = (index / PARTS_PER_DOUBLING).min(32) as u32;
        self.initial
            .checked_mul(1usize << doublings)
            .map_or(self.max, |size| size.min(self.max))
    }

    /// Parts uploading at once.
    pub(crate) fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// The largest object [`MAX_PARTS`] parts can hold.
    pub(crate) fn capacity(&self) -> u64 {
        let mut total = 0u64;
        let mut index = 0;
        while index < MAX_PARTS {
            let run = PARTS_PER_DOUBLING.min(MAX_PARTS - index);
            total += run as u64 * self.part_size(index) as u64;
            index += run;
        }
        total
    }

    /// Upper bound of the memory an upload holds once it has sent
    /// `index` parts: the parts in flight plus the one being filled.
    pub(crate) fn memory_bound(&self, index: usize) -> u64 {
        (self.concurrency as u64 + 1) * self.part_size(index) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1024 * 1024;

    #[test]
    fn part_sizes_double_every_thousand_parts_up_to_the_ceiling() {
        let plan = PartPlan::new(16 * MIB, 128 * MIB, 4).unwrap();
        let cases = [
            (0, 16),
            (999, 16),
            (1_000, 32),
            (1_999, 32),
            (2_000, 64),
            (3_000, 128),
            (9_999, 128),
        ];
        for (index, mib) in cases {
            assert_eq!(plan.part_size(index), mib * MIB, "part {index}");
        }
    }

    #[test]
    fn default_plan_holds_a_terabyte() {
        let plan = PartPlan::new(DEFAULT_PART_SIZE, DEFAULT_MAX_PART_SIZE, 4).unwrap();
        assert!(plan.capacity() >= 1_000_000_000_000, "{}", plan.capacity());
        assert_eq!(plan.capacity(), 1_008_000 * MIB as u64); // 984.4 GiB
        // Memory: 5 × 16 MiB while small, 5 × 128 MiB at the very largest.
        assert_eq!(plan.memory_bound(0), 80 * MIB as u64);
        assert_eq!(plan.memory_bound(9_999), 640 * MIB as u64);
    }

    #[test]
    fn equal_parts_when_the_ceiling_is_the_initial_size() {
        let plan = PartPlan::new(100 * MIB, 100 * MIB, 2).unwrap();
        assert!(
            (0..MAX_PARTS)
                .step_by(997)
                .all(|i| plan.part_size(i) == 100 * MIB)
        );
        assert_eq!(plan.capacity(), MAX_PARTS as u64 * 100 * MIB as u64);
    }

    #[test]
    fn limits_are_enforced() {
        let cases = [
            (MIN_PART_SIZE - 1, MIN_PART_SIZE, 1),
            (MIN_PART_SIZE, MIN_PART_SIZE - 1, 1),
            (MAX_PART_SIZE + 1, MAX_PART_SIZE + 1, 1),
            (MIN_PART_SIZE, MAX_PART_SIZE + 1, 1),
            (MIN_PART_SIZE, MIN_PART_SIZE, 0),
        ];
        for (initial, max, concurrency) in cases {
            let err = PartPlan::new(initial, max, concurrency).unwrap_err();
            assert!(matches!(err, Error::Config(_)), "{err:?}");
        }
        let huge = PartPlan::new(MAX_PART_SIZE, MAX_PART_SIZE, 1).unwrap();
        assert_eq!(huge.part_size(9_999), MAX_PART_SIZE);
    }
}
