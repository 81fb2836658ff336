//! Quickstart: the whole job in one command on a fresh machine.
//!
//! ```text
//! cargo run --release --example quickstart
//! ```
//!
//! Starts a throwaway PostgreSQL (or uses `BACKUP_TEST_PG_URL`), creates and
//! fills a database, backs it up into `./backups` (zstd, SHA-256 + MD5),
//! lists the store, verifies the backup, restores it into a new database and
//! checks that every table's row count and content digest match.

use backup_core::{BackupRequest, Engine, Filter, RestoreOptions, format::human_bytes};
use backup_examples::{backup_table, open_store_spec};
use backup_postgres::{PostgresSource, PostgresTarget, TestServer};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store_dir = std::env::var("QUICKSTART_STORE").unwrap_or_else(|_| "./backups".into());
    println!("1. starting a throwaway PostgreSQL server...");
    let server = tokio::task::spawn_blocking(TestServer::from_env_or_throwaway).await??;

    println!("2. creating and filling a database...");
    let db = server.create_database("quickstart_shop").await?;
    server
        .psql(
            &db,
            "CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, email text UNIQUE);
             INSERT INTO customers SELECT i, 'customer ' || i, 'c' || i || '@example.com'
               FROM generate_series(1, 20000) i;
             CREATE TABLE orders (id bigint PRIMARY KEY, customer_id int REFERENCES customers,
                                  placed_at timestamptz NOT NULL, total numeric(10,2), note text);
             INSERT INTO orders SELECT i, 1 + i % 20000, now() - i * interval '1 minute',
                                       (i % 997) / 7.0, md5(i::text)
               FROM generate_series(1, 200000) i;
             CREATE INDEX orders_by_customer ON orders (customer_id);",
        )
        .await?;

    println!("3. backing up into {store_dir} ...");
    let engine = Engine::new(open_store_spec(&store_dir)?);
    let source = PostgresSource::new(server.connection(&db));
    let manifest = engine
        .backup(
            &source,
            &BackupRequest::new("shop").created_by("quickstart"),
        )
        .await?;
    println!(
        "   committed {}: {} dump -> {} stored ({}), sha256 {}",
        manifest.id,
        human_bytes(manifest.raw.size),
        human_bytes(manifest.stored.size),
        manifest.compression.algorithm,
        &manifest.stored.sha256[..16],
    );

    println!("4. listing the store:");
    let listed = engine.catalog().list(&Filter::all().source("shop")).await?;
    print!("{}", backup_table(&listed[..listed.len().min(5)]));

    println!("5. verifying the artifact (size, SHA-256, MD5, decompressed digest)...");
    engine.verify(&manifest.id).await?;
    println!("   OK");

    let restored = format!("{db}_restored");
    println!("6. restoring into a new database {restored} ...");
    let target = PostgresTarget::new(server.connection("postgres"));
    engine
        .restore(
            &manifest.id,
            &target,
            &RestoreOptions::into_database(&restored).create(true),
        )
        .await?;

    println!("7. comparing the databases:");
    let before = server.fingerprint(&db).await?;
    let after = server.fingerprint(&restored).await?;
    for (table, rows, digest) in &before {
        let same = after
            .iter()
            .any(|t| &t.0 == table && t.1 == *rows && &t.2 == digest);
        println!(
            "   {table:<10} {rows:>7} rows  md5 {digest}  {}",
            if same { "match" } else { "MISMATCH" }
        );
    }
    server.drop_database(&db).await?;
    server.drop_database(&restored).await?;
    if before != after {
        return Err("restored data differs from the original".into());
    }
    println!("row counts and content checksums match: backup and restore verified.");
    Ok(())
}
