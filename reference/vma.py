"""The VMA tree: lookup, split, merge, ``anon_vma_prepare``, ``vm_area_free`` (mm/mmap.c, v6.6).

The tree is ``mm.vmas`` kept sorted by ``vm_start`` (the maple tree's order). ``vm_pgoff`` is
not modelled: for anonymous private memory it always equals ``vm_start`` (mmap sets it so,
split and merge keep it linear, stack expansion moves both), so the kernel's pgoff
continuity checks always pass.

Every caller holds ``mmap_lock`` for write, except ``anon_vma_prepare`` (read, under
``page_table_lock``) and ``find_vma``/``vma_lookup`` (either mode). With
``CONFIG_PER_VMA_LOCK=n`` ``vma_start_write`` is empty and a removed VMA is freed at once
(``vm_area_free`` → ``__vm_area_free``, kernel/fork.c), poisoned so later use is caught:

============================  =================================================================
rule                          when
============================  =================================================================
vma.use-after-free            `check_vma` on a freed VMA (callers: the fault path, rmap walks);
                              stops the run
vma.write-unlocked            a VMA split, merged, expanded or its flags changed without
                              ``mmap_lock`` held for write (`vma_assert_write_locked`, I6)
vma.anon_vma-under-vma-lock   ``anon_vma_prepare`` without ``mmap_lock`` (I15)
vma.tree-unlocked             a tree walk (`find_vma`, `vma_prev` ...) without ``mmap_lock``
                              (`check_tree_read`; not `vma_lookup`)
============================  =================================================================
"""

from __future__ import annotations

from bisect import insort

from reference.mmap_lock import mmap_assert_locked, mmap_assert_write_locked
from reference.objects import VM_ACCESS_FLAGS, Mm, UffdCtx, Vma
from reference.primitives import (
    Current,
    Gen,
    might_sleep,
    spin_lock,
    spin_unlock,
    violate,
)


def vma_assert_write_locked(cur: Current, mm: Mm, function: str) -> None:
    """``vma_assert_write_locked()`` with PER_VMA_LOCK=n: ``mmap_assert_write_locked()``
    (a VMA is "write-locked" iff its mm's ``mmap_lock`` is write-held by this task, I6)."""
    mmap_assert_write_locked(cur, mm, "vma.write-unlocked", function)


def check_vma(cur: Current, vma: Vma, function: str) -> None:
    """KASAN: `vma` must not have been freed."""
    if vma.freed:
        violate(cur, "vma.use-after-free", function, f"{vma!r} used after free", True)


def _start(v: Vma) -> int:
    return v.vm_start


def check_tree_read(cur: Current, mm: Mm, function: str) -> None:
    """The maple tree's lockdep check: ``mm_init()`` gives ``mm_mt`` ``mmap_lock`` as its
    external lock (``mt_set_external_lock``), so every node a walk reads goes through
    ``rcu_dereference_check(.., mt_locked(mt))`` (lib/maple_tree.c ``mt_slot()``, v6.6). With
    PER_VMA_LOCK=n nothing walks the tree under RCU alone: a walk needs ``mmap_lock``, which is
    also what ``find_vma()``/``find_vma_intersection()`` assert (``mmap_assert_locked``).
    ``vma_lookup`` is exempt: ``mtree_load()`` takes ``rcu_read_lock()`` itself."""
    lock = mm.mmap_lock
    # `holds(cur, lock)` written out: every lookup of every kernel path runs this.
    for held, _mode in cur.held:
        if held is lock:
            return
    violate(cur, "vma.tree-unlocked", function, f"mm{mm.id}'s VMA tree walked without mmap_lock")


def find_vma(cur: Current, mm: Mm, addr: int) -> Vma | None:
    """``find_vma()``: the first VMA with ``vm_end > addr`` (v6.6 also
    ``mmap_assert_locked()``s, which `check_tree_read` covers)."""
    check_tree_read(cur, mm, "find_vma")
    for v in mm.vmas:
        if v.vm_end > addr:
            return v
    return None


def vma_lookup(mm: Mm, addr: int) -> Vma | None:
    """``vma_lookup()``: the VMA containing `addr`. v6.6 asserts no lock: ``mtree_load()``
    takes ``rcu_read_lock()`` itself."""
    for v in mm.vmas:
        if v.vm_start <= addr < v.vm_end:
            return v
        if v.vm_start > addr:
            return None
    return None


def find_vma_intersection(cur: Current, mm: Mm, start: int, end: int) -> Vma | None:
    check_tree_read(cur, mm, "find_vma_intersection")
    for v in mm.vmas:
        if v.vm_end > start:
            return v if v.vm_start < end else None
    return None


