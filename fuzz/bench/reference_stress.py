"""Stress the reference engine: ``python -m fuzz.bench.reference_stress [--cases N]``.

Runs N random cases from `fuzz.gen.random_case` (seeds ``--seed``, ``--seed + 1``, ...)
through ``reference.run`` and applies every oracle the engine and the spec provide:

* the engine's own contract layer (``RunRecord.violations``: lockdep, KASAN, exact refcounts
  and mapcounts, swap counts, locks free at quiescence);
* liveness: the run status must be ``ok`` (no deadlock, no livelock);
* outcome linearizability of every page against `fuzz.spec` (`fuzz.linearize.check_record`),
  with the kernel effects the spec cannot express made explicit (`with_implicit_effects`);
* record sanity: every op of the case has a record, completed ops have a result, snapshots
  exist exactly under the serial strategy.

Prints the failures (seed, oracle, first message and the command that replays it) and the
throughput: cases per second and scheduler steps per second of the engine alone, and of the
whole loop with the checker. Exit status 1 if anything failed. This is a benchmark script, not
a test: it asserts no timing.
"""

from __future__ import annotations

import argparse
import errno
import sys
import time
from collections import Counter
from dataclasses import replace

import reference
from fuzz.case import MAP_GROWSDOWN, Case, Op, OpKind, Strategy
from fuzz.gen import random_case
from fuzz.linearize import FAIL, UNDECIDED, LinResult, check_record
from fuzz.record import (
    RES_KILLED,
    RES_NOT_RUN,
    RES_SIGSEGV,
    STATUS_OK,
    OpRecord,
    RunRecord,
)

VM_UFFD_MISSING = 8  # reference.objects


def with_implicit_effects(record: RunRecord) -> RunRecord:
    """`record` plus implicit operations for two kernel effects `fuzz.spec` cannot express
    (both are spec gaps, reported to the spec's owner; the engine is right in both):

    * **Stack growth.** A fault below a VM_GROWSDOWN VMA maps the pages between the faulting
      page and the VMA (``expand_downwards``) with no ``mmap`` op. Each expansion the engine
      made (``extra["stack_expansions"]``) at step s becomes an ``mmap`` of the new pages with
      the VMA's protection at step s and, if the VMA is registered with userfaultfd, a
      ``uffd_register`` of them just after it.
    * **A fault populates the page before the access happens.** ``do_user_addr_fault``
      populates the page (zero page, new folio, swap-in, COW copy of the old data) and returns;
      the access is re-executed later, after other operations may have run: the page may have
      been registered with userfaultfd meanwhile (a later write then finds it populated), or
      zapped again (the access faults again, maybe into userfaultfd), or made inaccessible by
      ``mprotect`` (SIGSEGV), or the task may be killed before the retry; and one access may
      fault (and populate) several times. For every time the engine's faults filled a none
      PTE for an access (``extra["fault_populates"]``), the access gets a *weak* read of its
      page over its interval (a weak read may populate the page, or not), besides the spec's
      own fault sub-op.

    * **munmap is two events per page.** ``do_vmi_align_munmap`` removes the VMAs from the tree
      under the write lock, downgrades it, and only then zaps the PTEs: in between, operations
      that look the page up in the VMA tree already see it unmapped (a fault's ``find_vma``,
      ``move_pages``, ``UFFDIO_COPY``, madvise, ...) while a user access through the still
      present PTE reads or writes the old page. An operation that reported "unmapped" for a
      page while a munmap of that page (successful, killed or pending) was in progress is
      therefore made weak.

    Steps are doubled so that an expansion's two implicit ops are ordered and every op keeps
    its real-time relation to every other.
    """
    growth = record.extra.get("stack_expansions", ())
    ops: list[OpRecord] = [
        replace(
            o,
            invoke=2 * o.invoke if o.invoke >= 0 else o.invoke,
            response=2 * o.response if o.response >= 0 else o.response,
        )
        for o in record.ops
    ]
    munmaps = [
        o
        for o in ops
        if o.op.kind is OpKind.MUNMAP
        and o.invoke >= 0
        and (o.result in (0, RES_KILLED) or o.response < 0)
    ]
    ops = [replace(o, result=RES_KILLED) if _sees_munmap_window(o, munmaps) else o for o in ops]
    extra: list[OpRecord] = []
    populates = dict(record.extra.get("fault_populates", ()))
    for o in ops:
        if o.op.kind in (OpKind.READ, OpKind.WRITE):
            probe = Op(OpKind.READ, o.op.mm, o.op.page)
            for _ in range(populates.get(o.index, 0)):
                extra.append(OpRecord(0, "fault", o.task, probe, o.invoke, o.response, RES_KILLED))
    for step, mm, first, old_start, flags in growth:
        prot = (flags & 3) | MAP_GROWSDOWN
        mmap = Op(OpKind.MMAP, mm, first, old_start - first, prot)
        extra.append(OpRecord(0, "stack", -1, mmap, 2 * step, 2 * step, first))
        if flags & VM_UFFD_MISSING:
            reg = Op(OpKind.UFFD_REGISTER, mm, first, old_start - first)
            extra.append(OpRecord(0, "stack", -1, reg, 2 * step + 1, 2 * step + 1, 0))
    n = len(ops)
    ops += [replace(o, index=n + i) for i, o in enumerate(extra)]
    return replace(record, ops=tuple(ops))


