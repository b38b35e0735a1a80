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
//! +3 MB, wall time 10–15% less).
//!
//! glibc reads its tunables from the environment once, at start-up, so a
//! compile command re-executes its own binary (`/proc/self/exe`, the very
//! file that is running) with `GLIBC_TUNABLES` set, before doing any work.
//! That costs 1–2 ms, which a small tree does not win back (measured: 10
//! agents 2 ms slower, 100 agents 2 ms faster), so it is done only when the
//! source's `agents/` folder holds at least [`MIN_AGENT_FILES`] entries.
//! Nothing happens either when `GLIBC_TUNABLES` is already set (the user's
//! settings win, and the re-executed process sees it set), on C libraries
//! other than glibc, or when the exec fails: the command then runs as it is,
//! only slower. `serve`, `run` and `exec` keep glibc's defaults: huge pages
//! would raise a long-running server's resident memory.

use std::path::Path;

/// Fewest entries in `agents/` for which the re-execution pays off.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MIN_AGENT_FILES: usize = 50;

/// The environment variable glibc reads its tunables from.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TUNABLES: &str = "GLIBC_TUNABLES";

/// Huge pages for the heap, grown 16 MiB at a time (glibc ignores tunables
/// it does not know, so an older glibc runs with its defaults).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const SETTINGS: &str = "glibc.malloc.hugetlb=1:glibc.malloc.top_pad=16777216";

/// Replaces this process with the same binary and arguments, `GLIBC_TUNABLES`
/// set as described in the module docs, when the source directory `src` is
/// large; returns only when that is not done.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn reexec_with_huge_pages(src: &Path) {
    use std::os::unix::process::CommandExt;

    if std::env::var_os(TUNABLES).is_some() || !has_many_agents(src) {
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
pub fn reexec_with_huge_pages(_src: &Path) {}

/// Whether `src/agents` has at least [`MIN_AGENT_FILES`] entries (counted
/// up to that number only; a missing or unreadable folder has none).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn has_many_agents(src: &Path) -> bool {
    std::fs::read_dir(src.join("agents"))
        .map(|entries| entries.take(MIN_AGENT_FILES).count() >= MIN_AGENT_FILES)
        .unwrap_or(false)
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    #[test]
    fn only_large_agent_folders_count() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        assert!(!has_many_agents(dir.path()), "no agents/ folder");
        let agents = dir.path().join("agents");
        std::fs::create_dir(&agents)?;
        for n in 0..MIN_AGENT_FILES - 1 {
            std::fs::write(agents.join(format!("a{n}.md")), "")?;
        }
        assert!(!has_many_agents(dir.path()));
        std::fs::write(agents.join("last.md"), "")?;
        assert!(has_many_agents(dir.path()));
        Ok(())
    }
}