def vma_prev(cur: Current, mm: Mm, vma: Vma) -> Vma | None:
    check_tree_read(cur, mm, "vma_prev")
    i = mm.vmas.index(vma)
    return mm.vmas[i - 1] if i > 0 else None


def vma_next(cur: Current, mm: Mm, vma: Vma) -> Vma | None:
    check_tree_read(cur, mm, "vma_next")
    i = mm.vmas.index(vma)
    return mm.vmas[i + 1] if i + 1 < len(mm.vmas) else None


def vma_prev_of(cur: Current, mm: Mm, addr: int) -> Vma | None:
    """The last VMA that ends at or before `addr`."""
    check_tree_read(cur, mm, "vma_prev")
    prev = None
    for v in mm.vmas:
        if v.vm_end > addr:
            break
        prev = v
    return prev


def vma_iter_store(mm: Mm, vma: Vma) -> None:
    insort(mm.vmas, vma, key=_start)


def vma_iter_remove(mm: Mm, vma: Vma) -> None:
    mm.vmas.remove(vma)


def vm_area_dup(cur: Current, vma: Vma, mm: Mm | None = None) -> Vma:
    """``vm_area_dup()``: a copy with a new id (same flags, anon_vma, uffd ctx), in `mm` (by
    default the same mm)."""
    new = cur.kernel.alloc_vma(vma.mm if mm is None else mm, vma.vm_start, vma.vm_end, vma.vm_flags)
    new.anon_vma = vma.anon_vma
    new.anon_vma_chain_len = vma.anon_vma_chain_len
    new.uffd_ctx = vma.uffd_ctx
    return new


def vm_area_free(vma: Vma) -> None:
    """kernel/fork.c:vm_area_free() (v6.6, !PER_VMA_LOCK): freed at once, poisoned."""
    vma.freed = True


# ---------------------------------------------------------------------------------------------
# Split and merge


def split_vma(cur: Current, mm: Mm, vma: Vma, addr: int, new_below: bool) -> Vma:
    """mm/mmap.c:__split_vma() (v6.6): the new VMA takes ``[vm_start, addr)`` if `new_below`,
    else ``[addr, vm_end)``; `vma` keeps the rest. Returns the new VMA. Caller holds
    ``mmap_lock`` for write."""
    vma_assert_write_locked(cur, mm, "__split_vma")
    new = vm_area_dup(cur, vma)
    if new_below:
        new.vm_end = addr
        vma.vm_start = addr
    else:
        new.vm_start = addr
        vma.vm_end = addr
    vma_iter_store(mm, new)
    mm.vmas.sort(key=_start)
    return new


def is_mergeable_anon_vma(a1: int | None, a2: int | None, vma: Vma | None) -> bool:
    """mm/mmap.c:is_mergeable_anon_vma(): `vma`'s chain must be singular to merge with None."""
    if (a1 is None or a2 is None) and (vma is None or vma.anon_vma_chain_len == 1):
        return True
    return a1 == a2


def is_mergeable_vma(vma: Vma, flags: int, ctx: UffdCtx | None) -> bool:
    return vma.vm_flags == flags and vma.uffd_ctx is ctx


def can_vma_merge(vma: Vma, flags: int, anon_vma: int | None, ctx: UffdCtx | None) -> bool:
    """``can_vma_merge_before/after`` without pgoff (see the module docstring)."""
    return is_mergeable_vma(vma, flags, ctx) and is_mergeable_anon_vma(anon_vma, vma.anon_vma, vma)


def dup_anon_vma(dst: Vma, src: Vma) -> None:
    """The expanding VMA inherits the shrinking/removed one's anon_vma if it has none."""
    if src.anon_vma is not None and dst.anon_vma is None:
        dst.anon_vma = src.anon_vma
        dst.anon_vma_chain_len = src.anon_vma_chain_len


def _remove_merged(mm: Mm, *victims: Vma | None) -> None:
    for v in victims:
        if v is not None:
            vma_iter_remove(mm, v)
            vm_area_free(v)


