//! How the process's allocator treats the memory a model call frees.
//!
//! tract allocates every intermediate value of a call afresh and frees it when the call is done.
//! glibc's `malloc` serves a request above its mmap threshold (128 KiB, raised as large blocks
//! are freed, at most 32 MiB) with a fresh mapping and returns it to the system on `free`, so
//! each call on a large model touches new pages and pays a page fault per 4 KiB. On the
//! Shakespeare LSTM scoring 64 windows (72 MB of logits, a few such values per call), that was
//! over a third of the call's time. [`reuse_freed_memory`] keeps freed memory in the process
//! for the next call instead, as onnxruntime's arena does. A call's peak memory stays about the
//! same (that scoring run: 234–325 MB before, 328–352 MB after); it is not handed back between
//! calls.
//!
//! Loading a model fills fresh memory too, the file's bytes, the protobuf's copy of its weights
//! or tract's tensors read straight from the file: `map_spare`, `map_in` and `map_ahead` map
//! those pages in with one system call each, where a first write would take a page fault per
//! page.

use std::sync::atomic::{AtomicBool, Ordering};

/// Whether [`reuse_freed_memory`] took: freed memory stays in the process.
static REUSING: AtomicBool = AtomicBool::new(false);

/// Serves large allocations from the heap and keeps freed memory for reuse (glibc on Linux;
/// elsewhere it does nothing). Process-wide: `kiln` calls it at start; a program embedding
/// kiln-infer decides for itself. Returns whether the allocator took the settings.
pub fn reuse_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets allocator parameters; any value is accepted or refused.
        let took = unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, i32::MAX) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) == 1
        };
        REUSING.store(took, Ordering::Relaxed);
        took
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Maps in the pages of `buf`'s spare capacity in one system call, where a first write would
/// take a page fault per page (Linux 5.14 and later; elsewhere it does nothing). Filling 9 MB
/// of fresh memory, it saves about a millisecond.
pub(crate) fn map_spare(buf: &mut Vec<u8>) {
    #[cfg(target_os = "linux")]
    {
        let spare = buf.spare_capacity_mut();
        populate(spare.as_mut_ptr() as usize, spare.len());
    }
    #[cfg(not(target_os = "linux"))]
    let _ = buf;
}

/// Maps in the pages of `bytes`, as [`map_spare`] does a vector's spare capacity: for memory
/// about to be filled by one read.
pub(crate) fn map_in(bytes: &mut [u8]) {
    #[cfg(target_os = "linux")]
    populate(bytes.as_mut_ptr() as usize, bytes.len());
    #[cfg(not(target_os = "linux"))]
    let _ = bytes;
}

/// Maps in the whole pages within the `len` bytes at `start`, memory the caller holds mutably,
/// in one system call.
#[cfg(target_os = "linux")]
fn populate(start: usize, len: usize) {
    // SAFETY: sysconf only reads a system value.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(0);
    if let Some(pages) = whole_pages(start, len, page) {
        // SAFETY: the range lies within memory the caller owns; MADV_POPULATE_WRITE maps its
        // pages as a write would, without changing a byte. A kernel that lacks it refuses the
        // advice, and the pages fault in when written, as without it.
        unsafe {
            libc::madvise(pages.start as *mut libc::c_void, pages.len(), libc::MADV_POPULATE_WRITE);
        }
    }
}

/// The addresses of the whole pages (of `page` bytes) within the `len` bytes at `start`; `None`
/// when they hold none or the page size is unknown (0).
#[cfg(target_os = "linux")]
fn whole_pages(start: usize, len: usize, page: usize) -> Option<std::ops::Range<usize>> {
    if page == 0 {
        return None;
    }
    let first = start.next_multiple_of(page);
    let end = (start + len) / page * page;
    (end > first).then_some(first..end)
}

