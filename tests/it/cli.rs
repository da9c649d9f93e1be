//! The `nusomi` binary: exit codes, messages and output formats.

use std::process::Command;

use tempfile::TempDir;

use crate::support::write_session;

fn nusomi() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nusomi"))
}

#[test]
fn seal_reports_each_bundle_and_fails_if_any_is_refused() {
    let tmp = TempDir::new().unwrap();
    let store = tmp.path().join("store");
    let (draft, good) = write_session(tmp.path(), 21, 1);
    let bad = tmp.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("session.json"), "{").unwrap();
    let out = nusomi()
        .arg("seal")
        .arg("--store")
        .arg(&store)
        .arg(&good)
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains(&format!("sealed {}", draft.session_id())),
        "{stdout}"
    );
    assert!(
        stdout.contains("1 sealed, 0 already sealed, 1 refused"),
        "{stdout}"
    );
    assert!(
        stderr.contains("session.json") && stderr.contains("malformed JSON"),
        "{stderr}"
    );

    // Again, only the good one, via NUSOMI_STORE: a no-op that says so.
    let out = nusomi()
        .env("NUSOMI_STORE", &store)
        .arg("seal")
        .arg(&good)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("already sealed"));

    let out = nusomi()
        .args(["sql", "--format", "json", "--store"])
        .arg(&store)
        .arg("SELECT session_id, frame_count, tags FROM sessions")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["session_id"], draft.session_id());
    assert_eq!(rows[0]["frame_count"], draft.frames.len());
    assert_eq!(rows[0]["tags"], draft.session["tags"]);

    let out = nusomi()
        .args(["sql", "--format", "csv", "--store"])
        .arg(&store)
        .arg("SELECT session_id, workflow FROM sessions")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().next(), Some("session_id,workflow"));
    assert_eq!(text.lines().count(), 2);

    let out = nusomi()
        .args(["sql", "--store"])
        .arg(&store)
        .arg("SELECT nope FROM sessions")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
}

#[test]
fn serve_refuses_an_open_api_off_loopback_and_documents_its_env() {
    let tmp = TempDir::new().unwrap();
    let out = nusomi()
        .args(["serve", "--store"])
        .arg(tmp.path().join("store"))
        .args(["--listen", "0.0.0.0:0", "--data-dir"])
        .arg(tmp.path().join("data"))
        .env_remove("NUSOMI_API_TOKENS")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--listen") && stderr.contains("NUSOMI_API_TOKENS"),
        "{stderr}"
    );
    // --help names every flag's environment variable.
    let help = nusomi().args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for var in [
        "NUSOMI_STORE",
        "NUSOMI_LISTEN",
        "NUSOMI_DATA_DIR",
        "NUSOMI_API_TOKENS",
        "NUSOMI_WORKERS",
        "NUSOMI_WORKSPACE_ID",
        "NUSOMI_PUBLIC_URL",
        "NUSOMI_SIGNING_KEY",
        "NUSOMI_SIGNED_STORAGE",
    ] {
        assert!(help.contains(var), "--help lacks {var}");
    }
}

#[test]
fn serve_hardening_short_keys_hidden_tokens_and_a_private_key_file() {
    let tmp = TempDir::new().unwrap();
    // A signing key shorter than 32 bytes is refused at start.
    let out = nusomi()
        .args(["serve", "--store"])
        .arg(tmp.path().join("store"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--signing-key",
            "short-key",
            "--data-dir",
        ])
        .arg(tmp.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("at least 32 bytes"), "{stderr}");
    assert!(!stderr.contains("short-key"), "the key is echoed: {stderr}");
    // Token values from the environment are never shown by --help.
    let help = nusomi()
        .args(["serve", "--help"])
        .env("NUSOMI_API_TOKENS", "tok-visible-0123456789")
        .env("NUSOMI_SIGNING_KEY", "key-visible-0123456789-0123456789")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("NUSOMI_TOKENS_FILE") && help.contains("NUSOMI_WORKSPACES"));
    assert!(
        !help.contains("tok-visible") && !help.contains("key-visible"),
        "{help}"
    );
}

#[tokio::test]
async fn export_create_again_is_a_no_op_until_new_sessions_are_sealed() {
    use crate::support::{files, nusomi as run, spec_json, store_dir};
    let (tmp, store) = store_dir(41, 2).await;
    let out = tmp.path().join("out");
    let spec_file = tmp.path().join("spec.json");
    let mut spec = spec_json("parquet", serde_json::json!({}));
    spec.as_object_mut().unwrap().remove("as_of");
    spec["destination"] = serde_json::json!({"kind": "local", "path": out});
    std::fs::write(&spec_file, spec.to_string()).unwrap();
    let create = || {
        run(&[
            "export",
            "create",
            "--store",
            &store,
            spec_file.to_str().unwrap(),
        ])
    };
    let (ok, text) = create();
    assert!(ok && text.contains("completed"), "{text}");
    let before = files(&out);

    let (ok, text) = create();
    assert!(ok, "{text}");
    assert!(
        text.contains("already finished at this prefix") && text.contains("the same 2 sessions"),
        "{text}"
    );
    assert_eq!(files(&out), before, "nothing rewritten");

    let (_, bundle) = write_session(tmp.path(), 42, 0);
    let (ok, text) = run(&["seal", "--store", &store, bundle.to_str().unwrap()]);
    assert!(ok, "{text}");
    let (ok, text) = create();
    assert!(!ok, "{text}");
    let manifest: serde_json::Value = serde_json::from_slice(&before["manifest.json"]).unwrap();
    assert!(
        text.contains(manifest["as_of"].as_str().unwrap())
            && text.contains("2 sessions selected")
            && text.contains("(3)")
            && text.contains("new prefix"),
        "{text}"
    );
    assert_eq!(files(&out), before, "nothing touched");
}
