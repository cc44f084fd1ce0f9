//! What a blocked task waits on, spelled out for the wait-for graph of a deadlock report:
//! the object's name and the tasks that hold it.

use crate::objects::{State, WaitOn, IO_OWNER};
use crate::primitives::{lock_name, LockId};
use crate::record::WaitEdge;
use crate::sched::{Sched, TaskId};

/// (description, holders) of `w`, as the reference's `Waitable` gives them.
pub fn describe(s: &State, w: WaitOn) -> (String, Vec<TaskId>) {
    match w {
        WaitOn::MmapLock(mm) => (
            lock_name(s, LockId::Mmap(mm)),
            s.mm(mm).mmap_lock.holder_tids(),
        ),
        WaitOn::VmLock(v) => (lock_name(s, LockId::Vm(v)), s.vmas[v].vm_lock.holder_tids()),
        WaitOn::Ptl(t) => (
            lock_name(s, LockId::Ptl(t)),
            s.tables[t].ptl.owner.into_iter().collect(),
        ),
        WaitOn::PageTableLock(mm) => (
            lock_name(s, LockId::PageTableLock(mm)),
            s.mm(mm).page_table_lock.owner.into_iter().collect(),
        ),
        WaitOn::Folio(f) | WaitOn::Writeback(f) => {
            let folio = &s.folios[f as usize];
            let holder = (folio.locked && folio.lock_owner >= 0 && folio.lock_owner != IO_OWNER)
                .then(|| usize::try_from(folio.lock_owner).unwrap_or(0));
            (format!("folio#{f}"), holder.into_iter().collect())
        }
        WaitOn::SwapIo => ("swap_io".to_owned(), Vec::new()),
        WaitOn::UffdPoll => ("uffd_poll".to_owned(), Vec::new()),
        WaitOn::Uffd(mm, page) => (format!("uffd(mm{mm}).page{page}"), Vec::new()),
        WaitOn::RcuCallbacks | WaitOn::RcuGracePeriod => ("rcu".to_owned(), Vec::new()),
    }
}

/// The wait-for graph of a deadlock: every blocked task, where it sleeps, on what, held by whom.
pub fn wait_for_graph(s: &State, sched: &Sched<WaitOn>) -> Vec<WaitEdge> {
    sched
        .wait_for_graph()
        .into_iter()
        .map(|(task, site, w)| {
            let (obj, holders) = describe(s, w);
            WaitEdge {
                task,
                site,
                obj,
                holders,
            }
        })
        .collect()
}
