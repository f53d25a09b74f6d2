//! Discovery as the SDK does it: the document (its issuer, endpoints and
//! extra fields read through openidconnect), the https-or-loopback rule on
//! every endpoint, then the JWKS it names. Input: one byte choosing the
//! issuer (https, or loopback http), then the document, a NUL byte, and
//! the JWKS.
//!
//! Checked: no panic; a discovered provider has exactly the issuer asked
//! for and no endpoint that would carry a code, token or secret over plain
//! http to another host.
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use sessionkit_fuzz::split;

const ISSUERS: [&str; 2] = ["https://id.example.com", "http://127.0.0.1:9090"];

/// https, or http to a loopback address.
fn secure(url: &str) -> bool {
    let Ok(url) = url::Url::parse(url) else {
        return false;
    };
    match url.scheme() {
        "https" => true,
        "http" => match url.host() {
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            None => false,
        },
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((choice, rest)) = data.split_first() else {
        return;
    };
    let issuer = ISSUERS[usize::from(*choice & 1)];
    let (document, jwks) = split(rest);
    let Ok(provider) = sessionkit::fuzzing::discover(issuer, document, jwks) else {
        return;
    };
    assert_eq!(provider.issuer(), issuer);
    let metadata = provider.metadata();
    let extra = provider.extra();
    let endpoints = [
        Some(metadata.authorization_endpoint().as_str()),
        metadata.token_endpoint().map(|u| u.as_str()),
        metadata.userinfo_endpoint().map(|u| u.as_str()),
        Some(metadata.jwks_uri().as_str()),
        extra.revocation_endpoint.as_deref(),
        extra.introspection_endpoint.as_deref(),
        extra.device_authorization_endpoint.as_deref(),
        extra.end_session_endpoint.as_deref(),
        extra.account_sessions_endpoint.as_deref(),
    ];
    for url in endpoints.into_iter().flatten() {
        assert!(secure(url), "discovery accepted the endpoint {url:?}");
    }
    assert_eq!(provider.jwks().len(), provider.jwks().set().keys().len());
});
