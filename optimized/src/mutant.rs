//! Mutants: historical fault-locking bugs put back into the engine at run time (ZOO.md).
//!
//! A mutant is a faithful re-creation of the historical code at its site, never a planted
//! assertion: the oracles have to find it from its effects. Adding one is one variant here
//! (with its name) plus the code change at its site, guarded by `s.mutant == Mutant::X` and
//! marked with a comment citing the historical commit.
//!
//! | mutant                           | site                                        | historical code |
//! |----------------------------------|---------------------------------------------|-----------------|
//! | `Z18_double_vma_end_read`        | `fault::vma_lock_attempt`                   | arch code before 4089eef0e6ac |
//! | `Z19_folio_lock_mmap_unlock`     | `swapin::folio_lock_or_retry`               | `__folio_lock_or_retry` before fdc724d6aa44 |
//! | `Z24_migration_wait_pageref`     | `migrate::migration_entry_wait`             | `__migration_entry_wait` before ffa65753c431 |
//! | `Z09_detach_without_write_lock`  | `mmap::do_vmi_align_munmap`                 | before 73046fd00b06 and 457f67be5910 |
//! | `Z17_access_error_mmap_unlock`   | `fault::vma_lock_attempt`                   | powerpc before "powerpc/mm: fix mmap_lock bad unlock" |
//! | `Zrange_no_recheck`              | `vma_lock::lock_vma_under_rcu`              | without 50ee32537206's post-lock range check |
//! | `Zdevpriv_under_vma_lock`        | `swapin::do_swap_page`                      | the series' v1 before 1235ccd05b6d |
//! | `Zasync_swap_folio_lock`         | `swapin::do_swap_page`                      | `lock_page()` as before d065bd810b6d, under the VMA lock |

/// The mutant a run uses; [`Mutant::None`] by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mutant {
    #[default]
    None,
    /// Z18 (4089eef0e6ac and the riscv fix that followed): the arch fault handler calls
    /// `vma_end_read()` even when `handle_mm_fault` returned RETRY, whose callee already
    /// released the VMA lock.
    Z18DoubleVmaEndRead,
    /// Z19 (fdc724d6aa44, 1235ccd05b6d): `__folio_lock_or_retry` drops the fault lock with
    /// `mmap_read_unlock()`, as before the series, even when the fault holds the VMA lock.
    Z19FolioLockMmapUnlock,
    /// Z24 (ffa65753c431): a fault that finds a migration entry takes a reference on the folio
    /// (`get_page_unless_zero`) and drops it only once queued on the lock bit
    /// (`put_and_wait_on_page_locked`).
    Z24MigrationWaitPageref,
    /// Z09-detach (73046fd00b06 "mm: write-lock VMAs before removing them from VMA tree",
    /// 457f67be5910 "mm: introduce vma detached flag"): munmap takes the VMAs out of the tree
    /// and frees them without `vma_start_write()` (and without the detached flag).
    Z09DetachWithoutWriteLock,
    /// Z17 ("powerpc/mm: fix `mmap_lock` bad unlock", 6.4 series): on the VMA-lock path an
    /// access error goes to `bad_access()`, whose `__bad_area()` does `mmap_read_unlock()`.
    Z17AccessErrorMmapUnlock,
    /// Z-range: `lock_vma_under_rcu` trusts the tree walk's range and does not re-check `addr`
    /// against `vm_start`/`vm_end` after `vma_start_read()`.
    ZrangeNoRecheck,
    /// Z-devpriv (seed 000, 1235ccd05b6d): `do_swap_page` handles a device-private entry under
    /// the VMA lock instead of returning RETRY to fall back to `mmap_lock`.
    ZdevprivUnderVmaLock,
    /// Z-async-swap (seeds 000/001): `do_swap_page` locks the swapped-in folio with
    /// `folio_lock()` while holding the VMA lock, instead of `folio_lock_or_retry`.
    ZasyncSwapFolioLock,
}

/// The names [`Mutant::from_name`] accepts, in zoo order.
pub const MUTANTS: [&str; 8] = [
    "Z18_double_vma_end_read",
    "Z19_folio_lock_mmap_unlock",
    "Z24_migration_wait_pageref",
    "Z09_detach_without_write_lock",
    "Z17_access_error_mmap_unlock",
    "Zrange_no_recheck",
    "Zdevpriv_under_vma_lock",
    "Zasync_swap_folio_lock",
];

const ALL: [Mutant; 8] = [
    Mutant::Z18DoubleVmaEndRead,
    Mutant::Z19FolioLockMmapUnlock,
    Mutant::Z24MigrationWaitPageref,
    Mutant::Z09DetachWithoutWriteLock,
    Mutant::Z17AccessErrorMmapUnlock,
    Mutant::ZrangeNoRecheck,
    Mutant::ZdevprivUnderVmaLock,
    Mutant::ZasyncSwapFolioLock,
];

/// A mutant name that is not in [`MUTANTS`]; the message lists the known names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownMutant(pub String);

impl std::fmt::Display for UnknownMutant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "unknown mutant {:?} (known: {})",
            self.0,
            MUTANTS.join(", ")
        )
    }
}

impl std::error::Error for UnknownMutant {}

impl Mutant {
    /// The zoo name (`None` for the unmutated engine).
    pub const fn name(self) -> Option<&'static str> {
        match self {
            Mutant::None => None,
            Mutant::Z18DoubleVmaEndRead => Some(MUTANTS[0]),
            Mutant::Z19FolioLockMmapUnlock => Some(MUTANTS[1]),
            Mutant::Z24MigrationWaitPageref => Some(MUTANTS[2]),
            Mutant::Z09DetachWithoutWriteLock => Some(MUTANTS[3]),
            Mutant::Z17AccessErrorMmapUnlock => Some(MUTANTS[4]),
            Mutant::ZrangeNoRecheck => Some(MUTANTS[5]),
            Mutant::ZdevprivUnderVmaLock => Some(MUTANTS[6]),
            Mutant::ZasyncSwapFolioLock => Some(MUTANTS[7]),
        }
    }

    /// Parse a zoo name; `None` gives the unmutated engine.
    pub fn from_name(name: Option<&str>) -> Result<Mutant, UnknownMutant> {
        let Some(name) = name else {
            return Ok(Mutant::None);
        };
        ALL.into_iter()
            .find(|m| m.name() == Some(name))
            .ok_or_else(|| UnknownMutant(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::{Mutant, ALL, MUTANTS};

    #[test]
    fn every_mutant_has_its_name_in_zoo_order() {
        for (m, name) in ALL.into_iter().zip(MUTANTS) {
            assert_eq!(m.name(), Some(name));
            assert_eq!(Mutant::from_name(Some(name)), Ok(m));
        }
        assert_eq!(Mutant::from_name(None), Ok(Mutant::None));
        assert!(Mutant::from_name(Some("Z00_none")).is_err());
    }
}
