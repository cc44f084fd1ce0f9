//! Interleaving features: the mirror of the definitions in `reference/sched.py`'s module
//! docstring (`site_hash`, `feature_bucket`, `LOCK_FIELDS`). After every step the scheduler
//! folds (the yield site the running task reached, the summary of the locks it holds, the site
//! of the task that ran the step before if that was another task) into one of 2^16 buckets.
//! The set lives in a fixed bitmap allocated once per run, so a step costs one FNV-1a of the
//! site and a few multiplications, and nothing at all when features are off.

/// Buckets are `FEATURE_BITS`-bit numbers.
pub const FEATURE_BITS: u32 = 16;

const WORDS: usize = (1 << FEATURE_BITS) / 64;

/// The lock classes whose 4-bit counts make up a task's lock summary, in field order (field
/// `i` is bits `4i..4i+4`), as `reference.sched.LOCK_FIELDS`.
pub const LOCK_FIELDS: [&str; 7] = [
    "mmap_lock:r",
    "mmap_lock:w",
    "vm_lock:r",
    "vm_lock:w",
    "ptl",
    "page_table_lock",
    "folio_lock",
];

/// The index of each class in [`LOCK_FIELDS`].
pub mod lock_field {
    pub const MMAP_READ: u32 = 0;
    pub const MMAP_WRITE: u32 = 1;
    pub const VM_READ: u32 = 2;
    pub const VM_WRITE: u32 = 3;
    pub const PTL: u32 = 4;
    pub const PAGE_TABLE_LOCK: u32 = 5;
    pub const FOLIO_LOCK: u32 = 6;
}

/// FNV-1a (32-bit) of the site's UTF-8 bytes.
#[must_use]
pub fn site_hash(site: &str) -> u32 {
    site.bytes().fold(0x811C_9DC5, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The bucket of one feature: `site_h` and `prev_h` are [`site_hash`]es (`prev_h` is 0 when
/// the previous step ran the same task), `locks` the lock summary.
#[must_use]
pub fn feature_bucket(site_h: u32, locks: u32, prev_h: u32) -> u16 {
    let mut x = site_h.wrapping_mul(0x9E37_79B1)
        ^ prev_h.wrapping_mul(0x85EB_CA77)
        ^ locks.wrapping_mul(0xC2B2_AE3D);
    x ^= x >> 15;
    x = x.wrapping_mul(0x2C1B_3C6D);
    x ^= x >> 12;
    x = x.wrapping_mul(0x297A_2D39);
    x ^= x >> 15;
    // The top 16 bits: always fits.
    u16::try_from(x >> (32 - FEATURE_BITS)).unwrap_or(u16::MAX)
}

/// A set of buckets: one bit per bucket.
#[derive(Clone)]
pub struct FeatureMap {
    bits: Box<[u64; WORDS]>,
}

impl std::fmt::Debug for FeatureMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeatureMap")
            .field("len", &self.len())
            .finish()
    }
}

impl Default for FeatureMap {
    fn default() -> Self {
        Self::new()
    }
}

impl FeatureMap {
    #[must_use]
    pub fn new() -> Self {
        Self {
            bits: Box::new([0; WORDS]),
        }
    }

    pub fn insert(&mut self, bucket: u16) {
        let b = usize::from(bucket);
        self.bits[b / 64] |= 1 << (b % 64);
    }

    #[must_use]
    pub fn contains(&self, bucket: u16) -> bool {
        let b = usize::from(bucket);
        self.bits[b / 64] & (1 << (b % 64)) != 0
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.bits.iter().map(|w| w.count_ones() as usize).sum()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.bits.iter().all(|&w| w == 0)
    }

    /// The buckets in increasing order.
    #[must_use]
    pub fn sorted(&self) -> Vec<u16> {
        let mut out = Vec::new();
        for (i, &word) in self.bits.iter().enumerate() {
            let mut w = word;
            while w != 0 {
                let bit = w.trailing_zeros() as usize;
                // i < WORDS and bit < 64, so the bucket is below 2^16.
                out.push(u16::try_from(i * 64 + bit).unwrap_or(u16::MAX));
                w &= w - 1;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_known_values() {
        assert_eq!(site_hash(""), 0x811C_9DC5);
        assert_eq!(site_hash("a"), 0xE40C_292C);
    }

    #[test]
    fn map_keeps_sorted_distinct_buckets() {
        let mut m = FeatureMap::new();
        assert!(m.is_empty());
        for b in [7, 65_535, 0, 7, 64, 63] {
            m.insert(b);
        }
        assert_eq!(m.sorted(), vec![0, 7, 63, 64, 65_535]);
        assert_eq!(m.len(), 5);
        assert!(m.contains(64) && !m.contains(65));
    }

    #[test]
    fn lock_field_indices_name_lock_fields() {
        let named = [
            (lock_field::MMAP_READ, "mmap_lock:r"),
            (lock_field::MMAP_WRITE, "mmap_lock:w"),
            (lock_field::VM_READ, "vm_lock:r"),
            (lock_field::VM_WRITE, "vm_lock:w"),
            (lock_field::PTL, "ptl"),
            (lock_field::PAGE_TABLE_LOCK, "page_table_lock"),
            (lock_field::FOLIO_LOCK, "folio_lock"),
        ];
        for (i, name) in named {
            assert_eq!(LOCK_FIELDS[i as usize], name);
        }
    }

    #[test]
    fn locks_and_switches_change_the_bucket() {
        let (a, b) = (site_hash("fault:a"), site_hash("fault:b"));
        assert_ne!(feature_bucket(a, 0, 0), feature_bucket(a, 1, 0));
        assert_ne!(feature_bucket(a, 0, 0), feature_bucket(a, 0, b));
        assert_ne!(feature_bucket(a, 0, b), feature_bucket(b, 0, a));
    }
}
