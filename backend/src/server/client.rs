//! Who is calling, for the shares of the server's limits one caller may hold.
//!
//! A client is its peer address: an IPv4 address, or an IPv6 /64 (one host
//! often holds a whole /64, so counting single IPv6 addresses would let it take
//! any share). Behind a reverse proxy named by `--trusted-proxy`, a request's
//! client is the address the proxy put last in `X-Forwarded-For` (the one it
//! saw; entries before it are the caller's word); behind an unnamed proxy every
//! user is the proxy, and shares one client's share.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

/// A caller, as [`Client::of`] groups addresses. Handlers find it in the
/// request's extensions (the accept loop puts it there).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Client(IpAddr);

impl Client {
    pub fn of(addr: IpAddr) -> Client {
        let grouped = match addr {
            IpAddr::V4(v4) => IpAddr::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let bits = u128::from(v6) & !((1u128 << 64) - 1);
                    IpAddr::V6(Ipv6Addr::from(bits))
                }
            },
        };
        Client(grouped)
    }

    /// The client of a request that came through `peer`: the peer, or where it
    /// is a trusted proxy, the last address in `forwarded`, the X-Forwarded-For
    /// lines in order (a proxy may add a line of its own after the caller's,
    /// rather than append to it). An address with a port, or in brackets, counts.
    pub fn of_request<'a>(
        peer: IpAddr,
        trusted: bool,
        forwarded: impl DoubleEndedIterator<Item = &'a str>,
    ) -> Client {
        let last = forwarded.rev().flat_map(|line| line.rsplit(',')).next();
        let named = last.filter(|_| trusted).and_then(|last| {
            let last = last.trim();
            last.parse::<IpAddr>()
                .ok()
                .or_else(|| last.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
                .or_else(|| {
                    last.strip_prefix('[')
                        .and_then(|v| v.strip_suffix(']'))
                        .and_then(|v| v.parse().ok())
                })
        });
        Client::of(named.unwrap_or(peer))
    }
}

/// How many things each client holds now, against a share per client.
#[derive(Debug)]
pub struct Shares {
    share: usize,
    held: Mutex<HashMap<Client, usize>>,
}

/// One thing a client holds; its share frees when dropped.
#[derive(Debug)]
pub struct Held {
    shares: Arc<Shares>,
    client: Client,
}

impl Shares {
    pub fn new(share: usize) -> Arc<Shares> {
        Arc::new(Shares {
            share: share.max(1),
            held: Mutex::new(HashMap::new()),
        })
    }

    pub fn share(&self) -> usize {
        self.share
    }

    /// One more for `client`, or `None` when it holds its whole share.
    pub fn take(self: &Arc<Self>, client: Client) -> Option<Held> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let n = held.entry(client).or_insert(0);
        if *n >= self.share {
            return None;
        }
        *n += 1;
        Some(Held {
            shares: self.clone(),
            client,
        })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut held = self.shares.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = held.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            // Gone clients leave no entry: the map holds the clients holding something.
            if *n == 0 {
                held.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_are_their_64_and_mapped_ipv4_is_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Client::of(a), Client::of(b));
        assert_ne!(Client::of(a), Client::of(other));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(Client::of(mapped), Client::of("192.0.2.7".parse().unwrap()));
        assert_ne!(
            Client::of("192.0.2.7".parse().unwrap()),
            Client::of("192.0.2.8".parse().unwrap())
        );
    }

    #[test]
    fn a_trusted_proxys_requests_count_against_the_address_it_saw() {
        let proxy: IpAddr = "10.0.0.5".parse().unwrap();
        let user = Client::of("203.0.113.9".parse().unwrap());
        let of = |trusted: bool, lines: &[&str]| {
            Client::of_request(proxy, trusted, lines.iter().copied())
        };
        // The caller's own entries come first and are not believed.
        assert_eq!(of(true, &["198.51.100.1, 203.0.113.9"]), user);
        // Nor is a line of the caller's own before the one the proxy added.
        assert_eq!(of(true, &["198.51.100.1", "203.0.113.9"]), user);
        // With a port, or an IPv6 address in brackets.
        assert_eq!(of(true, &["203.0.113.9:5678"]), user);
        assert_eq!(
            of(true, &["[2001:db8::7]"]),
            Client::of("2001:db8::7".parse().unwrap())
        );
        // Not a trusted proxy: the header is anyone's word.
        assert_eq!(of(false, &["198.51.100.1, 203.0.113.9"]), Client::of(proxy));
        // No header, or not an address: the proxy itself.
        assert_eq!(of(true, &[]), Client::of(proxy));
        assert_eq!(of(true, &["unknown"]), Client::of(proxy));
    }

    #[test]
    fn a_client_holds_at_most_its_share_and_others_are_not_held_back() {
        let shares = Shares::new(2);
        let one = Client::of("192.0.2.1".parse().unwrap());
        let two = Client::of("192.0.2.2".parse().unwrap());
        let first = shares.take(one).unwrap();
        let _second = shares.take(one).unwrap();
        assert!(shares.take(one).is_none());
        assert!(shares.take(two).is_some());
        drop(first);
        let _third = shares.take(one).unwrap();
        assert!(shares.take(one).is_none());
        // A client holding nothing leaves nothing behind.
        drop(_third);
        drop(_second);
        assert!(shares.held.lock().unwrap().is_empty());
    }
}
