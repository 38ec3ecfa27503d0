//! Encoding of the UPDATEs we send: path attributes from [`RouteAttrs`] and
//! the session's context (eBGP/iBGP, 4-octet ASN, next hops), announce and
//! withdraw messages for a batch of prefixes, End-of-RIB markers.
//!
//! Messages are built as netgauze-bgp-pkt values and serialized by it. The
//! extended-length flag is set here explicitly (netgauze does not derive it):
//! always on MP_REACH/MP_UNREACH (as FRR does), and on any other attribute
//! whose value exceeds 255 bytes. The batching in [`crate::bgp::rib_out`] relies
//! on [`announce_overhead`] and [`nlri_len`] predicting sizes exactly; a unit
//! test checks that prediction against the encoder.
//!
//! This module must not decide *what* to send; it only encodes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use netgauze_bgp_pkt::community::{Community, LargeCommunity};
use netgauze_bgp_pkt::nlri::{Ipv4Unicast, Ipv4UnicastAddress, Ipv6Unicast, Ipv6UnicastAddress};
use netgauze_bgp_pkt::path_attribute::{
    As2PathSegment, As4Path, As4PathSegment, AsPath, AsPathSegmentType, Communities,
    LargeCommunities, LocalPreference, MpReach, MpUnreach, MultiExitDiscriminator, NextHop, Origin,
    PathAttribute, PathAttributeValue,
};
use netgauze_bgp_pkt::update::BgpUpdateMessage;
use netgauze_bgp_pkt::BgpMessage;

use super::encode::{write_msg, EncodeError};
use super::message::{Family, AS_TRANS, HEADER_LEN};
use crate::model::RouteAttrs;

/// Per-session facts that shape the encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodeCtx {
    pub local_asn: u32,
    pub ibgp: bool,
    /// Both sides sent the 4-octet ASN capability.
    pub asn4: bool,
    pub next_hop_v4: Option<Ipv4Addr>,
    pub next_hop_v6: Option<Ipv6Addr>,
    /// Carry IPv4 routes in MP_REACH/MP_UNREACH (the session runs over IPv6).
    pub v4_in_mp: bool,
}

impl EncodeCtx {
    fn family_in_mp(&self, family: Family) -> bool {
        family == Family::Ipv6 || self.v4_in_mp
    }

    /// Whether `family` has a next hop and can be announced at all.
    pub fn can_announce(&self, family: Family) -> bool {
        match family {
            Family::Ipv4 => self.next_hop_v4.is_some(),
            Family::Ipv6 => self.next_hop_v6.is_some(),
        }
    }
}

/// Wire length of one prefix in an NLRI field.
pub fn nlri_len(p: &IpNet) -> usize {
    1 + (p.prefix_len() as usize).div_ceil(8)
}

/// Whether netgauze (and BGP) accept `p` as a unicast prefix.
pub fn is_encodable(p: &IpNet) -> bool {
    match p {
        IpNet::V4(n) => Ipv4Unicast::from_net(*n).is_ok(),
        IpNet::V6(n) => Ipv6Unicast::from_net(*n).is_ok(),
    }
}

fn attr(
    optional: bool,
    transitive: bool,
    value_len: usize,
    value: PathAttributeValue,
) -> Result<PathAttribute, EncodeError> {
    PathAttribute::from(optional, transitive, false, value_len > 255, value).map_err(|(_, e)| {
        EncodeError {
            what: "path attribute",
            detail: format!("{e:?}"),
        }
    })
}

fn segments4(path: &[u32]) -> Vec<As4PathSegment> {
    path.chunks(255)
        .map(|c| As4PathSegment::new(AsPathSegmentType::AsSequence, c.to_vec()))
        .collect()
}

fn as_path_value_len(n_asns: usize, asn_size: usize) -> usize {
    n_asns.div_ceil(255) * 2 + n_asns * asn_size
}

