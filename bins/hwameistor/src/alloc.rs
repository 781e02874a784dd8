//! The server's memory allocator and the settings it runs with.
//!
//! A storage daemon is idle most of the time and busy in bursts (a hundred volumes created at
//! once). What matters for its resident memory is what stays resident after a burst, when
//! most of what the burst allocated has been freed again. glibc's malloc keeps that memory:
//! it gives back only the free top of its heap, so pages with one live object left between
//! freed ones stay resident (9–17 MiB more after a burst of 100 creates, and more the more
//! the burst's allocations interleaved). `malloc_trim` would release them, but calling it
//! needs unsafe code.
//!
//! With the `jemalloc` feature (the default) the global allocator is jemalloc, configured by
//! [`SETTING`] so that a background thread returns freed pages to the kernel about a second
//! after they were freed, whether or not the server allocates again. Without the feature the
//! server uses glibc's malloc with one arena (heaptrack, which intercepts glibc's malloc,
//! needs that build). docs/performance.md (Memory) has the figures of both.

#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The environment variable (name, value) the server re-executes itself with at start
/// (`exec_with_allocator_settings` in main.rs), unless it is set already.
///
/// jemalloc (built with the symbol prefix `_rjem_`, hence the variable's name) reads its
/// options from `_RJEM_MALLOC_CONF` when the process starts:
///
/// - `background_thread:true`, `max_background_threads:1`: one jemalloc thread purges freed
///   pages on a timer. Without it jemalloc purges only while the program allocates, so an
///   idle server would keep what its last burst freed.
/// - `narenas:1`: one arena instead of four per CPU. Each arena keeps its own partly used
///   pages; with the default, 2.7 MiB more stayed resident after a burst. Our threads mostly
///   wait for the kernel and host commands, so contention on one arena does not matter.
/// - `dirty_decay_ms:1000`: freed pages go back to the kernel within about a second (the
///   default is 10 s, so the server still held most of a burst 5 s after it).
/// - `muzzy_decay_ms:0`: give pages back with `MADV_DONTNEED` right away, not lazily with
///   `MADV_FREE`, whose pages stay counted as resident until the kernel is short of memory.
/// - `tcache_max:1024`, `lg_tcache_nslots_mul:-2`: each thread caches freed objects of at most
///   1 KiB (default 32 KiB), and a quarter as many of each size. A thread's cache is flushed
///   only as the thread allocates, so idle threads keep theirs: 1.5 MiB more with the
///   defaults.
#[cfg(feature = "jemalloc")]
pub const SETTING: (&str, &str) = (
    "_RJEM_MALLOC_CONF",
    "background_thread:true,max_background_threads:1,narenas:1,dirty_decay_ms:1000,\
     muzzy_decay_ms:0,tcache_max:1024,lg_tcache_nslots_mul:-2",
);

/// The environment variable (name, value) the server re-executes itself with at start,
/// unless it is set already: glibc's malloc with one arena.
///
/// glibc gives each thread that allocates its own arena (up to 8 per CPU), and memory freed
/// in an arena mostly stays resident: 12 MiB after a burst of 100 creates. glibc reads the
/// setting only from the environment at start-up (`mallopt` would need unsafe code).
#[cfg(not(feature = "jemalloc"))]
pub const SETTING: (&str, &str) = ("MALLOC_ARENA_MAX", "1");
