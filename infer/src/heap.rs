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

/// Serves large allocations from the heap and keeps freed memory for reuse (glibc on Linux;
/// elsewhere it does nothing). Process-wide: `kiln` calls it at start; a program embedding
/// kiln-infer decides for itself. Returns whether the allocator took the settings.
pub fn reuse_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets allocator parameters; any value is accepted or refused.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, i32::MAX) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
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

    #[test]
    fn a_freed_large_block_is_reused_without_touching_new_pages() {
        assert!(reuse_freed_memory(), "glibc refused the settings");
        touch();
        let before = faults();
        touch();
        let new = faults() - before;
        // A fresh mapping would fault once per 4 KiB page: 12,288 times.
        assert!(new < 1_000, "the second block took {new} page faults: it was not reused");
    }
}
