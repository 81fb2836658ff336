//! `backupctl show`: one backup's manifest, readable (or as JSON), with a
//! base backup's physical facts.

use backup_core::{Result, format::human_bytes};

use crate::commands::{Context, Outcome, print_json, resolve_id};

#[derive(Debug, clap::Args)]
pub(crate) struct ShowArgs {
    /// Backup id as `list` shows it (YYYYMMDDTHHMMSSZ-xxxxxxxx), `latest`, or a unique prefix of an id.
    pub(crate) id: String,
    /// Store: a directory or s3://bucket/prefix (must exist; only `backup` and `init` create one).
    #[arg(long)]
    pub(crate) store: String,
    /// Print the manifest as JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) async fn run(args: ShowArgs, ctx: &Context<'_>) -> Result<Outcome> {
    let ShowArgs { id, store, json } = args;
    let engine = ctx.engine(&store).await?;
    let id = resolve_id(&engine, &id).await?;
    let m = engine.catalog().get(id).await?;
    if json {
        print_json(m.as_ref());
        return Ok(Outcome::Ok);
    }
    println!("id:        {}", m.id);
    println!(
        "source:    {}/{} ({} {})",
        m.tenant, m.source_id, m.engine, m.database
    );
    println!("format:    {} ({}, {})", m.format, m.backup_type, m.kind);
    println!("started:   {}", m.started_at.to_rfc3339());
    println!("finished:  {}", m.finished_at.to_rfc3339());
    println!(
        "size:      {} stored, {} raw (sha256 {})",
        human_bytes(m.bytes_stored()),
        human_bytes(m.raw.size),
        m.raw.sha256
    );
    println!("artifact:  {}", m.artifact);
    if let Some(tool) = &m.versions.tool {
        println!("tool:      {tool}");
    }
    if let Some(server) = &m.versions.server {
        println!("server:    {server}");
    }
    if m.format == backup_postgres::BASEBACKUP_FORMAT {
        match backup_postgres::BaseBackupInfo::from_manifest(&m) {
            Ok(i) => {
                println!("system:    {}", i.system_identifier);
                println!("timeline:  {} (stop: {})", i.timeline, i.stop_timeline);
                println!(
                    "start LSN: {} (checkpoint {})",
                    i.start_lsn, i.checkpoint_lsn
                );
                println!("stop LSN:  {}", i.stop_lsn);
                println!(
                    "WAL:       {}..{} ({} segments)",
                    i.wal_first_segment,
                    i.wal_last_segment,
                    human_bytes(i.wal_segment_size)
                );
            }
            Err(e) => println!("physical facts unreadable: {e}"),
        }
    } else {
        for (key, value) in &m.details {
            println!("{key}: {value}");
        }
    }
    Ok(Outcome::Ok)
}
