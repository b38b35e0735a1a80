//! Huge pages for the compile commands (`generate`, `validate`, `graph`).
//!
//! Compiling a large source tree allocates tens of megabytes in small pieces
//! that live until the process ends. With 4 KiB pages that is thousands of
//! page faults: for 1,000 agents about 6,600 of them, a fifth of the
//! command's CPU time on the VMs this was measured on (bench/generate.sh).
//! glibc can back its heap with transparent huge pages
//! (`glibc.malloc.hugetlb=1`, glibc 2.35 and later, effective when the
//! kernel's THP mode is `madvise` or `always`) and grow it 16 MiB at a time
//! (`glibc.malloc.top_pad`), which leaves a few hundred faults (peak memory
//! +3 MB, wall time about −10%).
//!
//! glibc reads its tunables from the environment once, at start-up, so a
//! compile command re-executes its own binary (`/proc/self/exe`, the very
//! file that is running) with `GLIBC_TUNABLES` set, before doing any work.
//! Nothing happens when `GLIBC_TUNABLES` is already set (the user's settings
//! win, and the re-executed process sees it set), on C libraries other than
//! glibc, or when the exec fails: the command then runs as it is, only
//! slower. `serve`, `run` and `exec` keep glibc's defaults: huge pages would
//! raise a long-running server's resident memory.

/// The environment variable glibc reads its tunables from.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TUNABLES: &str = "GLIBC_TUNABLES";

/// Huge pages for the heap, grown 16 MiB at a time (glibc ignores tunables
/// it does not know, so an older glibc runs with its defaults).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const SETTINGS: &str = "glibc.malloc.hugetlb=1:glibc.malloc.top_pad=16777216";

/// Replaces this process with the same binary and arguments, `GLIBC_TUNABLES`
/// set as described in the module docs; returns only when that is not done.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn reexec_with_huge_pages() {
    use std::os::unix::process::CommandExt;

    if std::env::var_os(TUNABLES).is_some() {
        return;
    }
    let mut args = std::env::args_os();
    let Some(arg0) = args.next() else {
        return;
    };
    // `exec` returns only when it failed; the command then runs without the tuning.
    let _failed = std::process::Command::new("/proc/self/exe")
        .arg0(arg0)
        .args(args)
        .env(TUNABLES, SETTINGS)
        .exec();
}

/// Other platforms: nothing to tune.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn reexec_with_huge_pages() {}
