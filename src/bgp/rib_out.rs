//! Per-peer Adj-RIB-Out: what we have told one peer, the diff against the
//! desired routes, and the batching of that diff into the fewest UPDATEs.
//!
//! Attributes are interned: every prefix of a group points at one shared
//! `Arc<RouteAttrs>`, so 100,000 prefixes with a handful of attribute sets
//! cost a pointer each. Batching packs as many NLRI as fit in a 4096-byte
//! message, per (family, attributes) group, withdrawals likewise.
//!
//! Pure: no I/O, no clock. The session decides when to call it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use ipnet::IpNet;

use super::codec::update::{
    announce_overhead, encode_announce, encode_withdraw, is_encodable, nlri_len, withdraw_overhead,
    EncodeCtx,
};
use super::codec::{EncodeError, Family, MAX_MESSAGE_LEN};
use crate::model::RouteAttrs;

/// Family of a prefix.
pub fn family_of(p: &IpNet) -> Family {
    match p {
        IpNet::V4(_) => Family::Ipv4,
        IpNet::V6(_) => Family::Ipv6,
    }
}

/// The changes to send, grouped for packing.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Prefixes to withdraw, per family, in prefix order.
    pub withdraw: BTreeMap<Family, Vec<IpNet>>,
    /// Prefixes to announce, per (family, attributes), in prefix order.
    pub announce: BTreeMap<(Family, Arc<RouteAttrs>), Vec<IpNet>>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.withdraw.is_empty() && self.announce.is_empty()
    }

    pub fn announced(&self) -> usize {
        self.announce.values().map(Vec::len).sum()
    }

    pub fn withdrawn(&self) -> usize {
        self.withdraw.values().map(Vec::len).sum()
    }
}

/// What one peer has from us.
#[derive(Debug, Default, Clone)]
pub struct AdjRibOut {
    routes: BTreeMap<IpNet, Arc<RouteAttrs>>,
}

impl AdjRibOut {
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    pub fn clear(&mut self) {
        self.routes.clear();
    }

    pub fn get(&self, p: &IpNet) -> Option<&Arc<RouteAttrs>> {
        self.routes.get(p)
    }

    /// Number of distinct attribute sets (shared allocations).
    pub fn attribute_sets(&self) -> usize {
        let mut ptrs: Vec<*const RouteAttrs> = self.routes.values().map(Arc::as_ptr).collect();
        ptrs.sort_unstable();
        ptrs.dedup();
        ptrs.len()
    }

