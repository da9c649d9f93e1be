//! The names a destination puts into a host name or a URL path — S3
//! buckets and regions, GCS buckets, Azure storage accounts and containers —
//! checked by their providers' own naming rules when a spec is parsed, so a
//! name can never carry a `/`, `@`, `:` or `..` into the URL a request goes
//! to (`"bucket": "acme-x/../other"`, `"region": "x@10.0.0.5:6443/"`).
//! Each check returns what is wrong, for the field's error.

/// AWS's rules for general-purpose bucket names: 3–63 characters of
/// lower-case letters, digits, `.` and `-`, beginning and ending with a
/// letter or digit, no `..`, not an IP address, none of the reserved
/// prefixes and suffixes. Behind an `endpoint` (an S3-compatible store,
/// whose rules are looser) upper-case letters and `_` are allowed too.
pub(super) fn s3_bucket(name: &str, custom_endpoint: bool) -> Result<(), String> {
    const PREFIXES: [&str; 3] = ["xn--", "sthree-", "amzn-s3-demo-"];
    // (`--x-s3` names S3 Express directory buckets: allowed.)
    const SUFFIXES: [&str; 4] = ["-s3alias", "--ol-s3", ".mrap", "--table-s3"];
    let rule = "S3 bucket names are 3–63 characters of a-z, 0-9, '.' and '-', \
                beginning and ending with a letter or digit";
    if !(3..=63).contains(&name.len())
        || !name.bytes().all(|b| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || b == b'.'
                || b == b'-'
                || (custom_endpoint && (b.is_ascii_uppercase() || b == b'_'))
        })
        || !ends_alphanumeric(name)
    {
        return Err(format!("{:?} is not a bucket name: {rule}", shown(name)));
    }
    if name.contains("..") {
        return Err(format!(
            "{name:?} is not a bucket name: no two '.' in a row"
        ));
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err(format!(
            "{name:?} is not a bucket name: it is an IP address"
        ));
    }
    if let Some(p) = PREFIXES.iter().find(|p| name.starts_with(*p)) {
        return Err(format!(
            "{name:?} is not a bucket name: {p:?} is a reserved prefix"
        ));
    }
    if let Some(s) = SUFFIXES.iter().find(|s| name.ends_with(*s)) {
        return Err(format!(
            "{name:?} is not a bucket name: {s:?} is a reserved suffix"
        ));
    }
    Ok(())
}

/// An AWS region (`us-east-1`, `us-gov-west-1`, `ap-southeast-2`,
/// `eusc-de-east-1`): two to four letters, one or more `-word`s, and `-`
/// with a number. With an `endpoint`
/// (an S3-compatible store) any name of 1–32 lower-case letters, digits and
/// `-` starting with a letter (`auto`, `garage`).
pub(super) fn s3_region(region: &str, custom_endpoint: bool) -> Result<(), String> {
    let simple = !region.is_empty()
        && region.len() <= 32
        && region.starts_with(|c: char| c.is_ascii_lowercase())
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if custom_endpoint && simple {
        return Ok(());
    }
    let parts: Vec<&str> = region.split('-').collect();
    let aws = simple
        && parts.len() >= 3
        && (2..=4).contains(&parts[0].len())
        && parts[1..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].len() <= 2
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty();
    if aws {
        return Ok(());
    }
    Err(if custom_endpoint {
        format!(
            "{:?} is not a region name: 1–32 characters of a-z, 0-9 and '-', starting with a letter",
            shown(region)
        )
    } else {
        format!(
            "{:?} is not an AWS region (such as \"us-east-1\" or \"eu-central-1\")",
            shown(region)
        )
    })
}

/// Google's bucket names: 3–63 characters of lower-case letters, digits,
/// `-`, `_` and `.` (up to 222 with dots, each dot-separated part at most
/// 63), beginning and ending with a letter or digit, not an IP address, not
/// beginning with `goog`.
pub(super) fn gcs_bucket(name: &str) -> Result<(), String> {
    let max = if name.contains('.') { 222 } else { 63 };
    let ok = (3..=max).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
        && ends_alphanumeric(name)
        && name.split('.').all(|p| !p.is_empty() && p.len() <= 63)
        && name.parse::<std::net::Ipv4Addr>().is_err()
        && !name.starts_with("goog");
    ok.then_some(()).ok_or_else(|| {
        format!(
            "{:?} is not a GCS bucket name: 3–63 characters of a-z, 0-9, '-', '_' and '.', \
             beginning and ending with a letter or digit, not an IP address, not beginning with \"goog\"",
            shown(name)
        )
    })
}

