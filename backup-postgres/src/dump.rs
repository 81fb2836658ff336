//! [`PostgresSource`]: `pg_dump --format=custom` streamed from stdout.

use std::process::Stdio;

use async_trait::async_trait;
use backup_core::{
    DumpSource, Error, Result, source::DumpOptions, source::DumpStream, source::SourceInfo,
    source::Versions,
};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::process::Child;
use tokio::task::JoinHandle;
use tokio_util::io::ReaderStream;

use crate::conn::PgConnection;
use crate::tools::{PassFile, PgTools, Step, classify, drain_stderr, pg_command, preflight};

/// The format name recorded in manifests: pg_dump's custom format.
pub const FORMAT: &str = "pgdump";

/// Size of reads from pg_dump's stdout.
const READ_CHUNK: usize = 1024 * 1024;

/// Dumps one PostgreSQL database with `pg_dump --format=custom
/// --compress=0` (compression is the pipeline's job), streamed from the
/// tool's stdout.
///
/// Before dumping, a `psql` preflight checks that the server is reachable,
/// the credentials work and the database exists, and learns the server
/// version so a matching `pg_dump` is used ([`PgTools`]). The password
/// reaches the tools only through a `PGPASSFILE` in memory that only they
/// inherit; it is never on a command line, in a child's environment or on
/// disk.
/// The tool's stderr is drained concurrently and its exit status is checked
/// before the stream ends, so a dump that fails midway ends with an error
/// and is never committed.
#[derive(Debug, Clone)]
pub struct PostgresSource {
    conn: PgConnection,
    tools: PgTools,
}

impl PostgresSource {
    /// A source dumping `conn.database()`.
    pub fn new(conn: PgConnection) -> Self {
        PostgresSource {
            conn,
            tools: PgTools::auto(),
        }
    }

    /// Chooses where the tools come from.
    pub fn with_tools(mut self, tools: PgTools) -> Self {
        self.tools = tools;
        self
    }

    /// The connection parameters (password hidden in `Debug`).
    pub fn connection(&self) -> &PgConnection {
        &self.conn
    }
}

#[async_trait]
impl DumpSource for PostgresSource {
    fn info(&self) -> SourceInfo {
        SourceInfo {
            engine: "postgres".into(),
            database: self.conn.database().to_string(),
            format: FORMAT.into(),
            extension: "dump".into(),
            magic: Some(b"PGDMP".to_vec()),
        }
    }

    async fn dump(&self, opts: &DumpOptions) -> Result<DumpStream> {
        let server = preflight(&self.tools, &self.conn).await?;
        let pg_dump = self.tools.resolve("pg_dump", Some(server.major)).await?;
        let mut snapshot =
            crate::dump_fingerprint::start(&self.tools, &self.conn, opts, &server).await;
        let passfile = PassFile::create(&self.conn)?;
        let mut cmd = pg_command(&pg_dump.path, &self.conn, &passfile)?;
        cmd.args(["--format=custom", "--compress=0", "--no-password"]);
        if let Some((_, id)) = &snapshot {
            cmd.arg(format!("--snapshot={id}"));
        }
        for table in &opts.only {
            cmd.arg(format!("--table={table}"));
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = cmd
            .spawn()
            .map_err(|e| Error::io(format!("starting {}", pg_dump.path.display()), e))?;
        tracing::debug!(tool = %pg_dump.path.display(), database = %self.conn.database(), "pg_dump started");
        let stream = child_stream(child, "pg_dump", Step::Dump, &self.conn);
        let dump = DumpStream::new(
            stream,
            Versions {
                tool: Some(pg_dump.version),
                server: Some(server.version),
            },
        );
        Ok(match snapshot.take() {
            Some((session, _)) => crate::dump_fingerprint::attach(dump, session),
            None => dump,
        })
    }
}

/// The stdout of a running tool (`pg_dump`, `pg_basebackup`) as a dump
/// stream: it ends with an error, never quietly, when reading fails or
/// the tool exits unsuccessfully (its stderr, redacted and classified, in
/// the error). Dropping the stream kills the child (`kill_on_drop`).
pub(crate) fn child_stream(
    mut child: Child,
    tool: &'static str,
    step: Step,
    conn: &PgConnection,
) -> BoxStream<'static, Result<Bytes>> {
    let stdout = child.stdout.take().expect("stdout is piped");
    widen_pipe(&stdout);
    let stderr = drain_stderr(child.stderr.take().expect("stderr is piped"));
    let state = Running {
        reader: ReaderStream::with_capacity(stdout, READ_CHUNK),
        child,
        stderr: Some(stderr),
        conn: conn.clone(),
        tool,
        step,
    };
    futures::stream::unfold(Some(state), |state| async move {
        let mut state = state?;
        match state.reader.next().await {
            Some(Ok(bytes)) => Some((Ok(bytes), Some(state))),
            Some(Err(e)) => {
                let _ = state.child.start_kill();
                let err = Error::Dump {
                    engine: "postgres",
                    detail: format!("reading {} output: {e}", state.tool),
                };
                Some((Err(err), None))
            }
            None => state.finish().await.err().map(|e| (Err(e), None)),
        }
    })
    .boxed()
}

/// Asks for a pipe of [`READ_CHUNK`] bytes (Linux's default is 64 KiB), so
/// the tool writes ahead while the pipeline hashes and compresses, and each
/// read takes up to a whole chunk. Best effort: a system that refuses
/// (`fs.pipe-max-size`, per-user pipe limits) keeps the default pipe.
fn widen_pipe(stdout: &tokio::process::ChildStdout) {
    use nix::fcntl::{FcntlArg, fcntl};
    let size = i32::try_from(READ_CHUNK).expect("a pipe size fits in i32");
    if let Err(e) = fcntl(stdout, FcntlArg::F_SETPIPE_SZ(size)) {
        tracing::debug!(error = %e, "keeping the default pipe size");
    }
}

/// A running tool. Dropping it kills the child (`kill_on_drop`).
struct Running {
    reader: ReaderStream<tokio::process::ChildStdout>,
    child: Child,
    stderr: Option<JoinHandle<String>>,
    conn: PgConnection,
    tool: &'static str,
    step: Step,
}

impl Running {
    /// After stdout ended: the exit status decides whether the output is good.
    async fn finish(&mut self) -> Result<()> {
        let status = self
            .child
            .wait()
            .await
            .map_err(|e| Error::io(format!("waiting for {}", self.tool), e))?;
        let stderr = match self.stderr.take() {
            Some(task) => task.await.unwrap_or_default(),
            None => String::new(),
        };
        if status.success() {
            if !stderr.is_empty() {
                tracing::warn!(tool = self.tool, stderr = %crate::tools::redact(&stderr, &self.conn), "succeeded with messages");
            }
            return Ok(());
        }
        Err(classify(
            self.step,
            &stderr,
            &format!("{} {status}", self.tool),
            &self.conn,
        ))
    }
}
