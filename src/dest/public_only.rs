//! [`PublicOnly`]: the HTTP client a policy-bound workspace's S3-compatible
//! `endpoint` is reached through. The policy lists endpoints as
//! `scheme://host:port`, checked when a job is posted; a host *name* there
//! is resolved again on every connection, and an address that is not
//! public (loopback, private, link-local — the cloud metadata service at
//! 169.254.169.254 —, shared, unspecified, multicast, reserved) is refused
//! before a byte is sent. A name whose DNS a workspace controls therefore
//! cannot be turned onto the server's own network after it was allowed
//! (DNS rebinding). An operator who means an internal endpoint lists it by
//! its address (`http://10.0.0.5:9000`): literals are not resolved.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use object_store::client::{HttpClient, HttpConnector};
use object_store::ClientOptions;

/// Whether `ip` is a public unicast address.
pub(crate) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => public_v4(v4),
            None => public_v6(v6),
        },
    }
}

fn public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || a >= 240
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && ip.octets()[2] == 0)
        || (a == 198 && (18..20).contains(&b)))
}

fn public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || first == 0x2001 && ip.segments()[1] == 0x0db8
        || first == 0x0064 && ip.segments()[1] == 0xff9b)
}

/// A resolver that returns a name's public addresses only, and fails when
/// it has none.
#[derive(Debug, Clone, Copy)]
struct PublicResolver;

impl reqwest::dns::Resolve for PublicResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> =
                all.iter().copied().filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                let e = std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!(
                        "{host} resolves to no public address ({} found): this workspace's \
                         endpoints may not reach the server's own network (an operator lists \
                         an internal endpoint by its address)",
                        all.len()
                    ),
                );
                return Err(Box::new(e) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The object-store connector for policy-bound endpoints: reqwest with
/// [`PublicResolver`], object_store's default timeouts (30 s a request,
/// 5 s to connect), no proxy.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct PublicOnly;

impl HttpConnector for PublicOnly {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("nusomi-export/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5))
            .no_proxy()
            .dns_resolver(Arc::new(PublicResolver))
            .build()
            .map_err(|e| object_store::Error::Generic {
                store: "S3",
                source: Box::new(e),
            })?;
        Ok(HttpClient::new(client))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::dns::Resolve;

    #[test]
    fn internal_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "52.216.0.1", "2600:1f18::1"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn a_policy_bound_s3_endpoint_named_localhost_is_never_contacted() {
        use object_store::ObjectStore;
        // Something listens there: a plain client would reach it.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let endpoint = format!("http://localhost:{port}");
        let store = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name("b")
            .with_region("us-east-1")
            .with_endpoint(&endpoint)
            .with_allow_http(true)
            .with_access_key_id("k")
            .with_secret_access_key("s")
            .with_retry(object_store::RetryConfig {
                max_retries: 0,
                ..Default::default()
            })
            .with_http_connector(PublicOnly)
            .build()
            .unwrap();
        let e = store.list_with_delimiter(None).await.unwrap_err();
        let chain = crate::dest::error_chain(&e);
        assert!(
            chain.contains("localhost resolves to no public address"),
            "{chain}"
        );
        listener.set_nonblocking(true).unwrap();
        assert!(listener.accept().is_err(), "the endpoint was contacted");
    }

    #[tokio::test]
    async fn a_name_of_the_servers_own_network_does_not_resolve() {
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        let Err(e) = PublicResolver.resolve(name).await else {
            panic!("localhost resolved to a public address");
        };
        assert!(e.to_string().contains("no public address"), "{e}");
    }
}
