//! Command line and `BENCH_*` environment of the benchmark binaries.

use std::path::PathBuf;

/// What a benchmark binary accepts on its command line.
///
/// `cargo bench` passes `--bench` to `harness = false` targets, and
/// whatever follows `--` on its own command line: `--json FILE` writes the
/// results there as well. `--isolated SPEC` is how a benchmark starts
/// itself for one variant ([`crate::run_isolated`]). Other arguments are
/// ignored with a warning.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BenchArgs {
    /// Where to write the results as JSON.
    pub json: Option<PathBuf>,
    /// Set in a child started by [`crate::run_isolated`]: the variant to
    /// run (`--isolated SPEC`).
    pub isolated: Option<String>,
}

impl BenchArgs {
    /// Parses this process's arguments.
    pub fn from_env() -> Self {
        BenchArgs::parse(std::env::args().skip(1))
    }

    /// Parses `args` (without the program name).
    ///
    /// ```
    /// use backup_benches::BenchArgs;
    /// let a = BenchArgs::parse(["--bench", "--json", "out.json"].map(String::from));
    /// assert_eq!(a.json.unwrap().to_str(), Some("out.json"));
    /// ```
    pub fn parse(args: impl IntoIterator<Item = String>) -> Self {
        let mut out = BenchArgs::default();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--bench" => {}
                "--isolated" => out.isolated = args.next(),
                "--json" => match args.next() {
                    Some(path) => out.json = Some(PathBuf::from(path)),
                    None => eprintln!("warning: --json needs a file name"),
                },
                other => match other.strip_prefix("--json=") {
                    Some(path) => out.json = Some(PathBuf::from(path)),
                    None => eprintln!("warning: ignoring argument {other:?}"),
                },
            }
        }
        out
    }
}

/// Parses a size: plain bytes or with a unit, `K`/`M`/`G` and `KiB`/`MiB`/
/// `GiB` all binary (`256M` is 256 × 2²⁰).
///
/// ```
/// use backup_benches::parse_bytes;
/// assert_eq!(parse_bytes("1GiB"), Some(1 << 30));
/// assert_eq!(parse_bytes("256M"), Some(256 << 20));
/// assert_eq!(parse_bytes("4096"), Some(4096));
/// assert_eq!(parse_bytes("lots"), None);
/// ```
pub fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: u64 = number.parse().ok()?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" | "kb" => 10,
        "m" | "mib" | "mb" => 20,
        "g" | "gib" | "gb" => 30,
        _ => return None,
    };
    number.checked_mul(1 << shift)
}

/// A size from environment variable `name` (see [`parse_bytes`]), or
/// `default` when unset.
///
/// # Panics
///
/// When the variable is set but not a size: a benchmark should not quietly
/// measure something else than asked.
pub fn env_bytes(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => parse_bytes(&v).unwrap_or_else(|| panic!("{name}={v:?} is not a size")),
        Err(_) => default,
    }
}

/// A number from environment variable `name`, or `default` when unset
/// (`_` separators allowed: `5_000_000`).
///
/// # Panics
///
/// When the variable is set but not a number.
pub fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .replace('_', "")
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// Whether the variant `name` should run: `BENCH_FILTER` unset, or one
/// of its comma-separated substrings occurs in `name`.
pub fn selected(name: &str) -> bool {
    match std::env::var("BENCH_FILTER") {
        Ok(filter) if !filter.trim().is_empty() => filter
            .split(',')
            .map(str::trim)
            .any(|f| !f.is_empty() && name.contains(f)),
        _ => true,
    }
}

/// The 1, 5 and 15 minute load averages from `/proc/loadavg`
/// (`"0.52 0.61 0.40"`), to judge how noisy a run was.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}
