//! The endpoints of a client: one URL, or several nodes of one service (as
//! Ably's fallback hosts). The order the client goes round them in (a
//! random permutation per client, or one drawn from a seed: its first
//! endpoint, where the client starts, is uniform over the list), moving to
//! the next one, and what each endpoint keeps of its own (the server's
//! latest DPoP nonce: a nonce one node issued means nothing to another).
//!
//! Why a permutation per client rather than the list's order: when a node
//! goes away, each of its clients moves to its own next endpoint, so the
//! node's clients spread over every other node instead of all landing on
//! the one after it (with the list's order, a rolling restart of three
//! nodes ends with every client on one node).

use std::fmt;

use sessionkit_backoff::jitter_unit;

use crate::dpop::NonceSlot;

/// The request header of every handshake that says how many endpoints the
/// client has (`Sessionkit-Endpoints: 3`): a server that balances its
/// load over several nodes may ask a client of two or more to move (close
/// 1012; the client goes to its next endpoint at once), and leaves one of a
/// single endpoint alone, since it would only come back.
///
/// ```
/// assert_eq!(sessionkit_realtime::ENDPOINTS_HEADER, "sessionkit-endpoints");
/// ```
pub const ENDPOINTS_HEADER: &str = "sessionkit-endpoints";

/// One of a client's endpoints, as it may be shown or logged: its place in
/// the list the client was built with and its URL without credentials,
/// query or fragment (`wss://chat-2.example.com:8443/ws`).
///
/// ```
/// use sessionkit_realtime::{RealtimeClient, StaticToken};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sessionkit_realtime::Error> {
/// let source = std::sync::Arc::new(StaticToken::new("an-access-token"));
/// let (client, _incoming) = RealtimeClient::builder_multi([
///     "wss://chat-1.example.com/ws?room=a",
///     "wss://chat-2.example.com:8443/ws",
/// ])
/// .build(source)?;
/// // Not connected yet: no endpoint. Once connected, `client.endpoint()`
/// // says which node it is on, e.g. `1 wss://chat-2.example.com:8443/ws`.
/// assert_eq!(client.endpoint(), None);
/// let names: Vec<String> = client.endpoints().iter().map(ToString::to_string).collect();
/// assert_eq!(names, ["wss://chat-1.example.com/ws", "wss://chat-2.example.com:8443/ws"]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Endpoint {
    /// Its place in the list given to the builder (from 0).
    pub index: usize,
    /// Its URL without credentials, query or fragment: safe to log.
    pub url: String,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

impl Endpoint {
    /// The endpoint at `index` for `url` (already checked to parse).
    pub(crate) fn new(index: usize, url: &url::Url) -> Self {
        Self {
            index,
            url: loggable(url),
        }
    }
}

/// `scheme://host[:port]/path`: no user, password, query or fragment (the
/// port stays: nodes on one host differ only by it).
pub(crate) fn loggable(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(port) => format!("{}://{host}:{port}{}", url.scheme(), url.path()),
        None => format!("{}://{host}{}", url.scheme(), url.path()),
    }
}

/// The list, the order the client goes round it in, the one in use, and
/// each one's DPoP nonce.
#[derive(Debug)]
pub(crate) struct Endpoints {
    urls: Vec<String>,
    names: Vec<Endpoint>,
    nonces: Vec<NonceSlot>,
    /// A permutation of the indices: the client's round.
    order: Vec<usize>,
    /// Where in `order` the client is.
    at: usize,
    current: usize,
}

impl Endpoints {
    /// `urls` (checked, at least one) with their names, gone round in
    /// `order` (a permutation of their indices) from its start.
    pub(crate) fn new(urls: Vec<String>, names: Vec<Endpoint>, order: Vec<usize>) -> Self {
        debug_assert!(!urls.is_empty() && urls.len() == names.len());
        debug_assert!({
            let mut sorted = order.clone();
            sorted.sort_unstable();
            sorted == (0..urls.len()).collect::<Vec<_>>()
        });
        let nonces = urls.iter().map(|_| NonceSlot::default()).collect();
        Self {
            current: order.first().copied().unwrap_or(0),
            at: 0,
            order,
            urls,
            names,
            nonces,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.urls.len()
    }

    /// The endpoint in use (connected, or the next attempt's).
    pub(crate) fn current(&self) -> &Endpoint {
        &self.names[self.current]
    }

    /// The URL to dial, as given (query included: never log it).
    pub(crate) fn url(&self) -> &str {
        &self.urls[self.current]
    }

    /// The DPoP nonce the current endpoint sent last.
    pub(crate) fn nonces(&self) -> &NonceSlot {
        &self.nonces[self.current]
    }

    /// Moves to the next endpoint of the client's round (after the last,
    /// the first); returns whether that is another one (not with a single
    /// endpoint).
    pub(crate) fn advance(&mut self) -> bool {
        self.at = (self.at + 1) % self.order.len();
        let next = self.order[self.at];
        let moved = next != self.current;
        self.current = next;
        moved
    }
}

/// The round of a client with `n` endpoints: a uniformly random
/// permutation of `0..n` (Fisher–Yates), drawn from `seed` when one is
/// given (the same seed, the same round), else at random. Its first
/// element, where the client starts, is uniform over the list.
pub(crate) fn round_order(n: usize, seed: Option<u64>) -> Vec<usize> {
    let mut stream = seed.map(SplitMix);
    let mut unit = || stream.as_mut().map_or_else(jitter_unit, SplitMix::unit);
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        // unit < 1, so the product is at most i; `min` guards the rounding.
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let j = ((unit() * (i + 1) as f64) as usize).min(i);
        order.swap(i, j);
    }
    order
}

