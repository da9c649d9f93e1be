//! [`UrlSigner`]: HMAC-SHA256 download links for `signed_url` exports whose
//! storage cannot presign (a local folder). A link is
//! `{public_url}/v1/exports/{id}/files/{name}?expires={unix}&signature={hex}`;
//! the signature covers the export id, the file name and the expiry, so a
//! link cannot be moved to another file, another export or a later time.
//! `nusomi serve` checks links with [`UrlSigner::verify`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Why a signed link was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The signature does not match (tampered id, name, expiry or signature).
    #[error("signature does not match")]
    BadSignature,
    /// The link's expiry has passed.
    #[error("link expired at {0} (unix seconds)")]
    Expired(u64),
    /// `expires` or `signature` is missing or malformed.
    #[error("malformed link: {0}")]
    Malformed(&'static str),
}

/// Signs and checks download links with a secret key.
#[derive(Clone)]
pub struct UrlSigner {
    key: Vec<u8>,
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UrlSigner { key: <redacted> }")
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl UrlSigner {
    /// A signer with `key` (at least 16 bytes is sensible; any length works).
    pub fn new(key: impl Into<Vec<u8>>) -> Self {
        UrlSigner { key: key.into() }
    }

    fn mac(&self, export_id: &str, name: &str, expires: u64) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
            .expect("HMAC accepts keys of any length");
        mac.update(format!("{export_id}/{name}\n{expires}").as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// The query string (`expires=…&signature=…`) for a file of an export.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use nusomi_export::dest::UrlSigner;
    /// let s = UrlSigner::new(b"0123456789abcdef".to_vec());
    /// let now = SystemTime::now();
    /// let q = s.query("exp_1", "shard-000000.tar", now + Duration::from_secs(60));
    /// let (expires, sig) = q.split_once('&').unwrap();
    /// let expires = expires.trim_start_matches("expires=");
    /// let sig = sig.trim_start_matches("signature=");
    /// assert!(s.verify("exp_1", "shard-000000.tar", expires, sig, now).is_ok());
    /// assert!(s.verify("exp_1", "manifest.json", expires, sig, now).is_err());
    /// ```
    pub fn query(&self, export_id: &str, name: &str, expires_at: SystemTime) -> String {
        let expires = unix(expires_at);
        format!(
            "expires={expires}&signature={}",
            self.mac(export_id, name, expires)
        )
    }

    /// A full link under `public_url` (e.g. `http://127.0.0.1:8080`).
    pub fn link(
        &self,
        public_url: &str,
        export_id: &str,
        name: &str,
        expires_at: SystemTime,
    ) -> String {
        format!(
            "{}{name}?{}",
            files_url(public_url, export_id),
            self.query(export_id, name, expires_at)
        )
    }

    /// Whether `url` is one of this service's links to a file of `export_id`.
    pub fn is_own_link(url: &str, public_url: &str, export_id: &str) -> bool {
        url.starts_with(&files_url(public_url, export_id))
    }

    /// Checks a link's `expires` and `signature` parameters at time `now`.
    /// The comparison runs in constant time.
    pub fn verify(
        &self,
        export_id: &str,
        name: &str,
        expires: &str,
        signature: &str,
        now: SystemTime,
    ) -> Result<(), LinkError> {
        let exp: u64 = expires
            .parse()
            .map_err(|_| LinkError::Malformed("expires is not a unix time"))?;
        let sig =
            hex::decode(signature).map_err(|_| LinkError::Malformed("signature is not hex"))?;
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
            .expect("HMAC accepts keys of any length");
        mac.update(format!("{export_id}/{name}\n{exp}").as_bytes());
        mac.verify_slice(&sig)
            .map_err(|_| LinkError::BadSignature)?;
        if unix(now) >= exp {
            return Err(LinkError::Expired(exp));
        }
        Ok(())
    }
}

/// Where the files of an export are served: `{public_url}/v1/exports/{id}/files/`.
pub fn files_url(public_url: &str, export_id: &str) -> String {
    format!(
        "{}/v1/exports/{export_id}/files/",
        public_url.trim_end_matches('/')
    )
}

/// A link lifetime capped by the credentials' remaining lifetime (a link must
/// not outlive what signs it).
pub fn capped_ttl(wanted: Duration, credentials_expire: Option<SystemTime>) -> Duration {
    match credentials_expire.and_then(|e| e.duration_since(SystemTime::now()).ok()) {
        Some(left) => wanted.min(left),
        None if credentials_expire.is_some() => Duration::ZERO,
        None => wanted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(q: &str) -> (String, String) {
        let mut e = String::new();
        let mut s = String::new();
        for kv in q.split('&') {
            let (k, v) = kv.split_once('=').unwrap();
            match k {
                "expires" => e = v.to_string(),
                "signature" => s = v.to_string(),
                _ => {}
            }
        }
        (e, s)
    }

    #[test]
    fn valid_tampered_and_expired_links() {
        let s = UrlSigner::new(b"secret-key-for-tests".to_vec());
        let now = SystemTime::now();
        let (e, sig) = parts(&s.query(
            "exp_A",
            "shard-000001.parquet",
            now + Duration::from_secs(30),
        ));
        assert_eq!(
            s.verify("exp_A", "shard-000001.parquet", &e, &sig, now),
            Ok(())
        );
        // Another file, another export, a later expiry, a flipped signature digit.
        assert_eq!(
            s.verify("exp_A", "shard-000002.parquet", &e, &sig, now),
            Err(LinkError::BadSignature)
        );
        assert_eq!(
            s.verify("exp_B", "shard-000001.parquet", &e, &sig, now),
            Err(LinkError::BadSignature)
        );
        let later = (e.parse::<u64>().unwrap() + 3600).to_string();
        assert_eq!(
            s.verify("exp_A", "shard-000001.parquet", &later, &sig, now),
            Err(LinkError::BadSignature)
        );
        let mut bad = sig.clone().into_bytes();
        bad[0] = if bad[0] == b'0' { b'1' } else { b'0' };
        let bad = String::from_utf8(bad).unwrap();
        assert_eq!(
            s.verify("exp_A", "shard-000001.parquet", &e, &bad, now),
            Err(LinkError::BadSignature)
        );
        // Another key.
        let other = UrlSigner::new(b"another-key".to_vec());
        assert_eq!(
            other.verify("exp_A", "shard-000001.parquet", &e, &sig, now),
            Err(LinkError::BadSignature)
        );
        // Expired: checked at a time after the expiry.
        let after = now + Duration::from_secs(31);
        assert!(matches!(
            s.verify("exp_A", "shard-000001.parquet", &e, &sig, after),
            Err(LinkError::Expired(_))
        ));
        assert!(matches!(
            s.verify("exp_A", "shard-000001.parquet", "soon", &sig, now),
            Err(LinkError::Malformed(_))
        ));
        assert!(!format!("{s:?}").contains("secret"));
    }

    #[test]
    fn ttl_never_outlives_credentials() {
        let h = Duration::from_secs(3600);
        assert_eq!(capped_ttl(h, None), h);
        let soon = SystemTime::now() + Duration::from_secs(600);
        let t = capped_ttl(h, Some(soon));
        assert!(t <= Duration::from_secs(600) && t > Duration::from_secs(590));
        let past = SystemTime::now() - Duration::from_secs(5);
        assert_eq!(capped_ttl(h, Some(past)), Duration::ZERO);
    }
}
