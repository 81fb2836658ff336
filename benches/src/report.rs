//! The results table of a benchmark run.

use std::fmt::{self, Write as _};
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::human::{human_bytes, mb_per_s};

/// One row of results: a variant, what it read and wrote, how long it took
/// and how much memory it held.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// The variant, e.g. `ours zstd:3 w2` or a shell pipeline.
    pub name: String,
    /// Uncompressed bytes processed; throughput is computed from these.
    pub input: u64,
    /// Bytes produced (stored artifact, output file), if any.
    pub output: Option<u64>,
    /// Wall time (the fastest of the repetitions).
    pub wall: Duration,
    /// Peak RSS in bytes (the largest of the repetitions); what it covers is
    /// said in [`Measurement::note`].
    pub peak_rss: Option<u64>,
    /// CPU time (user + system) spent, where known.
    pub cpu: Option<Duration>,
    /// Free text: what the RSS covers, the slice used, a baseline.
    pub note: String,
}

impl Measurement {
    /// A row with only the essentials; fill the rest with the setters.
    pub fn new(name: impl Into<String>, input: u64, wall: Duration) -> Self {
        Measurement {
            name: name.into(),
            input,
            output: None,
            wall,
            peak_rss: None,
            cpu: None,
            note: String::new(),
        }
    }

    /// Sets the bytes produced.
    pub fn output(mut self, bytes: u64) -> Self {
        self.output = Some(bytes);
        self
    }

    /// Sets the peak RSS.
    pub fn peak_rss(mut self, bytes: u64) -> Self {
        self.peak_rss = Some(bytes);
        self
    }

    /// Sets the CPU time.
    pub fn cpu(mut self, cpu: Duration) -> Self {
        self.cpu = Some(cpu);
        self
    }

    /// Sets the note.
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }

    /// Throughput of the input in MB/s.
    pub fn mb_per_s(&self) -> f64 {
        mb_per_s(self.input, self.wall)
    }

    /// Input size divided by output size, if there is an output.
    pub fn ratio(&self) -> Option<f64> {
        self.output
            .filter(|&o| o > 0)
            .map(|o| self.input as f64 / o as f64)
    }

    /// One line for progress output while a benchmark runs.
    pub fn summary(&self) -> String {
        format!(
            "{}: {:.2} s, CPU {:.2} s, peak RSS {}{}",
            self.name,
            self.wall.as_secs_f64(),
            self.cpu.unwrap_or_default().as_secs_f64(),
            self.peak_rss.map(human_bytes).unwrap_or_else(|| "-".into()),
            self.output
                .map(|o| format!(", output {}", human_bytes(o)))
                .unwrap_or_default()
        )
    }

    /// Folds repetitions of one variant into one row: the fastest wall
    /// time (the least disturbed run on a shared machine, with its CPU
    /// time) and the largest peak RSS and output. `None` for no runs.
    pub fn best_of(runs: Vec<Measurement>) -> Option<Measurement> {
        let peak = runs.iter().filter_map(|m| m.peak_rss).max();
        let output = runs.iter().filter_map(|m| m.output).max();
        let mut best = runs.into_iter().min_by_key(|m| m.wall)?;
        best.peak_rss = peak;
        best.output = output;
        Some(best)
    }
}

/// A titled results table with metadata (machine, load, sizes) and free
/// text lines (ratios against targets), printed as text and written as
/// JSON.
#[derive(Debug, Clone, Default)]
pub struct Report {
    title: String,
    meta: Vec<(String, String)>,
    rows: Vec<Measurement>,
    lines: Vec<String>,
}

impl Report {
    /// An empty report.
    pub fn new(title: impl Into<String>) -> Self {
        Report {
            title: title.into(),
            ..Report::default()
        }
    }

    /// Adds a `key: value` line above the table.
    pub fn meta(&mut self, key: impl Into<String>, value: impl fmt::Display) {
        self.meta.push((key.into(), value.to_string()));
    }

    /// Adds a row.
    pub fn push(&mut self, row: Measurement) {
        self.rows.push(row);
    }

