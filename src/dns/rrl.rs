//! Response rate limiting (RRL) against reflection and amplification: UDP
//! responses per client block (/24 for IPv4, /56 for IPv6, by source
//! address; ECS does not count, the source is who receives the packets).
//!
//! Each block has an account credited `responses_per_second` per second
//! (at most one second's worth banked) and debited one per response, sent
//! or not, down to `-responses_per_second × window`: a block over the rate
//! is limited, and a flood stays limited until it has been quiet for up to
//! `window`. Limited responses are dropped, except every `slip`-th, which
//! goes out as an empty truncated (TC) answer so that a real client behind
//! a spoofed block retries over TCP (which is never limited).
//!
//! Pure: the caller passes the time; one limiter per UDP thread, no lock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use crate::model::RateLimit;

use super::policy::{mask, CLIENT_PREFIX_V4, CLIENT_PREFIX_V6};

/// Most client blocks tracked; beyond it idle accounts are swept, and if
/// that is not enough, all are forgotten.
pub const MAX_ACCOUNTS: usize = 100_000;

/// What to do with a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Send,
    Drop,
    /// Send an empty truncated answer instead.
    Slip,
}

#[derive(Debug, Clone, Copy)]
struct Account {
    balance: f64,
    last: Instant,
    limited: u32,
}

#[derive(Debug)]
pub struct RateLimiter {
    config: RateLimit,
    rate: f64,
    floor: f64,
    accounts: HashMap<IpAddr, Account>,
    last_sweep: Option<Instant>,
}

/// The block a source address belongs to.
fn block(src: IpAddr) -> IpAddr {
    let prefix = if src.is_ipv4() {
        CLIENT_PREFIX_V4
    } else {
        CLIENT_PREFIX_V6
    };
    mask(src, prefix)
}

impl RateLimiter {
    pub fn new(config: RateLimit) -> RateLimiter {
        let rate = config.responses_per_second.max(1) as f64;
        RateLimiter {
            config,
            rate,
            floor: -rate * config.window.as_secs_f64().max(1.0),
            accounts: HashMap::new(),
            last_sweep: None,
        }
    }

    pub fn config(&self) -> &RateLimit {
        &self.config
    }

    /// Number of client blocks tracked.
    pub fn len(&self) -> usize {
        self.accounts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }

    /// Accounts one response to `src` at `now` and says what to do with it.
    pub fn check(&mut self, src: IpAddr, now: Instant) -> Verdict {
        if self.accounts.len() >= MAX_ACCOUNTS
            || self
                .last_sweep
                .is_none_or(|t| now.saturating_duration_since(t) > self.config.window)
        {
            self.sweep(now);
        }
        let (rate, floor, slip) = (self.rate, self.floor, self.config.slip);
        let a = self.accounts.entry(block(src)).or_insert(Account {
            balance: rate,
            last: now,
            limited: 0,
        });
        let elapsed = now.saturating_duration_since(a.last).as_secs_f64();
        a.balance = (a.balance + elapsed * rate).min(rate) - 1.0;
        a.balance = a.balance.max(floor);
        a.last = now;
        if a.balance >= 0.0 {
            a.limited = 0;
            return Verdict::Send;
        }
        a.limited = a.limited.wrapping_add(1);
        if slip > 0 && a.limited % slip == 0 {
            Verdict::Slip
        } else {
            Verdict::Drop
        }
    }

    /// Forgets accounts that are full again (idle blocks); all of them if
    /// that does not bring the table under [`MAX_ACCOUNTS`].
    fn sweep(&mut self, now: Instant) {
        let rate = self.rate;
        self.accounts.retain(|_, a| {
            a.balance + now.saturating_duration_since(a.last).as_secs_f64() * rate < rate
        });
        if self.accounts.len() >= MAX_ACCOUNTS {
            self.accounts.clear();
        }
        self.last_sweep = Some(now);
    }
}