/// Makes the allocator's next `bytes` mapped in already, where freed memory is kept
/// ([`reuse_freed_memory`]): a block of that size is taken, its pages mapped in at once
/// ([`map_spare`]) and freed back. For a step about to fill that much fresh memory in pieces it
/// cannot map ahead itself (decoding a model's weights). Does nothing where freed memory is
/// handed back to the system.
pub(crate) fn map_ahead(bytes: usize) {
    if !REUSING.load(Ordering::Relaxed) {
        return;
    }
    let mut block = Vec::new();
    if block.try_reserve_exact(bytes).is_ok() {
        map_spare(&mut block);
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    /// Minor page faults of the calling thread so far.
    fn faults() -> i64 {
        // SAFETY: getrusage fills the struct it is given.
        unsafe {
            let mut usage: libc::rusage = std::mem::zeroed();
            assert_eq!(libc::getrusage(libc::RUSAGE_THREAD, &mut usage), 0);
            usage.ru_minflt
        }
    }

    /// A zeroed 48 MiB block (over glibc's largest automatic mmap threshold, 32 MiB), every
    /// page written.
    fn touch() {
        let mut block = vec![0u8; 48 << 20];
        for i in (0..block.len()).step_by(4096) {
            block[i] = 1;
        }
        std::hint::black_box(&block);
    }

    /// The tests here watch the allocator's free memory, which each of them changes.
    static ALLOCATOR: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn alone() -> std::sync::MutexGuard<'static, ()> {
        ALLOCATOR.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    const PAGE: usize = 4096;

    /// Page faults taken writing a byte to every page of `v`'s spare capacity.
    fn write_spare(v: &mut Vec<u8>) -> i64 {
        let before = faults();
        for byte in v.spare_capacity_mut().iter_mut().step_by(PAGE) {
            byte.write(1);
        }
        std::hint::black_box(&v);
        faults() - before
    }

    /// Hands the pages of `v`'s spare capacity back to the system: the next write to each faults.
    fn discard_spare(v: &mut Vec<u8>) {
        let spare = v.spare_capacity_mut();
        let pages = whole_pages(spare.as_mut_ptr() as usize, spare.len(), PAGE)
            .expect("a spare capacity of whole pages");
        // SAFETY: the range lies within memory `v` owns and holds nothing of its contents.
        assert_eq!(
            unsafe { libc::madvise(pages.start as *mut libc::c_void, pages.len(), libc::MADV_DONTNEED) },
            0
        );
    }

    #[test]
    fn spare_pages_mapped_in_take_no_fault_when_written() {
        let _alone = alone();
        let mut v: Vec<u8> = Vec::with_capacity(16 << 20);
        discard_spare(&mut v);
        let fresh = write_spare(&mut v);
        assert!(
            fresh > 3_000,
            "16 MiB of discarded pages took {fresh} faults: the check below would pass anyway"
        );
        discard_spare(&mut v);
        map_spare(&mut v);
        let mapped = write_spare(&mut v);
        assert!(mapped < 300, "16 MiB mapped in took {mapped} faults when written (fresh: {fresh})");
    }

    #[test]
    fn the_next_allocation_after_mapping_ahead_takes_no_fault_when_written() {
        let _alone = alone();
        assert!(reuse_freed_memory(), "glibc refused the settings");
        // A block whose pages are handed back, freed: the next such allocation gets it.
        let fresh_block = || {
            let mut v: Vec<u8> = Vec::with_capacity(16 << 20);
            discard_spare(&mut v);
        };
        fresh_block();
        let fresh = write_spare(&mut Vec::with_capacity(16 << 20));
        assert!(
            fresh > 3_000,
            "16 MiB just handed back took {fresh} faults: the check below would pass anyway"
        );
        fresh_block();
        map_ahead(16 << 20);
        let mapped = write_spare(&mut Vec::with_capacity(16 << 20));
        assert!(
            mapped < 300,
            "16 MiB allocated after mapping ahead took {mapped} faults when written (fresh: {fresh})"
        );
    }

    #[test]
    fn a_freed_large_block_is_reused_without_touching_new_pages() {
        let _alone = alone();
        assert!(reuse_freed_memory(), "glibc refused the settings");
        touch();
        let before = faults();
        touch();
        let new = faults() - before;
        // A fresh mapping would fault once per 4 KiB page: 12,288 times.
        assert!(new < 1_000, "the second block took {new} page faults: it was not reused");
    }
}