/// SplitMix64: a stream of unrelated values from any seed.
struct SplitMix(u64);

impl SplitMix {
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        unit_of(z ^ (z >> 31))
    }
}

/// The top 53 bits as a number in `[0, 1)`.
fn unit_of(bits: u64) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let unit = (bits >> 11) as f64 / (1u64 << 53) as f64;
    unit
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(n: usize, start: usize) -> Endpoints {
        let urls: Vec<String> = (0..n)
            .map(|i| format!("ws://127.0.0.1:{}/ws", 9000 + i))
            .collect();
        let names = urls
            .iter()
            .enumerate()
            .map(|(i, u)| Endpoint::new(i, &url::Url::parse(u).expect("url")))
            .collect();
        let order = (0..n).map(|i| (start + i) % n).collect();
        Endpoints::new(urls, names, order)
    }

    #[test]
    fn moving_on_goes_round_the_list() {
        let mut list = endpoints(3, 1);
        let mut seen = vec![list.current().index];
        for _ in 0..4 {
            assert!(list.advance());
            seen.push(list.current().index);
        }
        assert_eq!(seen, [1, 2, 0, 1, 2]);
        assert_eq!(list.url(), "ws://127.0.0.1:9002/ws");
        let mut one = endpoints(1, 0);
        assert!(!one.advance(), "a single endpoint is no move");
        assert_eq!(one.current().index, 0);
    }

    #[test]
    fn each_endpoint_keeps_its_own_nonce_slot() {
        let mut list = endpoints(2, 0);
        let first = list.nonces().clone();
        list.advance();
        assert!(!first.same_as(list.nonces()));
        list.advance();
        assert!(first.same_as(list.nonces()));
    }

    #[test]
    fn names_keep_the_port_and_lose_credentials_and_query() {
        let url = url::Url::parse("wss://user:pw@chat.example.com:8443/ws?access_token=t#f")
            .expect("url");
        assert_eq!(loggable(&url), "wss://chat.example.com:8443/ws");
        let url = url::Url::parse("wss://chat.example.com/ws").expect("url");
        assert_eq!(loggable(&url), "wss://chat.example.com/ws");
        let url = url::Url::parse("ws://[::1]:9/ws").expect("url");
        assert_eq!(loggable(&url), "ws://[::1]:9/ws");
    }

    #[test]
    fn seeded_starts_are_uniform_and_repeatable() {
        for n in [2usize, 3, 5] {
            let mut counts = vec![0u32; n];
            for seed in 0..3000u64 {
                let order = round_order(n, Some(seed));
                assert_eq!(order, round_order(n, Some(seed)), "repeatable");
                let mut sorted = order.clone();
                sorted.sort_unstable();
                assert_eq!(sorted, (0..n).collect::<Vec<_>>(), "a permutation");
                counts[order[0]] += 1;
            }
            let expected = 3000 / u32::try_from(n).expect("small");
            for (i, count) in counts.iter().enumerate() {
                assert!(
                    count.abs_diff(expected) * 10 < expected,
                    "n={n}: endpoint {i} started {count} times of 3000: {counts:?}"
                );
            }
        }
        assert_eq!(round_order(1, Some(7)), [0]);
    }

    #[test]
    fn random_starts_cover_the_list() {
        let mut counts = [0u32; 3];
        for _ in 0..3000 {
            counts[round_order(3, None)[0]] += 1;
        }
        assert!(counts.iter().all(|c| (800..1200).contains(c)), "{counts:?}");
    }

    #[test]
    fn a_nodes_clients_move_on_to_every_other_node() {
        // 3,000 clients, each with its own round; those that leave node 0
        // go to node 1 or 2 about equally (not all to node 1).
        let mut next = [0u32; 3];
        for seed in 0..3000u64 {
            let order = round_order(3, Some(seed));
            let at = order.iter().position(|i| *i == 0).expect("there");
            next[order[(at + 1) % 3]] += 1;
        }
        assert_eq!(next[0], 0);
        assert!(
            next[1].abs_diff(1500) < 150 && next[2].abs_diff(1500) < 150,
            "{next:?}"
        );
    }
}