    /// Makes the Adj-RIB-Out equal to `desired` (sorted by prefix, as a
    /// `BTreeMap` iterates), keeping only prefixes of `families`. `ibgp`
    /// decides whether LOCAL_PREF is kept. Returns what must be sent.
    pub fn sync<'a>(
        &mut self,
        desired: impl IntoIterator<Item = (&'a IpNet, &'a RouteAttrs)>,
        families: &[Family],
        ibgp: bool,
    ) -> Plan {
        let mut plan = Plan::default();
        // Intern: reuse the Arcs we already hold for equal attributes.
        let mut interned: HashMap<RouteAttrs, Arc<RouteAttrs>> = HashMap::new();
        for a in self.routes.values() {
            if !interned.contains_key(&**a) {
                interned.insert((**a).clone(), a.clone());
            }
        }
        let mut upserts: Vec<(IpNet, Arc<RouteAttrs>)> = Vec::new();
        let mut removals: Vec<IpNet> = Vec::new();
        let mut current = self.routes.iter().peekable();
        let mut scratch = RouteAttrs::default();
        for (prefix, attrs) in desired {
            let fam = family_of(prefix);
            if !families.contains(&fam) || !is_encodable(prefix) {
                continue;
            }
            // Everything we have below this prefix is no longer wanted.
            while let Some((p, _)) = current.peek() {
                if *p < prefix {
                    removals.push(**p);
                    current.next();
                } else {
                    break;
                }
            }
            let effective: &RouteAttrs = if ibgp || attrs.local_pref.is_none() {
                attrs
            } else {
                scratch.clone_from(attrs);
                scratch.local_pref = None;
                &scratch
            };
            let have = match current.peek() {
                Some((p, a)) if *p == prefix => {
                    let same = ***a == *effective;
                    current.next();
                    same
                }
                _ => false,
            };
            if !have {
                let arc = match interned.get(effective) {
                    Some(a) => a.clone(),
                    None => {
                        let a = Arc::new(effective.clone());
                        interned.insert(effective.clone(), a.clone());
                        a
                    }
                };
                upserts.push((*prefix, arc));
            }
        }
        removals.extend(current.map(|(p, _)| *p));
        for p in removals {
            self.routes.remove(&p);
            plan.withdraw.entry(family_of(&p)).or_default().push(p);
        }
        for (p, a) in upserts {
            plan.announce
                .entry((family_of(&p), a.clone()))
                .or_default()
                .push(p);
            self.routes.insert(p, a);
        }
        plan
    }

    /// Everything we advertise, as an announce-only plan (initial sync is a
    /// `sync` from empty; this is for ROUTE-REFRESH), for `family` or all.
    pub fn full(&self, family: Option<Family>) -> Plan {
        let mut plan = Plan::default();
        for (p, a) in &self.routes {
            let f = family_of(p);
            if family.is_none_or(|x| x == f) {
                plan.announce.entry((f, a.clone())).or_default().push(*p);
            }
        }
        plan
    }

    /// Withdraws everything (for a withdrawing shutdown).
    pub fn withdraw_all(&mut self) -> Plan {
        let mut plan = Plan::default();
        for p in std::mem::take(&mut self.routes).into_keys() {
            plan.withdraw.entry(family_of(&p)).or_default().push(p);
        }
        plan
    }
}

/// Encodes `plan` into as few UPDATEs as fit in [`MAX_MESSAGE_LEN`] each,
/// appended to `out`. Withdrawals go first. Returns the number of messages.
pub fn encode_plan(plan: &Plan, ctx: &EncodeCtx, out: &mut Vec<u8>) -> Result<usize, EncodeError> {
    let mut messages = 0;
    for (family, prefixes) in &plan.withdraw {
        let overhead = withdraw_overhead(ctx, *family);
        for chunk in chunks(prefixes, overhead) {
            encode_withdraw(ctx, *family, chunk, out)?;
            messages += 1;
        }
    }
    for ((family, attrs), prefixes) in &plan.announce {
        let overhead = announce_overhead(ctx, attrs, *family)?;
        if overhead >= MAX_MESSAGE_LEN {
            return Err(EncodeError {
                what: "UPDATE",
                detail: format!("attributes alone take {overhead} bytes"),
            });
        }
        for chunk in chunks(prefixes, overhead) {
            encode_announce(ctx, attrs, *family, chunk, out)?;
            messages += 1;
        }
    }
    Ok(messages)
}

/// Splits `prefixes` into runs whose NLRI fit after `overhead` bytes.
fn chunks(prefixes: &[IpNet], overhead: usize) -> impl Iterator<Item = &[IpNet]> {
    let mut rest = prefixes;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut size = overhead;
        let mut n = 0;
        for p in rest {
            let l = nlri_len(p);
            if size + l > MAX_MESSAGE_LEN {
                break;
            }
            size += l;
            n += 1;
        }
        let n = n.max(1);
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Some(head)
    })
}

#[cfg(test)]
mod tests {
    use super::super::codec::{decode, take_frame, Received};
    use super::*;
    use bytes::BytesMut;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn ctx(ibgp: bool, v4_in_mp: bool) -> EncodeCtx {
        EncodeCtx {
            local_asn: 65010,
            ibgp,
            asn4: true,
            next_hop_v4: Some(Ipv4Addr::new(192, 0, 2, 2)),
            next_hop_v6: Some("2001:db8::2".parse().unwrap()),
            v4_in_mp,
        }
    }