def vma_merge(
    cur: Current,
    mm: Mm,
    prev: Vma | None,
    addr: int,
    end: int,
    flags: int,
    anon_vma: int | None,
    ctx: UffdCtx | None,
) -> Vma | None:
    """mm/mmap.c:vma_merge() (v6.6), cases 1-8 of its comment; None if nothing merges.
    Caller holds ``mmap_lock`` for write."""
    vma_assert_write_locked(cur, mm, "vma_merge")
    curr = find_vma_intersection(cur, mm, prev.vm_end if prev else 0, end)
    nxt = vma_lookup(mm, end) if curr is None or end == curr.vm_end else None
    merge_prev = (
        prev is not None and addr == prev.vm_end and can_vma_merge(prev, flags, anon_vma, ctx)
    )
    merge_next = nxt is not None and can_vma_merge(nxt, flags, anon_vma, ctx)
    if not merge_prev and not merge_next:
        return None
    remove = remove2 = adjust = None
    adj_start = 0
    vma_end = end
    if merge_prev and merge_next:
        assert prev is not None and nxt is not None
        both = is_mergeable_anon_vma(prev.anon_vma, nxt.anon_vma, None)
    else:
        both = False
    if both:
        assert prev is not None and nxt is not None
        res = vma = prev
        vma_start = prev.vm_start
        remove, vma_end = nxt, nxt.vm_end  # case 1
        dup_anon_vma(prev, nxt)
        if curr is not None:  # case 6
            remove, remove2 = curr, nxt
            if nxt.anon_vma is None:
                dup_anon_vma(prev, curr)
    elif merge_prev:
        assert prev is not None
        res = vma = prev
        vma_start = prev.vm_start
        if curr is not None:
            dup_anon_vma(prev, curr)
            if end == curr.vm_end:  # case 7
                remove = curr
            else:  # case 5
                adjust, adj_start = curr, end - curr.vm_start
    else:
        assert nxt is not None
        res = nxt
        if prev is not None and addr < prev.vm_end:  # case 4
            vma, vma_start, vma_end = prev, prev.vm_start, addr
            adjust, adj_start = nxt, -(prev.vm_end - addr)
            dup_anon_vma(nxt, prev)
        else:  # case 3, and case 8 with curr
            vma, vma_start, vma_end = nxt, addr, nxt.vm_end
            if curr is not None:
                remove = curr
                dup_anon_vma(nxt, curr)
    _remove_merged(mm, remove, remove2)
    vma.vm_start, vma.vm_end = vma_start, vma_end
    if adjust is not None:
        adjust.vm_start += adj_start
    mm.vmas.sort(key=_start)
    return res


def vma_expand(cur: Current, mm: Mm, vma: Vma, start: int, end: int, nxt: Vma | None) -> None:
    """mm/mmap.c:vma_expand() (v6.6): grow `vma` to ``[start, end)``, absorbing `nxt` if it
    ends at `end`. Caller holds ``mmap_lock`` for write."""
    vma_assert_write_locked(cur, mm, "vma_expand")
    if nxt is not None and nxt is not vma and end == nxt.vm_end:
        dup_anon_vma(vma, nxt)
        _remove_merged(mm, nxt)
    vma.vm_start, vma.vm_end = start, end
    mm.vmas.sort(key=_start)


# ---------------------------------------------------------------------------------------------
# anon_vma


def _anon_vma_compatible(a: Vma, b: Vma) -> bool:
    return a.vm_end == b.vm_start and not ((a.vm_flags ^ b.vm_flags) & ~VM_ACCESS_FLAGS)


def _singular(v: Vma) -> bool:
    return v.anon_vma is not None and v.anon_vma_chain_len == 1


def find_mergeable_anon_vma(cur: Current, mm: Mm, vma: Vma) -> int | None:
    """mm/mmap.c:find_mergeable_anon_vma(cur, ): next first, then prev, singular chains only."""
    nxt = vma_next(cur, mm, vma) if vma in mm.vmas else None
    if nxt is not None and _anon_vma_compatible(vma, nxt) and _singular(nxt):
        return nxt.anon_vma
    prev = vma_prev(cur, mm, vma) if vma in mm.vmas else None
    if prev is not None and _anon_vma_compatible(prev, vma) and _singular(prev):
        return prev.anon_vma
    return None


def anon_vma_prepare(cur: Current, mm: Mm, vma: Vma) -> Gen[None]:
    """mm/rmap.c:__anon_vma_prepare() (v6.6): caller holds ``mmap_lock`` (read is enough)."""
    if vma.anon_vma is not None:  # anon_vma_prepare()'s inline fast path asserts nothing
        return
    mmap_assert_locked(cur, mm, "vma.anon_vma-under-vma-lock", "anon_vma_prepare")
    might_sleep(cur, "anon_vma_prepare")
    yield "anon_vma_prepare:anon_vma_chain_alloc"
    anon_vma = find_mergeable_anon_vma(cur, mm, vma)
    if anon_vma is None:
        anon_vma = cur.kernel.alloc_anon_vma()
    yield from spin_lock(cur, mm.page_table_lock)
    if vma.anon_vma is None:
        vma.anon_vma = anon_vma
        vma.anon_vma_chain_len = 1
    spin_unlock(cur, mm.page_table_lock)
