//! [`InlineVec`]: a fixed-capacity vector stored inline, for the per-lock and per-task lists
//! (readers, waiters, spinners, held locks) that never hold more entries than a run has
//! tasks. Keeping them out of the heap removes most allocations from the step loop.

/// Up to `N` `Copy` items inline, in insertion order. A push beyond `N` is dropped (a run has
/// at most 10 tasks and no list holds a task twice, so it cannot happen without a broken
/// model; the contract layer then reports the lost entry as an unbalanced release).
#[derive(Clone, Copy, Debug)]
pub struct InlineVec<T: Copy + Default, const N: usize> {
    len: usize,
    items: [T; N],
}

impl<T: Copy + Default, const N: usize> Default for InlineVec<T, N> {
    fn default() -> Self {
        Self {
            len: 0,
            items: [T::default(); N],
        }
    }
}

impl<T: Copy + Default, const N: usize> InlineVec<T, N> {
    pub fn as_slice(&self) -> &[T] {
        &self.items[..self.len]
    }

    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.as_slice().iter()
    }

    pub const fn len(&self) -> usize {
        self.len
    }

    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn push(&mut self, item: T) {
        if self.len < N {
            self.items[self.len] = item;
            self.len += 1;
        }
    }

    pub fn pop(&mut self) -> Option<T> {
        if self.len == 0 {
            return None;
        }
        self.len -= 1;
        Some(self.items[self.len])
    }

    pub fn first(&self) -> Option<&T> {
        self.as_slice().first()
    }

    /// Remove and return item `i`, shifting the rest down.
    pub fn remove(&mut self, i: usize) -> T {
        let item = self.items[i];
        // The lists are a few items long: shift them one by one rather than call memmove.
        for j in i + 1..self.len {
            self.items[j - 1] = self.items[j];
        }
        self.len -= 1;
        item
    }

    pub fn pop_front(&mut self) -> Option<T> {
        (!self.is_empty()).then(|| self.remove(0))
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        let mut j = 0;
        for i in 0..self.len {
            if keep(&self.items[i]) {
                self.items[j] = self.items[i];
                j += 1;
            }
        }
        self.len = j;
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Take every item out, leaving the vector empty.
    #[must_use]
    pub fn take(&mut self) -> Self {
        std::mem::take(self)
    }
}

impl<'a, T: Copy + Default, const N: usize> IntoIterator for &'a InlineVec<T, N> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<T: Copy + Default, const N: usize> IntoIterator for InlineVec<T, N> {
    type Item = T;
    type IntoIter = std::iter::Take<std::array::IntoIter<T, N>>;

    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter().take(self.len)
    }
}

/// A value stored in a byte or two: task ids (below [`crate::sched::MAX_TASKS`]) and rwsem
/// waiters.
pub trait Pack: Copy {
    type Packed: Copy + Default + std::fmt::Debug;
    fn pack(self) -> Self::Packed;
    fn unpack(p: Self::Packed) -> Self;
}

impl Pack for usize {
    type Packed = u8;
    fn pack(self) -> u8 {
        u8::try_from(self).unwrap_or(u8::MAX)
    }
    fn unpack(p: u8) -> usize {
        usize::from(p)
    }
}

impl Pack for (usize, bool) {
    type Packed = (u8, bool);
    fn pack(self) -> (u8, bool) {
        (self.0.pack(), self.1)
    }
    fn unpack(p: (u8, bool)) -> (usize, bool) {
        (usize::unpack(p.0), p.1)
    }
}

/// An [`InlineVec`] of task ids (or waiters) kept a byte each, read and written by value: the
/// lock and folio wait lists, which sit in every VMA, mm, page table and folio.
#[derive(Clone, Copy, Debug)]
pub struct PackedVec<T: Pack, const N: usize> {
    items: InlineVec<T::Packed, N>,
}

impl<T: Pack, const N: usize> Default for PackedVec<T, N> {
    fn default() -> Self {
        Self {
            items: InlineVec::default(),
        }
    }
}

impl<T: Pack, const N: usize> PackedVec<T, N> {
    pub fn iter(&self) -> impl Iterator<Item = T> + '_ {
        self.items.iter().map(|&p| T::unpack(p))
    }

    pub const fn len(&self) -> usize {
        self.items.len()
    }

    pub const fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn push(&mut self, item: T) {
        self.items.push(item.pack());
    }

    pub fn first(&self) -> Option<T> {
        self.items.first().map(|&p| T::unpack(p))
    }

    /// Remove and return item `i`, shifting the rest down.
    pub fn remove(&mut self, i: usize) -> T {
        T::unpack(self.items.remove(i))
    }

    pub fn pop_front(&mut self) -> Option<T> {
        self.items.pop_front().map(T::unpack)
    }

    pub fn retain(&mut self, mut keep: impl FnMut(T) -> bool) {
        self.items.retain(|&p| keep(T::unpack(p)));
    }

    /// Take every item out, leaving the vector empty.
    #[must_use]
    pub fn take(&mut self) -> Self {
        std::mem::take(self)
    }
}

impl<T: Pack, const N: usize> IntoIterator for PackedVec<T, N> {
    type Item = T;
    type IntoIter =
        std::iter::Map<std::iter::Take<std::array::IntoIter<T::Packed, N>>, fn(T::Packed) -> T>;

    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter().map(T::unpack)
    }
}

/// Task ids, a byte each.
pub type TaskList = PackedVec<usize, 16>;
