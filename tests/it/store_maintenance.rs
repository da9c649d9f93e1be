//! `nusomi store migrate|checkpoint|forget|vacuum` on a real local store:
//! a store of the layout before the Delta catalog is refused, migrated in
//! place (nothing moved or deleted, idempotent) and then reads exactly as
//! before; checkpoints and vacuum keep every committed file.

use std::path::Path;

use crate::support::{files_below, nusomi, store_dir};

/// Every session row and the frame count per session, as `nusomi sql` prints them.
fn tables(store: &str) -> (bool, String) {
    nusomi(&[
        "sql",
        "--store",
        store,
        "--format",
        "json",
        "SELECT s.*, (SELECT count(*) FROM frames f WHERE f.session_id = s.session_id) AS frames \
         FROM sessions s ORDER BY session_id",
    ])
}

/// Data files of the store (not its logs), with their bytes.
fn data_files(store: &str) -> Vec<(String, Vec<u8>)> {
    files_below(Path::new(store))
        .into_iter()
        .filter(|p| !p.components().any(|c| c.as_os_str() == "_delta_log"))
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect()
}

fn log_entries(store: &str) -> usize {
    files_below(Path::new(store))
        .iter()
        .filter(|p| p.components().any(|c| c.as_os_str() == "_delta_log"))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .count()
}

#[tokio::test]
async fn a_store_of_the_old_layout_is_refused_then_migrated_in_place() {
    let (_tmp, store) = store_dir(61, 5).await;
    let (ok, before) = tables(&store);
    assert!(ok, "{before}");
    assert_eq!(before.matches("\"session_id\"").count(), 5, "{before}");
    // The layout before the Delta catalog: one one-row sessions file per
    // session (also its claim) beside its frames file, no logs.
    to_layout_before_delta(Path::new(&store));
    let files = data_files(&store);
    let (ok, text) = tables(&store);
    assert!(!ok && text.contains("nusomi store migrate"), "{text}");

    let (ok, text) = nusomi(&["store", "migrate", &store]);
    assert!(
        ok && text.contains(
            "5 sessions files: 5 committed now in 1 log entries, 0 were already committed"
        ),
        "{text}"
    );
    assert_eq!(tables(&store), (true, before.clone()));
    assert_eq!(
        data_files(&store),
        files,
        "migration moved or changed a data file"
    );
    // Again: nothing to do, no new log entry.
    let entries = log_entries(&store);
    let (ok, text) = nusomi(&["store", "migrate", &store]);
    assert!(
        ok && text.contains(
            "5 sessions files: 0 committed now in 0 log entries, 5 were already committed"
        ),
        "{text}"
    );
    assert_eq!(log_entries(&store), entries);

    // A checkpoint changes no row.
    let (ok, text) = nusomi(&["store", "checkpoint", &store]);
    assert!(ok && text.contains("checkpoint written"), "{text}");
    assert!(files_below(&Path::new(&store).join("sessions/_delta_log"))
        .iter()
        .any(|p| p.to_string_lossy().ends_with(".checkpoint.parquet")));
    assert_eq!(tables(&store), (true, before.clone()));

    // Optimize packs the one-row sessions files (copying each to its
    // claim first) and the frames files; the rows stay the same, and the
    // sessions stay claimed after a vacuum deletes the one-row files.
    let (ok, text) = nusomi(&["store", "optimize", &store]);
    assert!(ok, "{text}");
    assert_eq!(tables(&store), (true, before.clone()));
    let claims = files_below(&Path::new(&store).join("claims"));
    assert_eq!(claims.len(), 5, "{claims:?}");
    let (ok, text) = nusomi(&["store", "vacuum", &store, "--retain-hours", "0"]);
    let deleted = text
        .lines()
        .filter(|l| l.starts_with("deleted sessions/"))
        .count();
    assert!(ok && deleted == 5, "{text}");
    let sessions_files: Vec<_> = files_below(&Path::new(&store).join("sessions"))
        .into_iter()
        .filter(|p| !p.components().any(|c| c.as_os_str() == "_delta_log"))
        .collect();
    assert!(
        !sessions_files.is_empty()
            && sessions_files.iter().all(|p| p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("pack."))),
        "{sessions_files:?}"
    );
    assert_eq!(tables(&store), (true, before.clone()));
    let again = tempfile::TempDir::new().unwrap();
    let (_, bundle) = crate::support::write_session(again.path(), 61, 2);
    let (ok, text) = nusomi(&["seal", "--store", &store, bundle.to_str().unwrap()]);
    assert!(ok && text.contains("already sealed"), "{text}");
    assert_eq!(tables(&store), (true, before));
}

