//! Processes through `/proc` (Linux): who is still in a process group, how
//! many bytes a process has moved, and SIGKILL for a whole group.
//!
//! A victim started with `process_group(0)` leads its own group, and the
//! tools it starts (`pg_dump`, `pg_restore`, `psql`) stay in it. Killing
//! only the victim orphans them; they run on until their pipe or their
//! work ends, so a test waits for the whole group before it looks at what
//! the kill left.

use std::process::Command;
use std::time::{Duration, Instant};

/// Live (not zombie) processes of process group `pgid`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    // "pid (comm) state ppid pgrp ...": comm may hold
                    // anything, so parse after its last ')'.
                    let rest = &stat[stat.rfind(')')? + 1..];
                    let mut fields = rest.split_whitespace();
                    let state = fields.next()?;
                    let _ppid = fields.next()?;
                    let pgrp: u32 = fields.next()?.parse().ok()?;
                    Some(pgrp == pgid && state != "Z" && state != "X")
                })
                .unwrap_or(false)
        })
        .collect()
}

/// Waits until no live process is left in group `pgid`; panics after
/// `limit` naming the survivors (a tool that hangs after its parent died
/// is a finding).
pub fn wait_group_gone(pgid: u32, limit: Duration) {
    let started = Instant::now();
    loop {
        let members = group_members(pgid);
        if members.is_empty() {
            return;
        }
        if started.elapsed() > limit {
            let names: Vec<String> = members
                .iter()
                .map(|pid| {
                    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                    let argv0 = cmd.split(|b| *b == 0).next().unwrap_or_default();
                    format!("{pid} {}", String::from_utf8_lossy(argv0))
                })
                .collect();
            panic!(
                "processes of the killed victim's group {pgid} still run after {limit:?}: {names:?}"
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sends SIGKILL to every process of group `pgid`.
pub fn kill_group(pgid: u32) {
    // `kill` from util-linux/procps takes a negative id for a group.
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .status();
}

/// Bytes a process has read and written through system calls (`rchar`,
/// `wchar` of `/proc/<pid>/io`: files, pipes and sockets alike).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoCounters {
    /// Bytes read.
    pub read: u64,
    /// Bytes written.
    pub written: u64,
}

/// The I/O counters of `pid`, if it still exists.
pub fn io_counters(pid: u32) -> Option<IoCounters> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    let mut counters = IoCounters::default();
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("rchar: ") {
            counters.read = v.trim().parse().ok()?;
        } else if let Some(v) = line.strip_prefix("wchar: ") {
            counters.written = v.trim().parse().ok()?;
        }
    }
    Some(counters)
}

/// Connections to a local server on one of `ports` that the other end has
/// closed and the server has not yet (`CLOSE_WAIT` in `/proc/net/tcp` and
/// `tcp6`): requests of a killed client the server may still be carrying
/// out (a MongoDB insert, an S3 PUT whose body had arrived).
pub fn close_wait_count(ports: &[u16]) -> usize {
    const CLOSE_WAIT: &str = "08";
    let mut count = 0;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            // "sl local_address rem_address st ...", addresses "HEX:PORT".
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state)) = (fields.get(1), fields.get(3)) else {
                continue;
            };
            let port = local
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if *state == CLOSE_WAIT && port.is_some_and(|p| ports.contains(&p)) {
                count += 1;
            }
        }
    }
    count
}

/// Waits until the servers on `ports` have closed every connection whose
/// client is gone ([`close_wait_count`] is 0): after that, nothing a
/// killed client sent can still land. Panics after `limit`.
pub fn wait_servers_done(ports: &[u16], limit: Duration) {
    let started = Instant::now();
    loop {
        let left = close_wait_count(ports);
        if left == 0 {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "servers on ports {ports:?} still hold {left} connections of gone clients after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
