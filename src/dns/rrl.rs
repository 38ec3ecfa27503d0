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
//! The accounts live in a fixed-size table ([`Table`], [`MAX_ACCOUNTS`] in
//! all) with bounded work per response: a block's account sits in one of
//! [`PROBES`] slots next to its (keyed) hash. A new block takes a free slot
//! of those, else one whose account is full again (idle: forgetting it
//! loses nothing), else the one with the least debt. So a spoofed flood of
//! new blocks, whose accounts are nearly full after one response, replaces
//! itself and leaves the accounts of blocks being limited in place; nothing
//! ever rescans or clears the table.
//!
//! [`Table`] is pure (the caller passes the time); [`RateLimiter`] shares
//! one table split in [`SHARDS`] shards (a mutex each, picked by the
//! block's hash) between every UDP worker, so a block has one account
//! whichever worker its packets reach.

use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use crate::model::RateLimit;

use super::policy::{mask, CLIENT_PREFIX_V4, CLIENT_PREFIX_V6};

/// Most client blocks tracked (all shards together).
pub const MAX_ACCOUNTS: usize = 100_000;
/// Shards of a [`RateLimiter`]'s table (one lock each).
pub const SHARDS: usize = 64;
/// Slots a block's account may occupy, next to its hash: the most slots
/// one response looks at.
pub const PROBES: usize = 8;

/// What to do with a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Send,
    Drop,
    /// Send an empty truncated answer instead.
    Slip,
}

/// A client block as a table key: the masked address and its family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    v4: bool,
    bits: u128,
}

/// The block a source address belongs to.
fn block(src: IpAddr) -> Key {
    let src = src.to_canonical();
    let prefix = if src.is_ipv4() {
        CLIENT_PREFIX_V4
    } else {
        CLIENT_PREFIX_V6
    };
    let bits = match mask(src, prefix) {
        IpAddr::V4(v4) => u32::from(v4).into(),
        IpAddr::V6(v6) => v6.into(),
    };
    Key {
        v4: src.is_ipv4(),
        bits,
    }
}

#[derive(Debug, Clone, Copy)]
struct Account {
    key: Key,
    balance: f64,
    /// Seconds since the table's epoch at the last response.
    last: f64,
    limited: u32,
}

/// One table of accounts: fixed capacity, bounded work per response, pure.
#[derive(Debug)]
pub struct Table {
    rate: f64,
    floor: f64,
    slip: u32,
    capacity: usize,
    /// Allocated on first use (an idle listener costs nothing).
    slots: Vec<Option<Account>>,
    epoch: Option<Instant>,
}

impl Table {
    pub fn new(config: &RateLimit, capacity: usize) -> Table {
        let rate = config.responses_per_second.max(1) as f64;
        Table {
            rate,
            floor: -rate * config.window.as_secs_f64().max(1.0),
            slip: config.slip,
            capacity: capacity.max(PROBES),
            slots: Vec::new(),
            epoch: None,
        }
    }

    /// Accounts tracked.
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `src`'s block has an account.
    pub fn contains(&self, src: IpAddr) -> bool {
        let key = block(src);
        self.slots.iter().flatten().any(|a| a.key == key)
    }

    /// Accounts one response to `src` (whose block hashes to `hash`) at
    /// `now` and says what to do with it.
    pub fn check(&mut self, src: IpAddr, hash: u64, now: Instant) -> Verdict {
        self.check_counted(src, hash, now).0
    }

    /// [`Table::check`], also returning how many slots it looked at.
    pub fn check_counted(&mut self, src: IpAddr, hash: u64, now: Instant) -> (Verdict, usize) {
        let key = block(src);
        let epoch = *self.epoch.get_or_insert(now);
        let t = now.saturating_duration_since(epoch).as_secs_f64();
        if self.slots.is_empty() {
            self.slots = vec![None; self.capacity];
        }
        let (slot, looked) = self.slot_for(key, hash, t);
        let (rate, floor, slip) = (self.rate, self.floor, self.slip);
        let a = self.slots[slot].get_or_insert(Account {
            key,
            balance: rate,
            last: t,
            limited: 0,
        });
        let elapsed = (t - a.last).max(0.0);
        a.balance = ((a.balance + elapsed * rate).min(rate) - 1.0).max(floor);
        a.last = t;
        if a.balance >= 0.0 {
            a.limited = 0;
            return (Verdict::Send, looked);
        }
        a.limited = a.limited.wrapping_add(1);
        let verdict = if slip > 0 && a.limited % slip == 0 {
            Verdict::Slip
        } else {
            Verdict::Drop
        };
        (verdict, looked)
    }