    fn v4(i: u32) -> IpNet {
        IpNet::V4(ipnet::Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + (i << 8)), 24).unwrap())
    }

    fn v6(i: u32) -> IpNet {
        IpNet::V6(
            ipnet::Ipv6Net::new(
                Ipv6Addr::from((0x2001_0db8u128 << 96) | ((i as u128) << 64)),
                64,
            )
            .unwrap(),
        )
    }

    fn attrs(med: u32) -> RouteAttrs {
        RouteAttrs {
            med: Some(med),
            local_pref: Some(200),
            communities: vec![(65010, 1)],
            ..Default::default()
        }
    }

    const BOTH: &[Family] = &[Family::Ipv4, Family::Ipv6];

    /// Decodes every message in `bytes`; returns (messages, announced,
    /// withdrawn) and checks the size limit.
    fn replay(bytes: &[u8]) -> (usize, u32, u32) {
        let mut b = BytesMut::from(bytes);
        let (mut n, mut a, mut w) = (0, 0, 0);
        while let Some(f) = take_frame(&mut b).unwrap() {
            assert!(f.len() <= MAX_MESSAGE_LEN);
            let Received::Update(u) = decode(&f).unwrap() else {
                panic!()
            };
            assert_eq!(u.malformed, None);
            n += 1;
            a += u.announced;
            w += u.withdrawn;
        }
        assert!(b.is_empty());
        (n, a, w)
    }

    #[test]
    fn diff_announces_changes_and_withdraws() {
        let mut rib = AdjRibOut::default();
        let mut want: BTreeMap<IpNet, RouteAttrs> = (0..10).map(|i| (v4(i), attrs(1))).collect();
        want.insert(v6(1), attrs(1));
        let plan = rib.sync(&want, BOTH, false);
        assert_eq!((plan.announced(), plan.withdrawn()), (11, 0));
        assert_eq!(plan.announce.len(), 2, "one group per family");
        // eBGP: LOCAL_PREF is not kept.
        assert_eq!(rib.get(&v4(0)).unwrap().local_pref, None);
        // Same input: nothing to send.
        assert!(rib.sync(&want, BOTH, false).is_empty());
        // Change one, remove one, add one.
        want.insert(v4(3), attrs(2));
        want.remove(&v4(5));
        want.insert(v4(20), attrs(1));
        let plan = rib.sync(&want, BOTH, false);
        assert_eq!(plan.withdraw.get(&Family::Ipv4), Some(&vec![v4(5)]));
        assert_eq!(plan.announced(), 2);
        assert_eq!(plan.announce.len(), 2, "med 1 and med 2 groups");
        assert_eq!(rib.len(), 11);
        assert_eq!(rib.attribute_sets(), 2);
        // Removing everything withdraws everything.
        let plan = rib.sync(&BTreeMap::new(), BOTH, false);
        assert_eq!(plan.withdrawn(), 11);
        assert!(rib.is_empty());
    }

    #[test]
    fn families_filter_and_ibgp_local_pref() {
        let mut rib = AdjRibOut::default();
        let want: BTreeMap<IpNet, RouteAttrs> =
            [(v4(1), attrs(1)), (v6(1), attrs(1))].into_iter().collect();
        let plan = rib.sync(&want, &[Family::Ipv6], true);
        assert_eq!(plan.announced(), 1);
        assert_eq!(rib.get(&v6(1)).unwrap().local_pref, Some(200));
        assert!(rib.get(&v4(1)).is_none());
    }

    #[test]
    fn batching_packs_many_nlri_and_never_exceeds_4096() {
        for v4_in_mp in [false, true] {
            let mut rib = AdjRibOut::default();
            let want: BTreeMap<IpNet, RouteAttrs> = (0..5000)
                .map(|i| (v4(i), attrs(i % 2)))
                .chain((0..3000).map(|i| (v6(i), attrs(0))))
                .collect();
            let plan = rib.sync(&want, BOTH, false);
            let mut out = Vec::new();
            let n = encode_plan(&plan, &ctx(false, v4_in_mp), &mut out).unwrap();
            let (msgs, announced, _) = replay(&out);
            assert_eq!((msgs, announced), (n, 8000));
            // /24 = 4 bytes each: ~1000 per message; /64 = 9 bytes: ~450.
            let lower_bound = 2500 * 4 / 4096 * 2 + 3000 * 9 / 4096;
            assert!(n >= lower_bound && n <= lower_bound + 6, "{n} messages");
            // Withdraw all.
            let plan = rib.sync(&BTreeMap::new(), BOTH, false);
            let mut out = Vec::new();
            let n = encode_plan(&plan, &ctx(false, v4_in_mp), &mut out).unwrap();
            let (msgs, _, withdrawn) = replay(&out);
            assert_eq!((msgs, withdrawn), (n, 8000));
            assert!(n <= 5000 * 4 / 4000 + 3000 * 9 / 4000 + 2);
        }
    }

    #[test]
    fn full_plan_for_route_refresh() {
        let mut rib = AdjRibOut::default();
        let want: BTreeMap<IpNet, RouteAttrs> =
            [(v4(1), attrs(1)), (v6(1), attrs(1))].into_iter().collect();
        rib.sync(&want, BOTH, false);
        assert_eq!(rib.full(Some(Family::Ipv6)).announced(), 1);
        assert_eq!(rib.full(None).announced(), 2);
        assert_eq!(rib.withdraw_all().withdrawn(), 2);
        assert!(rib.is_empty());
    }

    /// Micro-benchmark: prints, does not assert time.
    #[test]
    fn bench_100k_prefixes_diff_and_encode() {
        let want: BTreeMap<IpNet, RouteAttrs> = (0..100_000).map(|i| (v4(i), attrs(1))).collect();
        let mut rib = AdjRibOut::default();
        let t = std::time::Instant::now();
        let plan = rib.sync(&want, BOTH, false);
        let diffed = t.elapsed();
        let mut out = Vec::with_capacity(500_000);
        let n = encode_plan(&plan, &ctx(false, false), &mut out).unwrap();
        let total = t.elapsed();
        eprintln!(
            "100k prefixes: diff {diffed:?}, diff+encode {total:?}, {n} UPDATEs, {} bytes, {} attribute set(s)",
            out.len(),
            rib.attribute_sets()
        );
        assert_eq!(
            rib.attribute_sets(),
            1,
            "attributes are shared, not per prefix"
        );
        assert_eq!(replay(&out).1, 100_000);
    }

    proptest::proptest! {
        #[test]
        fn sync_makes_rib_equal_to_desired(
            first in proptest::collection::btree_map(0u32..300, 0u32..3, 0..200),
            second in proptest::collection::btree_map(0u32..300, 0u32..3, 0..200),
        ) {
            let mk = |m: &BTreeMap<u32, u32>| -> BTreeMap<IpNet, RouteAttrs> {
                m.iter().map(|(&k, &v)| (if k % 2 == 0 { v4(k) } else { v6(k) }, attrs(v))).collect()
            };
            let mut rib = AdjRibOut::default();
            rib.sync(&mk(&first), BOTH, true);
            let want = mk(&second);
            let plan = rib.sync(&want, BOTH, true);
            proptest::prop_assert_eq!(rib.len(), want.len());
            for (p, a) in &want {
                proptest::prop_assert_eq!(&**rib.get(p).unwrap(), a);
            }
            // Minimal: only changed prefixes appear in the plan.
            let old = mk(&first);
            let changed = want.iter().filter(|(p, a)| old.get(p) != Some(a)).count();
            let removed = old.keys().filter(|p| !want.contains_key(p)).count();
            proptest::prop_assert_eq!(plan.announced(), changed);
            proptest::prop_assert_eq!(plan.withdrawn(), removed);
        }
    }
}