/// An empty truncated answer to a query (header and question copied, QR and
/// TC set, no records), or `None` if the packet is not a plain query with
/// one uncompressed question.
pub fn truncated_reply(q: &[u8]) -> Option<Vec<u8>> {
    if q.len() < 17 || q[2] & 0x80 != 0 || q[4..6] != [0, 1] {
        return None;
    }
    let mut pos = 12;
    loop {
        let l = *q.get(pos)? as usize;
        if l > 63 {
            return None;
        }
        pos += 1 + l;
        if l == 0 {
            break;
        }
        if pos - 12 > 255 {
            return None;
        }
    }
    let end = pos + 4;
    if end > q.len() {
        return None;
    }
    let mut out = Vec::with_capacity(end);
    out.extend_from_slice(&q[..2]);
    // QR, the query's opcode and RD, TC; RA/Z/AD/CD and rcode zero.
    out.push(0x80 | (q[2] & 0x79) | 0x02);
    out.push(q[3] & 0x10);
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&q[12..end]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limiter(rps: u32, slip: u32, window: u64) -> RateLimiter {
        RateLimiter::new(RateLimit {
            responses_per_second: rps,
            slip,
            window: Duration::from_secs(window),
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn limits_per_block_and_slips_every_nth() {
        let t0 = Instant::now();
        let mut rl = limiter(5, 2, 15);
        let mut verdicts = Vec::new();
        for i in 0..11 {
            // Different hosts of one /24 share the account.
            verdicts.push(rl.check(ip(&format!("192.0.2.{}", i + 1)), t0));
        }
        use Verdict::*;
        assert_eq!(
            verdicts,
            vec![Send, Send, Send, Send, Send, Drop, Slip, Drop, Slip, Drop, Slip]
        );
        // Another /24 and an IPv6 /56 have their own accounts.
        assert_eq!(rl.check(ip("192.0.3.1"), t0), Send);
        assert_eq!(rl.check(ip("2001:db8:0:1::1"), t0), Send);
        for _ in 0..4 {
            rl.check(ip("2001:db8:0:1::1"), t0);
        }
        // Same /56, other host: limited.
        assert_eq!(rl.check(ip("2001:db8:0:ff::9"), t0), Drop);
        // Other /56: not.
        assert_eq!(rl.check(ip("2001:db8:0:100::1"), t0), Send);
    }

    #[test]
    fn slip_zero_drops_everything_over_the_rate() {
        let t0 = Instant::now();
        let mut rl = limiter(2, 0, 5);
        assert_eq!(rl.check(ip("198.51.100.1"), t0), Verdict::Send);
        assert_eq!(rl.check(ip("198.51.100.1"), t0), Verdict::Send);
        for _ in 0..20 {
            assert_eq!(rl.check(ip("198.51.100.1"), t0), Verdict::Drop);
        }
    }

    #[test]
    fn rate_is_refilled_per_second_and_debt_lasts_at_most_window() {
        let t0 = Instant::now();
        let mut rl = limiter(10, 2, 3);
        let a = ip("203.0.113.5");
        // Steady 10 per second is fine forever.
        for s in 0..5u64 {
            for k in 0..10u64 {
                let t = t0 + Duration::from_millis(s * 1000 + k * 100);
                assert_eq!(rl.check(a, t), Verdict::Send, "second {s} query {k}");
            }
        }
        // A flood of 1000 in one second: debt capped at 10 × 3 = 30.
        let t1 = t0 + Duration::from_secs(6);
        let sent = (0..1000)
            .filter(|_| rl.check(a, t1) == Verdict::Send)
            .count();
        assert_eq!(sent, 10);
        // Still limited 2 s later (debt 30 - 20 credit), free 3.1 s later.
        assert_ne!(rl.check(a, t1 + Duration::from_secs(2)), Verdict::Send);
        assert_eq!(rl.check(a, t1 + Duration::from_millis(5100)), Verdict::Send);
    }

    #[test]
    fn idle_accounts_are_swept() {
        let t0 = Instant::now();
        let mut rl = limiter(1, 2, 1);
        for i in 0..100u32 {
            let a = std::net::Ipv4Addr::from(0x0a00_0000 | (i << 8));
            rl.check(a.into(), t0);
        }
        assert_eq!(rl.len(), 100);
        rl.check(ip("192.0.2.1"), t0 + Duration::from_secs(5));
        assert_eq!(rl.len(), 1);
    }

    #[test]
    fn truncated_reply_copies_the_question() {
        // id 0xbeef, RD, one question www.example.net A, with an OPT after.
        let mut q = vec![0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
        q.extend_from_slice(b"\x03WwW\x07example\x03net\x00\x00\x01\x00\x01");
        let qlen = q.len();
        q.extend_from_slice(&[0, 0, 41, 4, 208, 0, 0, 0, 0, 0, 0]);
        let r = truncated_reply(&q).unwrap();
        assert_eq!(&r[..2], &[0xbe, 0xef]);
        assert_eq!(r[2], 0x80 | 0x02 | 0x01); // QR, TC, RD
        assert_eq!(r[3], 0);
        assert_eq!(&r[4..12], &[0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&r[12..], &q[12..qlen]);
        let m = hickory_proto::op::Message::from_vec(&r).unwrap();
        assert!(m.metadata.truncation);
        assert_eq!(m.queries[0].name().to_ascii(), "WwW.example.net.");
        // Responses, garbage and compressed names: nothing.
        let mut resp = q.clone();
        resp[2] |= 0x80;
        assert_eq!(truncated_reply(&resp), None);
        assert_eq!(truncated_reply(&[0u8; 11]), None);
        let mut ptr = q[..12].to_vec();
        ptr.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
        assert_eq!(truncated_reply(&ptr), None);
    }
}
