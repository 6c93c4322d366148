//! Who is on the other end of a request: the client's address and whether it came over HTTPS.
//!
//! Directly connected, the address is the TCP peer's. Behind a reverse proxy every request comes from the
//! proxy, so for a peer declared with `--trusted-proxy` the address is read from `X-Forwarded-For`
//! (walking from the right past every trusted proxy: the entries left of the first untrusted one could
//! have been written by the client itself) and HTTPS from `X-Forwarded-Proto`. Headers from anyone else
//! are ignored. Per-address limits and the session cookie's `Secure` flag both use what this says.

use crate::{config::Config, node::Node};
use axum::{
    extract::{ConnectInfo, FromRequestParts},
    http::{HeaderMap, request::Parts},
};
use std::{
    convert::Infallible,
    net::{IpAddr, SocketAddr},
};

/// The client of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientInfo {
    /// Its address.
    pub addr: IpAddr,
    /// Whether it reached us over HTTPS (declared by `--public-origin` or a trusted proxy).
    pub https: bool,
}

impl ClientInfo {
    /// What `config` makes of a request from `peer` with `headers`.
    pub fn of(config: &Config, peer: IpAddr, headers: &HeaderMap) -> Self {
        let trusted = |ip: &IpAddr| config.trusted_proxies.contains(ip);
        if !trusted(&peer) {
            return Self {
                addr: peer,
                https: config.public_https(),
            };
        }
        let forwarded: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|a| a.trim().parse().ok())
            .collect();
        let addr = forwarded
            .iter()
            .rev()
            .find(|ip| !trusted(ip))
            .copied()
            .unwrap_or(peer);
        let proto_https = headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
        Self {
            addr,
            https: config.public_https() || proto_https,
        }
    }
}

impl FromRequestParts<Node> for ClientInfo {
    type Rejection = Infallible;
    async fn from_request_parts(parts: &mut Parts, node: &Node) -> Result<Self, Infallible> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
        Ok(Self::of(&node.config, peer, &parts.headers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_proxies() {
        let mut config = Config::with_data_dir("unused");
        let proxy: IpAddr = [10, 0, 0, 1].into();
        let client: IpAddr = [203, 0, 113, 7].into();
        let spoofed = headers(&[
            ("x-forwarded-for", "198.51.100.1, 203.0.113.7"),
            ("x-forwarded-proto", "https"),
        ]);
        assert_eq!(
            ClientInfo::of(&config, proxy, &spoofed),
            ClientInfo {
                addr: proxy,
                https: false
            },
            "nobody is trusted by default"
        );
        config.trusted_proxies = vec![proxy, [10, 0, 0, 2].into()];
        assert_eq!(
            ClientInfo::of(&config, proxy, &spoofed),
            ClientInfo {
                addr: client,
                https: true
            },
            "the rightmost entry the proxy wrote, not what the client claimed"
        );
        let chained = headers(&[("x-forwarded-for", "203.0.113.7, 10.0.0.2")]);
        assert_eq!(ClientInfo::of(&config, proxy, &chained).addr, client);
        assert_eq!(
            ClientInfo::of(&config, client, &spoofed),
            ClientInfo {
                addr: client,
                https: false
            },
            "a client's own headers change nothing"
        );
        config.public_origin = Some("https://chat.example".into());
        assert!(ClientInfo::of(&config, client, &HeaderMap::new()).https);
    }
}