/// Azure storage account names: 3–24 lower-case letters and digits.
pub(super) fn azure_account(name: &str) -> Result<(), String> {
    let ok = (3..=24).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    ok.then_some(()).ok_or_else(|| {
        format!(
            "{:?} is not a storage account name: 3–24 characters of a-z and 0-9",
            shown(name)
        )
    })
}

/// Azure container names: 3–63 lower-case letters, digits and `-`,
/// beginning and ending with a letter or digit, no `--`; or one of the
/// special containers `$root` and `$web`.
pub(super) fn azure_container(name: &str) -> Result<(), String> {
    if name == "$root" || name == "$web" {
        return Ok(());
    }
    let ok = (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && ends_alphanumeric(name)
        && !name.contains("--");
    ok.then_some(()).ok_or_else(|| {
        format!(
            "{:?} is not a container name: 3–63 characters of a-z, 0-9 and '-', \
             beginning and ending with a letter or digit, no \"--\"",
            shown(name)
        )
    })
}

fn ends_alphanumeric(name: &str) -> bool {
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    alnum(name.chars().next()) && alnum(name.chars().last())
}

/// At most 80 characters of a refused name, for an error message.
fn shown(name: &str) -> String {
    match name.char_indices().nth(80) {
        Some((i, _)) => format!("{}…", &name[..i]),
        None => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_buckets_by_aws_rules() {
        let (a63, a64) = ("a".repeat(63), "a".repeat(64));
        for ok in ["nusomi-test", "acme-train", "a.b.c", "abc", a63.as_str()] {
            assert!(s3_bucket(ok, false).is_ok(), "{ok}");
        }
        for bad in [
            "acme-x/../other",
            "ab",
            a64.as_str(),
            "Acme",
            "acme_x",
            "-acme",
            "acme-",
            "a..b",
            "192.168.0.1",
            "xn--abc",
            "acme-s3alias",
            "acme@10.0.0.5",
            "acme:80",
            "",
        ] {
            assert!(s3_bucket(bad, false).is_err(), "{bad}");
        }
        // Looser behind an endpoint, never with a separator.
        assert!(s3_bucket("Legacy_Bucket", true).is_ok());
        for bad in ["a/b", "a@b", "a:b", "a..b"] {
            assert!(s3_bucket(bad, true).is_err(), "{bad}");
        }
    }

    #[test]
    fn regions_are_aws_regions_or_plain_names_behind_an_endpoint() {
        for ok in [
            "us-east-1",
            "us-gov-west-1",
            "ap-southeast-2",
            "eu-central-1",
            "cn-northwest-1",
        ] {
            assert!(s3_region(ok, false).is_ok(), "{ok}");
            assert!(s3_region(ok, true).is_ok(), "{ok}");
        }
        for bad in [
            "x@127.0.0.1:9/",
            "us-east",
            "useast-1",
            "US-EAST-1",
            "auto",
            "us-east-1/",
            "",
        ] {
            assert!(s3_region(bad, false).is_err(), "{bad}");
        }
        assert!(s3_region("auto", true).is_ok() && s3_region("garage", true).is_ok());
        let a33 = "a".repeat(33);
        for bad in ["x@127.0.0.1:9/", "a.b", "1abc", "", a33.as_str()] {
            assert!(s3_region(bad, true).is_err(), "{bad}");
        }
    }

    #[test]
    fn gcs_and_azure_names() {
        assert!(gcs_bucket("my_bucket-1").is_ok() && gcs_bucket("a.example.com").is_ok());
        for bad in ["b", "goog-x", "a/b", "A-b", "a..b", "10.0.0.1"] {
            assert!(gcs_bucket(bad).is_err(), "{bad}");
        }
        assert!(azure_account("devstoreaccount1").is_ok());
        let a25 = "a".repeat(25);
        for bad in ["ab", "dev-store", "x@10.0.0.5", a25.as_str()] {
            assert!(azure_account(bad).is_err(), "{bad}");
        }
        assert!(azure_container("nusomi-test").is_ok());
        for bad in ["c", "a--b", "-ab", "a/b", "Abc"] {
            assert!(azure_container(bad).is_err(), "{bad}");
        }
        let long = "x".repeat(500);
        assert!(s3_bucket(&long, false).unwrap_err().len() < 300);
        assert!(azure_container("$web").is_ok() && azure_container("$other").is_err());
    }
}
