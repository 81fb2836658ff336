//! Events, notifiers (webhook against a loopback HTTP server) and the
//! staleness monitor.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use backup_core::events::Notifier;
use backup_core::prelude::*;
use backup_core::testing::ScriptedSource;
use backup_core::{
    catalog::HealthOptions, clock::ManualClock, events::RetryPolicy, events::spawn_notifier,
    health::spawn_health_monitor, manifest::BackupKind, memory::InMemoryStore,
    webhook::WebhookFormat, webhook::WebhookNotifier,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A one-route HTTP server: answers each request with the next status in
/// `script` (then 200) and records the bodies.
async fn http_server(script: Vec<u16>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/hooks/T000/SECRET-TOKEN",
        listener.local_addr().unwrap()
    );
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = bodies.clone();
    tokio::spawn(async move {
        let mut script = script.into_iter();
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let (read, mut write) = socket.into_split();
            let mut reader = BufReader::new(read);
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0u8; length];
            reader.read_exact(&mut body).await.unwrap();
            seen.lock().unwrap().push(String::from_utf8(body).unwrap());
            let status = script.next().unwrap_or(200);
            let response =
                format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            write.write_all(response.as_bytes()).await.unwrap();
        }
    });
    (url, bodies)
}

fn failed_event() -> Event {
    Event::Failed {
        tenant: "acme".into(),
        source_id: "orders".into(),
        kind: BackupKind::Scheduled,
        error: "postgres database \"x\" does not exist".into(),
        duration_seconds: 1.5,
        at: chrono::Utc::now(),
    }
}

#[tokio::test]
async fn webhook_posts_json_and_retries_with_backoff() {
    let (url, bodies) = http_server(vec![500, 503]).await;
    let notifier = WebhookNotifier::new(&url, WebhookFormat::Json).unwrap();
    let shown = format!("{notifier:?}");
    assert!(!shown.contains("SECRET-TOKEN"), "{shown}");
    let bus = EventBus::default();
    let task = spawn_notifier(
        &bus,
        Arc::new(notifier),
        RetryPolicy {
            attempts: 4,
            initial_backoff: Duration::from_millis(10),
        },
    );
    bus.emit(Event::Started {
        tenant: "acme".into(),
        source_id: "orders".into(),
        kind: BackupKind::Manual,
        at: chrono::Utc::now(),
    }); // not wanted by default
    bus.emit(failed_event());
    for _ in 0..400 {
        if bodies.lock().unwrap().len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let bodies = bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 3, "two failures, then success: {bodies:?}");
    let v: serde_json::Value = serde_json::from_str(&bodies[2]).unwrap();
    assert_eq!(v["event"], "failed");
    assert_eq!(v["source_id"], "orders");
    assert!(v["summary"].as_str().unwrap().contains("FAILED"));
    drop(bus);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn slack_payload_and_unreachable_hooks_never_block() {
    let (url, bodies) = http_server(vec![]).await;
    let slack = WebhookNotifier::new(&url, WebhookFormat::Slack).unwrap();
    slack.notify(&failed_event()).await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&bodies.lock().unwrap()[0]).unwrap();
    assert!(v["text"].as_str().unwrap().contains("acme/orders"));
    assert_eq!(v.as_object().unwrap().len(), 1);

    // Nothing listens here: errors are returned, without the URL's token.
    let dead =
        WebhookNotifier::new("http://127.0.0.1:1/hook/SECRET-TOKEN", WebhookFormat::Json).unwrap();
    let err = dead.notify(&failed_event()).await.unwrap_err();
    assert!(!err.to_string().contains("SECRET-TOKEN"), "{err}");
    assert!(err.is_retryable());
    assert!(WebhookNotifier::new("ftp://x", WebhookFormat::Json).is_err());

    // A backup with a dead webhook attached still succeeds promptly.
    let bus = EventBus::default();
    let _task = spawn_notifier(&bus, Arc::new(dead), RetryPolicy::default());
    let engine = Engine::new(Arc::new(InMemoryStore::new())).with_events(bus);
    tokio::time::timeout(
        Duration::from_secs(5),
        engine.backup(&ScriptedSource::ok(1000), &BackupRequest::new("x")),
    )
    .await
    .expect("backup not blocked by the notifier")
    .unwrap();
}

#[tokio::test]
async fn staleness_is_announced_once_per_episode() {
    let store = Arc::new(InMemoryStore::new());
    let engine = Engine::new(store.clone() as Arc<dyn Store>);
    let mut rx = engine.events().subscribe();
    engine
        .backup(
            &ScriptedSource::ok(100),
            &BackupRequest::new("orders").tenant("acme"),
        )
        .await
        .unwrap();
    let clock = ManualClock::new(chrono::Utc::now());
    let stop = CancellationToken::new();
    let monitor = spawn_health_monitor(
        engine.clone(),
        HealthOptions::default(),
        Arc::new(clock.clone()),
        Duration::from_secs(3600),
        stop.clone(),
    );
    // Fresh: no alert. 25 hours later: one alert, not repeated hourly.
    tokio::time::sleep(Duration::from_millis(50)).await;
    for _ in 0..27 {
        clock.advance(Duration::from_secs(3600));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut stale = Vec::new();
    while let Ok(e) = rx.try_recv() {
        if let Event::Stale {
            source_id,
            hours_since_success,
            ..
        } = e
        {
            stale.push((source_id, hours_since_success.unwrap()));
        }
    }
    assert_eq!(stale.len(), 1, "{stale:?}");
    assert_eq!(stale[0].0, "orders");
    assert!(stale[0].1 >= 24.0);
    stop.cancel();
    monitor.await.unwrap();
}
