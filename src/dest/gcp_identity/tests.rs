//! Unit tests of the Google identity flows.

use super::*;

#[test]
fn external_account_files_parse_and_unsupported_sources_say_so() {
    let v = json!({"type": "external_account", "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/q",
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt", "token_url": "https://sts.googleapis.com/v1/token",
        "credential_source": {"file": "/var/run/token", "format": {"type": "json", "subject_token_field_name": "id_token"}}});
    let a = ExternalAccount::parse(&v, "f.json").unwrap();
    assert_eq!(a.json_field.as_deref(), Some("id_token"));
    assert!(matches!(a.source, SubjectSource::File(ref f) if f == "/var/run/token"));
    let mut exe = v.clone();
    exe["credential_source"] = json!({"executable": {"command": "x"}});
    assert!(ExternalAccount::parse(&exe, "f.json")
        .unwrap_err()
        .contains("not supported yet"));
    let mut no_aud = v;
    no_aud.as_object_mut().unwrap().remove("audience");
    assert!(ExternalAccount::parse(&no_aud, "f.json")
        .unwrap_err()
        .contains("`audience`"));
}

#[test]
fn strict_encoding_keeps_only_unreserved_bytes() {
    assert_eq!(strict("a b/c~d_e.f-g"), "a%20b%2Fc~d_e.f-g");
    assert_eq!(strict("x@y.iam"), "x%40y.iam");
}