/// The path attributes of an announcement, in type-code order, except
/// MP_REACH_NLRI (which carries the prefixes and is added per message).
fn base_attrs(
    ctx: &EncodeCtx,
    attrs: &RouteAttrs,
    family: Family,
) -> Result<Vec<PathAttribute>, EncodeError> {
    let mut out = Vec::with_capacity(8);
    out.push(attr(
        false,
        true,
        1,
        PathAttributeValue::Origin(Origin::IGP),
    )?);
    // AS_PATH: eBGP starts with our ASN; prepends repeat it.
    let n = attrs.prepend as usize + usize::from(!ctx.ibgp);
    let path = vec![ctx.local_asn; n];
    let mut as4_path = None;
    let as_path = if ctx.asn4 {
        AsPath::As4PathSegments(segments4(&path).into())
    } else {
        let two = u16::try_from(ctx.local_asn).unwrap_or(AS_TRANS);
        if two == AS_TRANS && n > 0 {
            as4_path = Some(segments4(&path));
        }
        AsPath::As2PathSegments(
            path.chunks(255)
                .map(|c| As2PathSegment::new(AsPathSegmentType::AsSequence, vec![two; c.len()]))
                .collect::<Vec<_>>()
                .into(),
        )
    };
    let asn_size = if ctx.asn4 { 4 } else { 2 };
    out.push(attr(
        false,
        true,
        as_path_value_len(n, asn_size),
        PathAttributeValue::AsPath(as_path),
    )?);
    if family == Family::Ipv4 && !ctx.v4_in_mp {
        let nh = ctx.next_hop_v4.ok_or_else(|| EncodeError {
            what: "NEXT_HOP",
            detail: "no IPv4 next hop".into(),
        })?;
        out.push(attr(
            false,
            true,
            4,
            PathAttributeValue::NextHop(NextHop::new(nh)),
        )?);
    }
    if let Some(med) = attrs.med {
        out.push(attr(
            true,
            false,
            4,
            PathAttributeValue::MultiExitDiscriminator(MultiExitDiscriminator::new(med)),
        )?);
    }
    if ctx.ibgp {
        out.push(attr(
            false,
            true,
            4,
            PathAttributeValue::LocalPreference(LocalPreference::new(
                attrs.local_pref.unwrap_or(100),
            )),
        )?);
    }
    if !attrs.communities.is_empty() {
        let c: Vec<Community> = attrs
            .communities
            .iter()
            .map(|&(a, v)| Community::new(((a as u32) << 16) | v as u32))
            .collect();
        out.push(attr(
            true,
            true,
            c.len() * 4,
            PathAttributeValue::Communities(Communities::new(c)),
        )?);
    }
    if let Some(segs) = as4_path {
        out.push(attr(
            true,
            true,
            as_path_value_len(n, 4),
            PathAttributeValue::As4Path(As4Path::new(segs)),
        )?);
    }
    if !attrs.large_communities.is_empty() {
        let c: Vec<LargeCommunity> = attrs
            .large_communities
            .iter()
            .map(|&(g, a, b)| LargeCommunity::new(g, a, b))
            .collect();
        out.push(attr(
            true,
            true,
            c.len() * 12,
            PathAttributeValue::LargeCommunities(LargeCommunities::new(c)),
        )?);
    }
    Ok(out)
}

fn mp_attr(value: PathAttributeValue) -> Result<PathAttribute, EncodeError> {
    // Always extended length, so the size is independent of the batch.
    PathAttribute::from(true, false, false, true, value).map_err(|(_, e)| EncodeError {
        what: "MP attribute",
        detail: format!("{e:?}"),
    })
}

fn v4_nlri(prefixes: &[IpNet]) -> Result<Vec<Ipv4UnicastAddress>, EncodeError> {
    prefixes
        .iter()
        .map(|p| match p {
            IpNet::V4(n) => Ipv4Unicast::from_net(*n)
                .map(Ipv4UnicastAddress::new_no_path_id)
                .map_err(|_| bad_prefix(p)),
            IpNet::V6(_) => Err(bad_prefix(p)),
        })
        .collect()
}

fn v6_nlri(prefixes: &[IpNet]) -> Result<Vec<Ipv6UnicastAddress>, EncodeError> {
    prefixes
        .iter()
        .map(|p| match p {
            IpNet::V6(n) => Ipv6Unicast::from_net(*n)
                .map(|n| Ipv6UnicastAddress::new(None, n))
                .map_err(|_| bad_prefix(p)),
            IpNet::V4(_) => Err(bad_prefix(p)),
        })
        .collect()
}

fn bad_prefix(p: &IpNet) -> EncodeError {
    EncodeError {
        what: "NLRI",
        detail: format!("{p} is not a unicast prefix of this family"),
    }
}

