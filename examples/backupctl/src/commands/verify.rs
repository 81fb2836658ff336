//! `backupctl verify`: re-read a backup and check its size, SHA-256 and
//! MD5, and those of every backup it restores with (its chain of
//! parents).

use backup_core::Result;

use crate::commands::{Context, Outcome, print_json, resolve_id};
use crate::progress::Work;

#[derive(Debug, clap::Args)]
pub(crate) struct VerifyArgs {
    /// Backup id as `list` shows it (YYYYMMDDTHHMMSSZ-xxxxxxxx), `latest`, or a unique prefix of an id.
    pub(crate) id: String,
    /// Store: a directory or s3://bucket/prefix (must exist; only `backup` and `init` create one).
    #[arg(long)]
    pub(crate) store: String,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) async fn run(args: VerifyArgs, ctx: &Context<'_>) -> Result<Outcome> {
    let VerifyArgs { id, store, json } = args;
    let bar = ctx.progress("verify", Work::Read, json);
    let verified = match ctx.engine(&store).await {
        Ok(engine) => match resolve_id(&engine, &id).await {
            Ok(id) => engine.verify_chain(&id).await,
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    if verified.is_ok() {
        bar.finish();
    } else {
        drop(bar);
    }
    let chain = match verified {
        Ok(chain) => chain,
        Err(e) => {
            // Scripts reading --json get a result either way; the error
            // line still goes to stderr and the exit status is 1.
            if json {
                print_json(
                    &serde_json::json!({"id": id, "verified": false, "error": e.to_string()}),
                );
            }
            return Err(e);
        }
    };
    let Some(m) = chain.last() else {
        return Err(backup_core::Error::not_found(format!("backup {id}")));
    };
    let parents: Vec<&str> = chain[..chain.len() - 1]
        .iter()
        .map(|p| p.id.as_str())
        .collect();
    if json {
        print_json(
            &serde_json::json!({"id": m.id, "verified": true, "sha256": m.stored.sha256, "md5": m.stored.md5, "size": m.stored.size, "parents": parents}),
        );
    } else if !ctx.quiet {
        println!(
            "backup {} OK: {} bytes, sha256 {}, md5 {}",
            m.id,
            m.stored.size,
            m.stored.sha256,
            m.stored.md5.as_deref().unwrap_or("-")
        );
        for p in chain[..chain.len() - 1].iter().rev() {
            println!(
                "  parent {} OK: {} bytes, sha256 {}",
                p.id, p.stored.size, p.stored.sha256
            );
        }
    }
    Ok(Outcome::Ok)
}
