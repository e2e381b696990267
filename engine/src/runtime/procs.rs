//! Processes and their groups as the kernel tells of them: start times and groups from
//! `/proc/PID/stat` (a pid with its start time names one process for good; a pid alone
//! may be reused), and signals to whole groups. What lets orch signal a group only while
//! it is still the attempt's.

use std::fs::File;
use std::io::Read;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// A process's start time in clock ticks since boot (`/proc/PID/stat`, field 22), or
/// `None` if it is gone.
pub fn start_ticks(pid: u32) -> Option<u64> {
    stat_fields(pid, |mut fields| fields.nth(19)?.parse().ok())
}

/// A process's group and start time (`/proc/PID/stat` fields 5 and 22), or `None` if
/// it is gone — or dead and not yet reaped (a zombie, which a slow init may keep for
/// seconds, runs nothing and holds no file).
pub fn group_and_start(pid: u32) -> Option<(i32, u64)> {
    stat_fields(pid, |mut fields| {
        if matches!(fields.next()?, "Z" | "X" | "x") {
            return None;
        }
        let pgrp = fields.nth(1)?.parse().ok()?;
        Some((pgrp, fields.nth(16)?.parse().ok()?))
    })
}

/// The processes of group `pgid` now, with their start times (a scan of `/proc`: only
/// for a group whose leader is gone while others of it live on, a rare case).
pub fn members_of(pgid: i32) -> Vec<(u32, u64)> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| match group_and_start(pid) {
            Some((group, ticks)) if group == pgid => Some((pid, ticks)),
            _ => None,
        })
        .collect()
}

/// The fields of `/proc/PID/stat` after the command name, from field 3 (state) on. The
/// name (field 2) may hold spaces and parentheses, so fields are counted after its
/// closing parenthesis.
fn stat_fields<T>(pid: u32, read: impl FnOnce(std::str::SplitWhitespace<'_>) -> Option<T>) -> Option<T> {
    // One read into a buffer (the line is a few hundred bytes): open, read, close.
    let mut buf = [0u8; 1024];
    let n = File::open(format!("/proc/{pid}/stat")).and_then(|mut f| f.read(&mut buf)).ok()?;
    let stat = std::str::from_utf8(&buf[..n]).ok()?;
    read(stat[stat.rfind(')')? + 1..].split_whitespace())
}

/// Whether any process of the group is still there (one orch may not signal counts).
pub fn group_alive(pgid: i32) -> bool {
    killpg(Pid::from_raw(pgid), None) != Err(nix::errno::Errno::ESRCH)
}

/// Sends `signal` to a whole process group; a group that is gone already is fine.
pub fn signal_group(pgid: i32, signal: Signal) {
    let _ = killpg(Pid::from_raw(pgid), signal);
}