/// Turns a store sealed today into one of the layout before the Delta
/// catalog: each claim moves to `sessions/<workflow>/<yyyy-mm>/<id>.parquet`
/// (the month and workflow from the frames file its footer names), and the
/// logs and sessions files of many sessions go.
fn to_layout_before_delta(root: &Path) {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    for table in ["sessions", "frames"] {
        std::fs::remove_dir_all(root.join(table).join("_delta_log")).unwrap();
    }
    for f in files_below(&root.join("sessions")) {
        std::fs::remove_file(f).unwrap();
    }
    for claim in files_below(&root.join("claims")) {
        let reader = SerializedFileReader::new(std::fs::File::open(&claim).unwrap()).unwrap();
        let kv = reader
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .unwrap();
        let frames = kv
            .iter()
            .find(|kv| kv.key == "nusomi.frames_path")
            .and_then(|kv| kv.value.clone())
            .unwrap();
        // frames/<workflow>/<yyyy-mm>/<id>-<seal16>.parquet
        let parts: Vec<&str> = frames.split('/').collect();
        let id = claim.file_name().unwrap();
        let to = root.join("sessions").join(parts[1]).join(parts[2]).join(id);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::rename(&claim, &to).unwrap();
    }
    std::fs::remove_dir_all(root.join("claims")).unwrap();
}

#[tokio::test]
async fn vacuum_deletes_what_failed_seals_left_and_never_a_committed_file() {
    let (_tmp, store) = store_dir(62, 3).await;
    let (ok, before) = tables(&store);
    assert!(ok, "{before}");
    let committed = data_files(&store);
    // What a seal that failed before its claim leaves: a frames file no log
    // adds and no sessions file names.
    let (frames_file, bytes) = committed
        .iter()
        .find(|(p, _)| p.contains("/frames/"))
        .cloned()
        .unwrap();
    let orphan = frames_file.replace(".parquet", "0.parquet");
    std::fs::write(&orphan, &bytes).unwrap();
    // Just written, it may be a seal in flight: kept even with no retention.
    let (ok, text) = nusomi(&["store", "vacuum", &store, "--retain-hours", "0"]);
    assert!(ok && text.contains("deleted 0 files"), "{text}");
    assert!(Path::new(&orphan).exists());
    // A day and more old: what a failed seal left.
    let day_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(25 * 3600);
    std::fs::File::options()
        .write(true)
        .open(&orphan)
        .unwrap()
        .set_modified(day_ago)
        .unwrap();
    // Younger than the retention: kept.
    let (ok, text) = nusomi(&["store", "vacuum", &store]);
    assert!(ok && text.contains("deleted 0 files"), "{text}");
    let (ok, text) = nusomi(&[
        "store",
        "vacuum",
        &store,
        "--retain-hours",
        "0",
        "--dry-run",
    ]);
    assert!(ok && text.contains("would delete 1 files"), "{text}");
    assert!(Path::new(&orphan).exists());
    let (ok, text) = nusomi(&["store", "vacuum", &store, "--retain-hours", "0"]);
    assert!(ok && text.contains("deleted 1 files"), "{text}");
    assert!(!Path::new(&orphan).exists());
    assert_eq!(data_files(&store), committed);
    assert_eq!(tables(&store), (true, before));
}