    /// The slot of `key`'s account, or the slot a new account for it takes
    /// (emptied): a free one, else an idle one, else the one with the least
    /// debt, among the [`PROBES`] slots from `hash`. Also returns the slots
    /// looked at.
    fn slot_for(&mut self, key: Key, hash: u64, t: f64) -> (usize, usize) {
        let n = self.slots.len();
        let first = (hash % n as u64) as usize;
        let mut best: Option<(usize, f64)> = None;
        let mut looked = 0;
        for i in 0..PROBES {
            let s = (first + i) % n;
            looked += 1;
            let score = match &self.slots[s] {
                Some(a) if a.key == key => return (s, looked),
                Some(a) => (a.balance + (t - a.last).max(0.0) * self.rate).min(self.rate),
                None => f64::INFINITY,
            };
            if best.is_none_or(|(_, b)| score > b) {
                best = Some((s, score));
            }
        }
        let (s, _) = best.unwrap_or((first, 0.0));
        self.slots[s] = None;
        (s, looked)
    }
}

/// The rate limiter of a server: one [`Table`] of [`MAX_ACCOUNTS`] split in
/// [`SHARDS`] locked shards, shared by every UDP worker.
#[derive(Debug)]
pub struct RateLimiter {
    config: RateLimit,
    hasher: RandomState,
    shards: Box<[Mutex<Table>]>,
}

impl RateLimiter {
    pub fn new(config: RateLimit) -> RateLimiter {
        let per_shard = MAX_ACCOUNTS.div_ceil(SHARDS);
        RateLimiter {
            config,
            hasher: RandomState::new(),
            shards: (0..SHARDS)
                .map(|_| Mutex::new(Table::new(&config, per_shard)))
                .collect(),
        }
    }

    pub fn config(&self) -> &RateLimit {
        &self.config
    }

    /// Number of client blocks tracked.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Accounts one response to `src` at `now` and says what to do with it.
    pub fn check(&self, src: IpAddr, now: Instant) -> Verdict {
        // Keyed hash: a spoofing client cannot aim its blocks at one shard
        // or one slot.
        let h = self.hasher.hash_one(block(src));
        let shard = &self.shards[(h % SHARDS as u64) as usize];
        shard
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .check(src, h / SHARDS as u64, now)
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
        let rl = limiter(5, 2, 15);
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
        let rl = limiter(2, 0, 5);
        assert_eq!(rl.check(ip("198.51.100.1"), t0), Verdict::Send);
        assert_eq!(rl.check(ip("198.51.100.1"), t0), Verdict::Send);
        for _ in 0..20 {
            assert_eq!(rl.check(ip("198.51.100.1"), t0), Verdict::Drop);
        }
    }

    #[test]
    fn rate_is_refilled_per_second_and_debt_lasts_at_most_window() {
        let t0 = Instant::now();
        let rl = limiter(10, 2, 3);
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
    fn spoofed_flood_does_not_reset_limited_blocks() {
        let t0 = Instant::now();
        let rl = limiter(10, 2, 15);
        let heavy = ip("198.51.100.7");
        let light = ip("203.0.113.9");
        for _ in 0..20 {
            rl.check(heavy, t0);
        }
        assert_ne!(rl.check(heavy, t0), Verdict::Send);
        // 1.5 × MAX_ACCOUNTS new /24 blocks at 2 million per second (each
        // account still fresh when the table fills); the limited block
        // keeps sending at 10 times its rate, a light client once in a while.
        let mut t = t0;
        for i in 0..(MAX_ACCOUNTS * 3 / 2) as u32 {
            t += Duration::from_nanos(500);
            let spoofed = std::net::Ipv4Addr::from(0x0a00_0000u32.wrapping_add(i << 8));
            rl.check(spoofed.into(), t);
            if i % 20_000 == 0 {
                let v = rl.check(heavy, t);
                assert_ne!(v, Verdict::Send, "limited block reset after {i} new blocks");
            }
            if i % 50_000 == 0 {
                assert_eq!(rl.check(light, t), Verdict::Send);
            }
        }
        assert!(rl.len() <= MAX_ACCOUNTS);
    }

    /// A deterministic stand-in for the limiter's keyed hash.
    fn hash(seed: u64, a: IpAddr) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        seed.hash(&mut h);
        block(a).hash(&mut h);
        h.finish()
    }

