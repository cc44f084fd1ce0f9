//! Mutants: historical fault-locking bugs put back into the engine at run time (ZOO.md).
//!
//! A mutant is a faithful re-creation of the historical code at its site, never a planted
//! assertion: the oracles have to find it from its effects. Adding one is one variant here
//! (with its name) plus the code change at its site, guarded by `s.mutant == Mutant::X`.

/// The mutant a run uses; [`Mutant::None`] by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mutant {
    #[default]
    None,
    /// Z18 (4089eef0e6ac and the riscv fix that followed): the arch fault handler calls
    /// `vma_end_read()` even when `handle_mm_fault` returned RETRY, whose callee already
    /// released the VMA lock.
    Z18DoubleVmaEndRead,
}

/// The names [`Mutant::from_name`] accepts, in zoo order.
pub const MUTANTS: [&str; 1] = ["Z18_double_vma_end_read"];

const ALL: [Mutant; 1] = [Mutant::Z18DoubleVmaEndRead];

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
