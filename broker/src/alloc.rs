//! A global allocator that keeps a hostile request from aborting the process.
//!
//! kafka-protocol 0.18 decodes an array by calling `Vec::with_capacity(n)` with the
//! element count read from the wire, before reading any element. A 20-byte request that
//! claims 2^31 topics asks for ~150 GB at once; the system allocator refuses, and Rust's
//! allocation-failure handler *aborts* the process (not a panic that `catch_unwind`
//! could stop). Upstream has open pull requests bounding the capacity by the remaining
//! bytes; until one is released, this allocator makes such requests harmless.
//!
//! Allocations of [`HUGE`] bytes or more are served by an anonymous `mmap` with
//! `MAP_NORESERVE`: the address space is reserved, no memory is committed until touched.
//! The decoder then fails on the first missing element and the mapping is released
//! untouched, so the request costs nothing and the connection is closed as malformed.
//! Everything smaller goes to the system allocator unchanged. Nothing in the broker
//! legitimately allocates 1 GiB at once (requests are capped by
//! `socket.request.max.bytes`, records are mapped, not allocated), so the only effect on
//! a real allocation of that size is that it is committed lazily, as Linux's default
//! overcommit does anyway.
//!
//! The binary installs it (`#[global_allocator]` in `main.rs`); tests that send such
//! requests install it in their own test binary.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;

/// Allocations at least this large are lazily mapped.
pub const HUGE: usize = 1 << 30;

const PAGE: usize = 4096;

/// See the module docs.
pub struct LazyHugeAlloc;

fn is_huge(layout: &Layout) -> bool {
    layout.size() >= HUGE && layout.align() <= PAGE
}

unsafe fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping has no preconditions; failure is MAP_FAILED.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        ptr::null_mut()
    } else {
        p.cast()
    }
}

// SAFETY: small layouts are forwarded to `System` unchanged. Huge layouts get a fresh
// page-aligned (so suitably aligned, as `is_huge` requires align <= PAGE), zero-filled
// mapping of at least `size` bytes, released with `munmap` of the same size; `Layout`
// passed to `dealloc`/`realloc` is the one used to allocate, so the size test routes a
// pointer back to the allocator that made it.
unsafe impl GlobalAlloc for LazyHugeAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            // SAFETY: see the impl comment.
            unsafe { map(layout.size()) }
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            // Anonymous mappings are zero-filled.
            // SAFETY: see the impl comment.
            unsafe { map(layout.size()) }
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_huge(&layout) {
            // SAFETY: `ptr` came from `map(layout.size())` (see the impl comment).
            unsafe {
                libc::munmap(ptr.cast(), layout.size());
            }
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` with `layout.align()` is a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if !is_huge(&layout) && !is_huge(&new_layout) {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // Crossing the threshold: move between the two allocators.
        // SAFETY: `new_layout` is valid (above); the copy stays within both blocks.
        unsafe {
            let new = self.alloc(new_layout);
            if !new.is_null() {
                ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_allocations_are_lazy_and_usable() {
        let a = LazyHugeAlloc;
        // SAFETY: valid layouts; every pointer is freed with its own layout.
        unsafe {
            let layout = Layout::from_size_align(200 << 30, 8).unwrap();
            let p = a.alloc(layout);
            assert!(!p.is_null(), "200 GiB of address space, nothing committed");
            *p = 7;
            *p.add((200 << 30) - 1) = 9;
            a.dealloc(p, layout);

            let small = Layout::from_size_align(64, 8).unwrap();
            let q = a.alloc(small);
            *q = 1;
            let grown = a.realloc(q, small, HUGE);
            assert_eq!(*grown, 1, "contents move across the threshold");
            let back = a.realloc(grown, Layout::from_size_align(HUGE, 8).unwrap(), 32);
            assert_eq!(*back, 1);
            a.dealloc(back, Layout::from_size_align(32, 8).unwrap());
        }
    }
}