/// Encodes one UPDATE announcing `prefixes` (all of `family`) with `attrs`.
pub fn encode_announce(
    ctx: &EncodeCtx,
    attrs: &RouteAttrs,
    family: Family,
    prefixes: &[IpNet],
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let mut pa = base_attrs(ctx, attrs, family)?;
    let mut nlri = Vec::new();
    if ctx.family_in_mp(family) {
        let mp = match family {
            Family::Ipv4 => MpReach::Ipv4Unicast {
                next_hop: IpAddr::V4(ctx.next_hop_v4.ok_or_else(|| bad_nh(family))?),
                next_hop_local: None,
                nlri: v4_nlri(prefixes)?.into(),
            },
            Family::Ipv6 => MpReach::Ipv6Unicast {
                next_hop_global: ctx.next_hop_v6.ok_or_else(|| bad_nh(family))?,
                next_hop_local: None,
                nlri: v6_nlri(prefixes)?.into(),
            },
        };
        // Type-code order: MP_REACH (14) goes before AS4_PATH (17) and
        // LARGE_COMMUNITY (32).
        let pos = pa
            .iter()
            .position(|a| {
                matches!(
                    a.value(),
                    PathAttributeValue::As4Path(_) | PathAttributeValue::LargeCommunities(_)
                )
            })
            .unwrap_or(pa.len());
        pa.insert(pos, mp_attr(PathAttributeValue::MpReach(mp))?);
    } else {
        nlri = v4_nlri(prefixes)?;
    }
    let msg = BgpMessage::Update(BgpUpdateMessage::new(Vec::new(), pa, nlri));
    write_msg(&msg, out)
}

fn bad_nh(family: Family) -> EncodeError {
    EncodeError {
        what: "next hop",
        detail: format!("no next hop for {family}"),
    }
}

/// Encodes one UPDATE withdrawing `prefixes` (all of `family`).
pub fn encode_withdraw(
    ctx: &EncodeCtx,
    family: Family,
    prefixes: &[IpNet],
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let msg = if ctx.family_in_mp(family) {
        let mp = match family {
            Family::Ipv4 => MpUnreach::Ipv4Unicast {
                nlri: v4_nlri(prefixes)?.into(),
            },
            Family::Ipv6 => MpUnreach::Ipv6Unicast {
                nlri: v6_nlri(prefixes)?.into(),
            },
        };
        BgpUpdateMessage::new(
            Vec::new(),
            vec![mp_attr(PathAttributeValue::MpUnreach(mp))?],
            Vec::new(),
        )
    } else {
        BgpUpdateMessage::new(v4_nlri(prefixes)?, Vec::new(), Vec::new())
    };
    write_msg(&BgpMessage::Update(msg), out)
}

/// Encodes the End-of-RIB marker for `family` (RFC 4724 §2).
pub fn encode_end_of_rib(family: Family, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let msg = match family {
        Family::Ipv4 => BgpUpdateMessage::new(Vec::new(), Vec::new(), Vec::new()),
        Family::Ipv6 => BgpUpdateMessage::new(
            Vec::new(),
            vec![PathAttribute::from(
                true,
                false,
                false,
                false,
                PathAttributeValue::MpUnreach(MpUnreach::Ipv6Unicast { nlri: Box::new([]) }),
            )
            .map_err(|(_, e)| EncodeError {
                what: "End-of-RIB",
                detail: format!("{e:?}"),
            })?],
            Vec::new(),
        ),
    };
    write_msg(&BgpMessage::Update(msg), out)
}

/// Bytes of an announce UPDATE for this group before any prefix.
pub fn announce_overhead(
    ctx: &EncodeCtx,
    attrs: &RouteAttrs,
    family: Family,
) -> Result<usize, EncodeError> {
    let mut buf = Vec::with_capacity(256);
    encode_announce(ctx, attrs, family, &[], &mut buf)?;
    Ok(buf.len())
}

/// Bytes of a withdraw UPDATE before any prefix.
pub fn withdraw_overhead(ctx: &EncodeCtx, family: Family) -> usize {
    if ctx.family_in_mp(family) {
        // header + 2 + 2 + flags/type/len(2) + AFI/SAFI
        HEADER_LEN + 4 + 4 + 3
    } else {
        HEADER_LEN + 4
    }
}