    fn v4(n: u32) -> IpAddr {
        std::net::Ipv4Addr::from(n).into()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// A table of 512 under a flood of 20 × 512 new blocks: every
        /// response looks at most PROBES slots, and blocks sending at twice
        /// their rate or more stay limited (their accounts are never
        /// replaced by the flood's).
        #[test]
        fn spoofed_flood_work_is_bounded_and_heavy_hitters_keep_accounts(
            seed in proptest::prelude::any::<u64>(),
            heavy_n in 1usize..8,
            flood_per_round in 1u64..200,
            step_us in 1u64..2_000,
        ) {
            let cfg = RateLimit {
                responses_per_second: 10,
                slip: 2,
                window: Duration::from_secs(15),
            };
            let mut table = Table::new(&cfg, 512);
            let heavy: Vec<IpAddr> = (0..heavy_n as u32)
                .map(|k| v4(0xc633_6401 + (k << 8)))
                .collect();
            let t0 = Instant::now();
            for h in &heavy {
                for _ in 0..30 {
                    table.check(*h, hash(seed, *h), t0);
                }
            }
            // Each heavy hitter sends once a round; a round lasts at most
            // 50 ms (20 per second, twice the rate).
            let step = Duration::from_micros(step_us.min(50_000 / flood_per_round).max(1));
            let mut t = t0;
            let mut rng = seed | 1;
            for i in 0..20 * 512u64 {
                // xorshift: distinct-looking 10/8 blocks.
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let spoofed = v4(0x0a00_0000 | ((rng as u32) & 0x00ff_ff00));
                t += step;
                let (_, looked) = table.check_counted(spoofed, hash(seed, spoofed), t);
                proptest::prop_assert!(looked <= PROBES);
                if i % flood_per_round == 0 {
                    for h in &heavy {
                        let (v, looked) = table.check_counted(*h, hash(seed, *h), t);
                        proptest::prop_assert!(looked <= PROBES);
                        proptest::prop_assert_ne!(v, Verdict::Send, "heavy hitter {} reset", h);
                    }
                }
            }
            for h in &heavy {
                proptest::prop_assert!(table.contains(*h));
            }
            proptest::prop_assert!(table.len() <= 512);
        }
    }

    #[test]
    fn a_new_block_takes_a_free_then_idle_then_least_indebted_slot() {
        let cfg = RateLimit {
            responses_per_second: 10,
            slip: 0,
            window: Duration::from_secs(15),
        };
        // One probe window covers the whole table.
        let mut table = Table::new(&cfg, PROBES);
        let t0 = Instant::now();
        let blocks: Vec<IpAddr> = (1..=PROBES as u32)
            .map(|k| v4(0xc000_0200 + (k << 8)))
            .collect();
        // Debts: block k sent 10 + k responses at t0.
        for (k, b) in blocks.iter().enumerate() {
            for _ in 0..(10 + k) {
                table.check(*b, 0, t0);
            }
        }
        assert_eq!(table.len(), PROBES);
        // Full: a newcomer replaces the block with the least debt (the
        // first, at 0); the others keep their accounts.
        let newcomer = ip("203.0.113.1");
        assert_eq!(table.check(newcomer, 0, t0), Verdict::Send);
        assert!(!table.contains(blocks[0]));
        assert!(blocks[1..].iter().all(|b| table.contains(*b)));
        // 200 ms later the newcomer's account is full again (idle): the
        // next newcomer takes it, not a limited block's.
        let t1 = t0 + Duration::from_millis(200);
        assert_eq!(table.check(ip("203.0.114.1"), 0, t1), Verdict::Send);
        assert!(!table.contains(newcomer));
        assert!(blocks[1..].iter().all(|b| table.contains(*b)));
        // A limited block is still limited.
        assert_eq!(table.check(blocks[PROBES - 1], 0, t1), Verdict::Drop);
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
