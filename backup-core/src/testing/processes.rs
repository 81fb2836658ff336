//! What `/proc` shows of a process tree: the argv and environment of child
//! processes, which tests check for secrets (other users and processes can
//! read both).

use std::collections::BTreeSet;

/// One process as `/proc` shows it. `argv` and `environ` are
/// `NUL`-separated, as in `/proc/<pid>/cmdline` and `environ`; both are
/// empty when the process is gone or not readable.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessView {
    /// Process id.
    pub pid: u32,
    /// Parent process id.
    pub ppid: u32,
    /// Command name (`/proc/<pid>/stat`'s `comm`: the executable's name,
    /// at most 15 bytes, once it has exec'd).
    pub comm: String,
    /// Arguments, `NUL`-separated.
    pub argv: String,
    /// Environment, `NUL`-separated.
    pub environ: String,
}

impl ProcessView {
    /// The arguments joined by spaces, for messages.
    pub fn command_line(&self) -> String {
        self.argv.trim_end_matches('\0').replace('\0', " ")
    }

    /// The environment's variables (`NAME=value`), in order.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.environ.split('\0').filter(|v| !v.is_empty())
    }
}

/// `(pid, parent pid, comm)` of every process.
fn all_processes() -> Vec<(u32, u32, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`: comm may hold spaces and parens.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let ppid = stat[close + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok());
        if let Some(ppid) = ppid {
            out.push((pid, ppid, stat[open + 1..close].to_string()));
        }
    }
    out
}

/// Every descendant of process `root` (children, their children, ...;
/// not `root` itself), with its argv and environment read now.
pub fn process_tree(root: u32) -> Vec<ProcessView> {
    let all = all_processes();
    let mut tree = BTreeSet::from([root]);
    loop {
        let before = tree.len();
        for (pid, ppid, _) in &all {
            if tree.contains(ppid) {
                tree.insert(*pid);
            }
        }
        if tree.len() == before {
            break;
        }
    }
    all.into_iter()
        .filter(|(pid, _, _)| *pid != root && tree.contains(pid))
        .map(|(pid, ppid, comm)| {
            let read = |file: &str| {
                String::from_utf8_lossy(
                    &std::fs::read(format!("/proc/{pid}/{file}")).unwrap_or_default(),
                )
                .into_owned()
            };
            ProcessView {
                pid,
                ppid,
                comm,
                argv: read("cmdline"),
                environ: read("environ"),
            }
        })
        .collect()
}

/// The argv and environment (`NUL`-separated, as in `/proc`) of every
/// descendant of this process: what `ps` and `/proc/<pid>/environ` show
/// of them to other users and processes.
pub fn descendant_processes() -> Vec<(u32, String, String)> {
    process_tree(std::process::id())
        .into_iter()
        .map(|p| (p.pid, p.argv, p.environ))
        .collect()
}
