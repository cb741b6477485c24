//! Buffers that response frames are read into, kept for the next frames.
//!
//! A response (above all a fetch answer of up to `max.partition.fetch.bytes` per
//! partition) is handed out as one [`Bytes`], and the records decoded from it borrow it,
//! so its buffer lives until the application drops the last of them. Allocating a fresh
//! buffer per response looked free, but with glibc's malloc a freed buffer of that size
//! goes back to the kernel (heap trimming, or `munmap` above the mmap threshold), and the
//! next one is faulted in again page by page. Replaying 10 million 100-byte records took
//! 10,000–50,000 such faults, 20–30 ns of client CPU per record in the unlucky runs
//! (11 M instead of 15 M records/s). Here the buffer comes back to its pool when the last
//! `Bytes` borrowing it is dropped, still mapped, and the next response is read into it.
//!
//! The pool is small and bounded ([`POOLED_BUFFERS`], [`MAX_POOLED_CAPACITY`]): it keeps
//! what a connection's pipeline of answers recycles, not every buffer ever used.

use std::sync::{Arc, Mutex};

use bytes::Bytes;

/// Free buffers a pool keeps: a consumer holds one answer while the next is read, so a
/// few cover the cycle.
pub const POOLED_BUFFERS: usize = 4;

/// Larger buffers are freed rather than kept (a rare huge answer should not pin its
/// memory for the connection's lifetime).
pub const MAX_POOLED_CAPACITY: usize = 16 * 1024 * 1024;

/// A bounded set of free buffers; clones share it.
#[derive(Debug, Clone, Default)]
pub struct BufferPool {
    free: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl BufferPool {
    pub fn new() -> BufferPool {
        BufferPool::default()
    }

    /// An empty buffer with room for at least `capacity` bytes, reused when one is free.
    pub fn take(&self, capacity: usize) -> Vec<u8> {
        let reused = self.lock().pop();
        let mut buffer = reused.unwrap_or_default();
        buffer.clear();
        buffer.reserve(capacity);
        buffer
    }

    /// `buffer` as `Bytes`; its memory returns to this pool when the last `Bytes` sharing
    /// it (slices and clones included) is dropped.
    pub fn freeze(&self, buffer: Vec<u8>) -> Bytes {
        Bytes::from_owner(Pooled {
            buffer,
            pool: self.clone(),
        })
    }

    /// Free buffers held now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn give_back(&self, buffer: Vec<u8>) {
        if buffer.capacity() > MAX_POOLED_CAPACITY {
            return;
        }
        let mut free = self.lock();
        if free.len() < POOLED_BUFFERS {
            free.push(buffer);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        // The list is valid whatever a panicking holder was doing.
        self.free.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The owner behind a pooled `Bytes`.
struct Pooled {
    buffer: Vec<u8>,
    pool: BufferPool,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buffer
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.buffer));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_comes_back_only_when_its_last_slice_is_dropped() {
        let pool = BufferPool::new();
        let mut buffer = pool.take(1024);
        buffer.extend_from_slice(b"answer bytes");
        let address = buffer.as_ptr();
        let bytes = pool.freeze(buffer);
        let slice = bytes.slice(0..6);
        drop(bytes);
        assert!(pool.is_empty(), "a slice still borrows the buffer");
        assert_eq!(&slice[..], b"answer");
        drop(slice);
        assert_eq!(pool.len(), 1);

        let again = pool.take(512);
        assert_eq!(again.as_ptr(), address, "the same allocation is reused");
        assert!(again.is_empty() && again.capacity() >= 1024);
        assert!(pool.is_empty());
    }

    #[test]
    fn a_taken_buffer_has_the_room_asked_for() {
        let pool = BufferPool::new();
        drop(pool.freeze(pool.take(16)));
        let grown = pool.take(4096);
        assert!(grown.capacity() >= 4096);
    }

    #[test]
    fn the_pool_keeps_a_bounded_number_of_ordinary_buffers() {
        let pool = BufferPool::new();
        let answers: Vec<Bytes> = (0..POOLED_BUFFERS + 3)
            .map(|_| pool.freeze(pool.take(64)))
            .collect();
        drop(answers);
        assert_eq!(pool.len(), POOLED_BUFFERS);

        let pool = BufferPool::new();
        drop(pool.freeze(pool.take(MAX_POOLED_CAPACITY + 1)));
        assert!(pool.is_empty(), "an oversized buffer is freed, not kept");
    }
}