#[cfg(test)]
mod tests {
    use super::super::{decode, take_frame, Received};
    use super::*;
    use bytes::BytesMut;
    use ipnet::{Ipv4Net, Ipv6Net};
    use netgauze_bgp_pkt::wire::deserializer::BgpParsingContext;
    use netgauze_parse_utils::reader::SliceReader;
    use netgauze_parse_utils::traits::ParseFromWithOneInput;

    pub(crate) fn ctx(ibgp: bool, asn4: bool, v4_in_mp: bool) -> EncodeCtx {
        EncodeCtx {
            local_asn: if asn4 { 4_200_000_010 } else { 65010 },
            ibgp,
            asn4,
            next_hop_v4: Some(Ipv4Addr::new(192, 0, 2, 2)),
            next_hop_v6: Some("2001:db8::2".parse().unwrap()),
            v4_in_mp,
        }
    }

    fn parse(bytes: &[u8], asn4: bool) -> BgpUpdateMessage {
        let mut pctx = BgpParsingContext::default();
        pctx.set_asn4(asn4);
        match BgpMessage::parse(&mut SliceReader::new(bytes), &mut pctx).unwrap() {
            BgpMessage::Update(u) => u,
            m => panic!("not an update: {m:?}"),
        }
    }

    fn big_attrs() -> RouteAttrs {
        RouteAttrs {
            prepend: 255,
            med: Some(7),
            local_pref: Some(50),
            communities: (0..100).map(|i| (65000, i)).collect(),
            large_communities: (0..40).map(|i| (4_200_000_000, i, i + 1)).collect(),
        }
    }

    #[test]
    fn every_attribute_round_trips_including_long_ones() {
        let v4: Vec<IpNet> = (0..200u32)
            .map(|i| IpNet::V4(Ipv4Net::new(Ipv4Addr::from(0xc633_6400 + (i << 8)), 24).unwrap()))
            .collect();
        let v6: Vec<IpNet> = (0..150u32)
            .map(|i| {
                IpNet::V6(
                    Ipv6Net::new(
                        Ipv6Addr::from((0x2001_0db8u128 << 96) | ((i as u128) << 80)),
                        48,
                    )
                    .unwrap(),
                )
            })
            .collect();
        for ibgp in [false, true] {
            for asn4 in [true, false] {
                for v4_in_mp in [false, true] {
                    let c = ctx(ibgp, asn4, v4_in_mp);
                    for (family, prefixes) in [(Family::Ipv4, &v4), (Family::Ipv6, &v6)] {
                        for attrs in [RouteAttrs::default(), big_attrs()] {
                            let mut buf = Vec::new();
                            encode_announce(&c, &attrs, family, prefixes, &mut buf).unwrap();
                            let predicted = announce_overhead(&c, &attrs, family).unwrap()
                                + prefixes.iter().map(nlri_len).sum::<usize>();
                            assert_eq!(buf.len(), predicted, "size prediction");
                            let u = parse(&buf, asn4);
                            // Re-encode what netgauze decoded: byte identical.
                            let mut again = Vec::new();
                            write_msg(&BgpMessage::Update(u.clone()), &mut again).unwrap();
                            assert_eq!(
                                again, buf,
                                "ibgp={ibgp} asn4={asn4} mp={v4_in_mp} {family}"
                            );
                            check_attrs(&u, &c, &attrs, family, prefixes.len());
                            // And our own scanner counts the same routes.
                            let mut b = BytesMut::from(&buf[..]);
                            let Received::Update(s) =
                                decode(&take_frame(&mut b).unwrap().unwrap()).unwrap()
                            else {
                                panic!()
                            };
                            assert_eq!(s.announced as usize, prefixes.len());
                            assert_eq!(s.malformed, None);
                        }
                    }
                }
            }
        }
    }

