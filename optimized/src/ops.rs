//! The user operations of a case (MODEL.md §6): each runs as the kernel would for one task.
//! `kill` is handled by the run engine, which knows the threads.

use crate::case::{Op, OpKind};
use crate::device::dmirror_migrate_to_device;
use crate::fault::user_access;
use crate::fork::do_fork;
use crate::madvise::do_madvise_dontneed;
use crate::migrate::do_pages_move;
use crate::mmap::{sys_munmap, vm_mmap_pgoff};
use crate::mprotect::do_mprotect_pkey;
use crate::objects::Kernel;
use crate::primitives::{model_error, KResult};
use crate::reclaim::do_madvise_pageout;
use crate::userfaultfd::{userfaultfd_copy, userfaultfd_register, userfaultfd_unregister};

pub const ESRCH: i64 = -3;

/// Run one (non-kill) operation for the current task; its result as `fuzz.record` encodes it.
pub async fn do_op(k: &Kernel, op: Op) -> KResult<i64> {
    let Some(mm) = k.st().user_mm(usize::from(op.mm)) else {
        return Ok(ESRCH);
    };
    let (page, n, prot) = (u32::from(op.page), u32::from(op.npages), u32::from(op.prot));
    let value = u32::from(op.value);
    let r = match op.kind {
        OpKind::Read => user_access(k, mm, page, false, 0).await?,
        OpKind::Write => user_access(k, mm, page, true, value).await?,
        OpKind::Mmap => vm_mmap_pgoff(k, mm, page, n, prot).await?,
        OpKind::Munmap => i64::from(sys_munmap(k, mm, page, n).await?),
        OpKind::Mprotect => i64::from(do_mprotect_pkey(k, mm, page, n, prot).await?),
        OpKind::MadviseDontneed => i64::from(do_madvise_dontneed(k, mm, page, n).await?),
        OpKind::MadvisePageout => i64::from(do_madvise_pageout(k, mm, page, n).await?),
        OpKind::Migrate => i64::from(do_pages_move(k, mm, page).await?),
        OpKind::ToDevice => i64::from(dmirror_migrate_to_device(k, mm, page).await?),
        OpKind::UffdRegister => i64::from(userfaultfd_register(k, mm, page, n).await?),
        OpKind::UffdUnregister => i64::from(userfaultfd_unregister(k, mm, page, n).await?),
        OpKind::UffdCopy => i64::from(userfaultfd_copy(k, mm, page, value).await?),
        OpKind::Fork => do_fork(k, mm).await?,
        OpKind::Kill => return model_error("kill is handled by the run engine"),
    };
    Ok(r)
}
