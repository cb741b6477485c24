//! The produce path's record check is on the hot path: it must not allocate per record,
//! nor copy an uncompressed batch. A counting allocator (this test binary's only global
//! allocator, counting per thread) checks that validating a batch of 1,000 records
//! allocates no more than validating one of 10, and nothing at all except gzip's inflate
//! state.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use sluice_storage::batch::{
    validate_produced_batch_with, BatchBuilder, Compression, RecordChecks,
};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; the counter is a const-initialized
// thread-local Cell, whose access never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn allocations(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

fn batch(codec: Compression, records: usize) -> Vec<u8> {
    let mut builder = BatchBuilder::new(codec);
    for i in 0..records {
        let value = format!("value {i} {}", "x".repeat(90));
        builder.push(
            1_700_000_000_000 + i as i64,
            Some(b"key"),
            Some(value.as_bytes()),
            &[("h", Some(b"v"))],
        );
    }
    builder.build().unwrap().to_vec()
}

#[test]
fn record_check_allocations_do_not_grow_with_the_records() {
    let checks = RecordChecks::default();
    for codec in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let small = batch(codec, 10);
        let big = batch(codec, 1000);
        // The first check on a thread sizes its reused buffer (and zstd context).
        validate_produced_batch_with(&big, &checks).unwrap();
        let small_allocs = allocations(|| {
            validate_produced_batch_with(&small, &checks).unwrap();
        });
        let big_allocs = allocations(|| {
            validate_produced_batch_with(&big, &checks).unwrap();
        });
        assert_eq!(big_allocs, small_allocs, "{codec:?}");
        if codec == Compression::Gzip {
            // flate2's inflate state: a fixed few allocations per batch, never per record.
            assert!(big_allocs <= 4, "{codec:?}: {big_allocs}");
        } else {
            assert_eq!(big_allocs, 0, "{codec:?}");
        }
    }
}