    fn check_attrs(u: &BgpUpdateMessage, c: &EncodeCtx, a: &RouteAttrs, family: Family, n: usize) {
        let mut nlri = u.nlri().len();
        let mut saw_lp = false;
        let mut path_len = 0;
        let mut last_code = 0u8;
        for pa in u.path_attributes() {
            let code = pa.path_attribute_type().map(u8::from).unwrap_or(255);
            assert!(code > last_code, "attributes in type-code order");
            last_code = code;
            match pa.value() {
                PathAttributeValue::AsPath(AsPath::As4PathSegments(s)) => {
                    path_len = s.iter().map(|s| s.as_numbers().len()).sum();
                    assert!(s
                        .iter()
                        .flat_map(|s| s.as_numbers())
                        .all(|&x| x == c.local_asn));
                }
                PathAttributeValue::AsPath(AsPath::As2PathSegments(s)) => {
                    path_len = s.iter().map(|s| s.as_numbers().len()).sum();
                }
                PathAttributeValue::LocalPreference(lp) => {
                    saw_lp = true;
                    assert_eq!(lp.metric(), a.local_pref.unwrap_or(100));
                }
                PathAttributeValue::MultiExitDiscriminator(m) => {
                    assert_eq!(Some(m.metric()), a.med)
                }
                PathAttributeValue::Communities(cs) => {
                    assert_eq!(cs.communities().len(), a.communities.len())
                }
                PathAttributeValue::LargeCommunities(cs) => {
                    assert_eq!(cs.communities().len(), a.large_communities.len())
                }
                PathAttributeValue::MpReach(MpReach::Ipv4Unicast { nlri: x, .. }) => {
                    assert_eq!(family, Family::Ipv4);
                    nlri += x.len()
                }
                PathAttributeValue::MpReach(MpReach::Ipv6Unicast {
                    nlri: x,
                    next_hop_global,
                    ..
                }) => {
                    assert_eq!(Some(*next_hop_global), c.next_hop_v6);
                    nlri += x.len()
                }
                _ => {}
            }
        }
        assert_eq!(nlri, n);
        assert_eq!(saw_lp, c.ibgp, "LOCAL_PREF only on iBGP");
        assert_eq!(path_len, a.prepend as usize + usize::from(!c.ibgp));
    }

    #[test]
    fn withdraw_and_eor_round_trip() {
        for v4_in_mp in [false, true] {
            let c = ctx(false, true, v4_in_mp);
            for (family, p) in [
                (Family::Ipv4, "203.0.113.0/24".parse::<IpNet>().unwrap()),
                (Family::Ipv6, "2001:db8:1::/48".parse().unwrap()),
            ] {
                let mut buf = Vec::new();
                encode_withdraw(&c, family, &[p, p], &mut buf).unwrap();
                assert_eq!(buf.len(), withdraw_overhead(&c, family) + 2 * nlri_len(&p));
                let mut b = BytesMut::from(&buf[..]);
                let Received::Update(s) = decode(&take_frame(&mut b).unwrap().unwrap()).unwrap()
                else {
                    panic!()
                };
                assert_eq!((s.withdrawn, s.announced), (2, 0));
                let mut e = Vec::new();
                encode_end_of_rib(family, &mut e).unwrap();
                assert_eq!(parse(&e, true).end_of_rib(), Some(family.address_type()));
                let mut b = BytesMut::from(&e[..]);
                let Received::Update(s) = decode(&take_frame(&mut b).unwrap().unwrap()).unwrap()
                else {
                    panic!()
                };
                assert_eq!(s.end_of_rib, Some(family));
            }
        }
    }

    #[test]
    fn two_octet_peer_gets_as_trans_and_as4_path() {
        let mut c = ctx(false, false, false);
        c.local_asn = 4_200_000_010;
        let mut buf = Vec::new();
        let p: IpNet = "203.0.113.0/24".parse().unwrap();
        encode_announce(
            &c,
            &RouteAttrs {
                prepend: 2,
                ..Default::default()
            },
            Family::Ipv4,
            &[p],
            &mut buf,
        )
        .unwrap();
        let u = parse(&buf, false);
        let mut saw = (false, false);
        for pa in u.path_attributes() {
            match pa.value() {
                PathAttributeValue::AsPath(AsPath::As2PathSegments(s)) => {
                    assert_eq!(s[0].as_numbers(), &[AS_TRANS; 3]);
                    saw.0 = true;
                }
                PathAttributeValue::As4Path(p) => {
                    assert_eq!(p.segments()[0].as_numbers(), &[4_200_000_010; 3]);
                    saw.1 = true;
                }
                _ => {}
            }
        }
        assert_eq!(saw, (true, true));
    }
}
