//! RCU: read sections per task, `call_rcu()` for `vm_area_free()` and the grace-period daemon
//! (MODEL.md §4.1, `kernel/fork.c:vm_area_free()` with `CONFIG_PER_VMA_LOCK=y`, v6.6).
//!
//! A callback runs on the RCU daemon once every task that was inside a read section when the
//! callback was queued has left that section. The only callback is the VMA free: it checks
//! that nobody holds the VMA's `vm_lock` and poisons the VMA.
//!
//! | rule               | when                                                            |
//! |--------------------|-----------------------------------------------------------------|
//! | `vma.freed-locked` | the free callback finds `vm_lock` held (`VM_BUG_ON_VMA`, I14)    |

use crate::objects::{Kernel, RcuCallback, State, VmaId, WaitOn};
use crate::primitives::{violate, KResult};

pub fn rcu_read_lock(s: &mut State) {
    s.me().rcu_nesting += 1;
}

pub fn rcu_read_unlock(s: &mut State) {
    let cur = s.me();
    cur.rcu_nesting = cur.rcu_nesting.saturating_sub(1);
    if cur.rcu_nesting == 0 {
        cur.rcu_exits += 1;
        if !s.rcu_callbacks.is_empty() {
            wake_rcu_daemon(s);
        }
    }
}

fn wake_rcu_daemon(s: &mut State) {
    if let Some(d) = s.rcu_daemon {
        s.wake(d);
    }
}

/// `kernel/fork.c:vm_area_free()` (v6.6, `CONFIG_PER_VMA_LOCK=y`): `call_rcu(vm_area_free_rcu_cb)`.
pub fn vm_area_free(s: &mut State, vma: VmaId) {
    let readers = s
        .cur
        .iter()
        .enumerate()
        .filter(|(_, c)| c.rcu_nesting > 0)
        .map(|(t, c)| (t, c.rcu_exits))
        .collect();
    s.rcu_callbacks.push(RcuCallback { vma, readers });
    wake_rcu_daemon(s);
}

/// `kernel/fork.c:vm_area_free_rcu_cb()` (v6.6): the VMA must not be locked; poison it.
fn vm_area_free_rcu_cb(s: &mut State, vma: VmaId) {
    if s.vmas[vma].vm_lock.is_locked() {
        let holders = s.vmas[vma].vm_lock.holder_tids();
        violate(
            s,
            "vma.freed-locked",
            "vm_area_free_rcu_cb",
            format!("vma#{vma} freed while its vm_lock is held by {holders:?}"),
        );
    }
    s.vmas[vma].freed = true;
}

fn grace_period_over(s: &State, cb: &RcuCallback) -> bool {
    cb.readers
        .iter()
        .all(|&(t, exits)| s.cur[t].rcu_exits > exits)
}

/// The RCU daemon: runs one ready callback per step; sleeps while none is ready.
pub async fn rcu_daemon(k: &Kernel) -> KResult<()> {
    loop {
        let wait = {
            let mut s = k.st();
            let ready = s
                .rcu_callbacks
                .iter()
                .position(|cb| grace_period_over(&s, cb));
            match ready {
                Some(i) => {
                    let cb = s.rcu_callbacks.remove(i);
                    vm_area_free_rcu_cb(&mut s, cb.vma);
                    None
                }
                None if s.rcu_callbacks.is_empty() => Some(WaitOn::RcuCallbacks),
                None => Some(WaitOn::RcuGracePeriod),
            }
        };
        match wait {
            Some(w) => k.block(w, "rcu_gp:wait").await,
            None => k.yield_now("rcu_gp:callback").await,
        }
    }
}