    /// Adds a free text line below the table.
    pub fn line(&mut self, text: impl Into<String>) {
        self.lines.push(text.into());
    }

    /// The rows so far.
    pub fn rows(&self) -> &[Measurement] {
        &self.rows
    }

    /// The row named `name`, if any.
    pub fn row(&self, name: &str) -> Option<&Measurement> {
        self.rows.iter().find(|r| r.name == name)
    }

    fn row_line(r: &Measurement, width: usize) -> String {
        format!(
            "{:<width$}  {:>10}  {:>10}  {:>6}  {:>8}  {:>6}  {:>8}  {:>10}  {}",
            r.name,
            human_bytes(r.input),
            r.output.map(human_bytes).unwrap_or_else(|| "-".into()),
            r.ratio()
                .map(|x| format!("{x:.2}x"))
                .unwrap_or_else(|| "-".into()),
            format!("{:.2} s", r.wall.as_secs_f64()),
            format!("{:.0}", r.mb_per_s()),
            r.cpu
                .map(|c| format!("{:.2} s", c.as_secs_f64()))
                .unwrap_or_else(|| "-".into()),
            r.peak_rss.map(human_bytes).unwrap_or_else(|| "-".into()),
            r.note
        )
    }

    /// Writes the report as JSON (sizes in bytes, times in seconds).
    pub fn write_json(&self, path: &Path) -> std::io::Result<()> {
        let rows: Vec<_> = self
            .rows
            .iter()
            .map(|r| {
                json!({
                    "name": r.name,
                    "input_bytes": r.input,
                    "output_bytes": r.output,
                    "ratio": r.ratio(),
                    "wall_seconds": r.wall.as_secs_f64(),
                    "mb_per_s": r.mb_per_s(),
                    "cpu_seconds": r.cpu.map(|c| c.as_secs_f64()),
                    "peak_rss_bytes": r.peak_rss,
                    "note": r.note,
                })
            })
            .collect();
        let meta: serde_json::Map<_, _> = self
            .meta
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        let doc = json!({
            "title": self.title,
            "meta": meta,
            "rows": rows,
            "lines": self.lines,
        });
        let text = serde_json::to_string_pretty(&doc).map_err(std::io::Error::other)?;
        std::fs::write(path, text + "\n")
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "== {} ==", self.title)?;
        for (k, v) in &self.meta {
            writeln!(f, "{k}: {v}")?;
        }
        let width = self
            .rows
            .iter()
            .map(|r| r.name.chars().count())
            .max()
            .unwrap_or(0)
            .max(7);
        let mut table = String::new();
        writeln!(
            table,
            "{:<width$}  {:>10}  {:>10}  {:>6}  {:>8}  {:>6}  {:>8}  {:>10}  notes",
            "variant", "input", "output", "ratio", "wall", "MB/s", "CPU", "peak RSS"
        )?;
        for r in &self.rows {
            writeln!(table, "{}", Self::row_line(r, width).trim_end())?;
        }
        writeln!(f)?;
        f.write_str(&table)?;
        if !self.lines.is_empty() {
            writeln!(f)?;
            for l in &self.lines {
                writeln!(f, "{l}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_of_keeps_fastest_wall_and_largest_rss() {
        let a = Measurement::new("x", 100, Duration::from_secs(3)).peak_rss(10);
        let b = Measurement::new("x", 100, Duration::from_secs(2)).peak_rss(5);
        let best = Measurement::best_of(vec![a, b]).unwrap();
        assert_eq!(
            (best.wall, best.peak_rss),
            (Duration::from_secs(2), Some(10))
        );
        assert!(Measurement::best_of(vec![]).is_none());
    }

    #[test]
    fn prints_and_writes_json() {
        let mut r = Report::new("t");
        r.meta("cores", 2);
        r.push(
            Measurement::new("ours", 1 << 20, Duration::from_millis(500))
                .output(1 << 19)
                .note("n"),
        );
        r.line("done");
        let text = r.to_string();
        assert!(text.contains("2.00x") && text.contains("done"), "{text}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        r.write_json(&path).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(v["rows"][0]["output_bytes"], 524288);
    }
}