_UNMAPPED_RESULTS = {
    OpKind.READ: (RES_SIGSEGV,),
    OpKind.WRITE: (RES_SIGSEGV,),
    OpKind.MIGRATE: (-errno.EFAULT,),
    OpKind.TO_DEVICE: (-errno.EFAULT,),
    OpKind.UFFD_COPY: (-errno.ENOENT,),
    OpKind.MADVISE_DONTNEED: (-errno.ENOMEM,),
    OpKind.MADVISE_PAGEOUT: (-errno.ENOMEM,),
    OpKind.MPROTECT: (-errno.ENOMEM,),
    OpKind.UFFD_REGISTER: (-errno.EINVAL,),
    OpKind.UFFD_UNREGISTER: (-errno.EINVAL,),
}


def _sees_munmap_window(o: OpRecord, munmaps: list[OpRecord]) -> bool:
    """`o` reported "unmapped" while a munmap of one of its pages was in progress."""
    if o.result not in _UNMAPPED_RESULTS.get(o.op.kind, ()) or o.invoke < 0:
        return False
    end = o.response if o.response >= 0 else 1 << 62
    for m in munmaps:
        if m is o or m.op.mm != o.op.mm or not set(m.op.pages()) & set(o.op.pages()):
            continue
        if not (end < m.invoke or m.response < o.invoke):
            return True
    return False


def linearizable(case: Case, record: RunRecord, explain: bool = False) -> LinResult:
    """`fuzz.linearize.check_record` on `record` with its implicit effects made explicit."""
    return check_record(case, with_implicit_effects(record), explain=explain)


def record_problems(case: Case, rec: RunRecord) -> list[str]:
    """Shape checks on a record (independent of the kernel logic)."""
    out = []
    n = case.op_count()
    if [o.index for o in rec.ops[:n]] != list(range(n)):
        out.append("op records do not cover the case in order")
    for o in rec.ops:
        if o.response >= 0 and (o.invoke < 0 or o.response < o.invoke):
            out.append(f"op {o.index}: response {o.response} before invoke {o.invoke}")
        if o.invoke < 0 and o.result != RES_NOT_RUN:
            out.append(f"op {o.index}: never invoked but result {o.result}")
    serial = case.schedule.strategy is Strategy.SERIAL and any(o.invoke >= 0 for o in rec.ops)
    if rec.status == STATUS_OK and serial != bool(rec.snapshots):
        out.append(f"snapshots: {len(rec.snapshots)} under strategy {case.schedule.strategy.name}")
    return out


def check_one(seed: int, case: Case, rec: RunRecord) -> list[tuple[str, str]]:
    """(oracle, message) for everything wrong with one run."""
    problems = [("contract", f"{v.rule} in {v.function}: {v.message}") for v in rec.violations]
    if rec.status != STATUS_OK:
        problems.append(("liveness", f"status {rec.status}: {rec.wait_for}"))
    problems += [("record", p) for p in record_problems(case, rec)]
    lin = linearizable(case, rec)
    if lin.status == FAIL:
        problems.append(("linearizability", f"page {lin.page} is not linearizable"))
    elif lin.status == UNDECIDED:
        problems.append((UNDECIDED, f"page {lin.page}: the search budget was spent"))
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fuzz.bench.reference_stress")
    ap.add_argument("--cases", type=int, default=10_000, help="number of cases (default 10000)")
    ap.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    ap.add_argument("--threads", type=int, nargs=2, default=(2, 4), metavar=("MIN", "MAX"))
    ap.add_argument("--ops", type=int, nargs=2, default=(2, 8), metavar=("MIN", "MAX"))
    ap.add_argument("--serial-fraction", type=float, default=0.2)
    args = ap.parse_args(argv)

    statuses: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    undecided = 0
    shown = 0
    steps = engine_time = 0.0
    ops = 0
    start = time.perf_counter()
    for seed in range(args.seed, args.seed + args.cases):
        case = random_case(
            seed,
            threads=tuple(args.threads),
            ops_per_thread=tuple(args.ops),
            serial_fraction=args.serial_fraction,
        )
        t0 = time.perf_counter()
        rec = reference.run(case)
        engine_time += time.perf_counter() - t0
        steps += rec.steps
        ops += len(rec.ops)
        statuses[rec.status] += 1
        for oracle, msg in check_one(seed, case, rec):
            if oracle == UNDECIDED:
                undecided += 1
                continue
            failures[oracle] += 1
            if shown < 20:
                shown += 1
                print(f"FAIL seed {seed} [{oracle}] {msg}")
                gen_args = (
                    f"{seed}, threads={tuple(args.threads)}, ops_per_thread={tuple(args.ops)}, "
                    f"serial_fraction={args.serial_fraction}"
                )
                print(
                    f'  replay: python -c "import reference, fuzz.gen as g; '
                    f'print(reference.run(g.random_case({gen_args}), trace=True))"'
                )
    total = time.perf_counter() - start
    n = args.cases
    print(
        f"cases: {n}  statuses: {dict(statuses)}  failures: {dict(failures) or 'none'}  "
        f"linearizability undecided (search budget): {undecided}"
    )
    print(
        f"engine: {n / engine_time:,.0f} cases/s, {steps / engine_time:,.0f} steps/s, "
        f"{steps / n:.1f} steps/case, {ops / n:.1f} ops/case"
    )
    print(f"with all oracles: {n / total:,.0f} cases/s ({total:.1f} s in all)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
