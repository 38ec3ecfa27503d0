//! Decoding of one framed message into a [`Received`] value: OPEN through
//! netgauze-bgp-pkt's parser (capabilities included), UPDATEs by our own
//! scanner that counts routes without storing them (RFC 4271 §6.3 with the
//! RFC 7606 revisions; an attribute type is "recognized" when IANA assigned
//! it), the rest by hand (they are a few fixed fields).
//!
//! Must not decide what to do about a message; errors are the
//! [`Notification`] the caller sends.

use bytes::Buf;
use netgauze_bgp_pkt::capabilities::BgpCapability;
use netgauze_bgp_pkt::iana::PathAttributeType;
use netgauze_bgp_pkt::wire::deserializer::BgpParsingContext;
use netgauze_bgp_pkt::BgpMessage;
use netgauze_parse_utils::reader::SliceReader;
use netgauze_parse_utils::traits::ParseFromWithOneInput;

use super::message::{
    err, Family, Notification, PeerGracefulRestart, PeerOpen, Received, UpdateSummary, HEADER_LEN,
    MSG_KEEPALIVE, MSG_NOTIFICATION, MSG_OPEN, MSG_ROUTE_REFRESH, MSG_UPDATE,
};

/// Decodes one framed message (as returned by [`super::take_frame`]).
pub fn decode(frame: &[u8]) -> Result<Received, Notification> {
    // take_frame already checked these; re-check so any slice is safe.
    let min = match frame.get(18) {
        Some(&MSG_OPEN) => 29,
        Some(&MSG_UPDATE) => 23,
        Some(&MSG_NOTIFICATION) => 21,
        Some(&MSG_ROUTE_REFRESH) => 23,
        _ => HEADER_LEN,
    };
    if frame.len() < min {
        return Err(Notification::new(
            err::HEADER,
            err::BAD_MESSAGE_LENGTH,
            (frame.len() as u16).to_be_bytes(),
        ));
    }
    let body = &frame[HEADER_LEN..];
    match frame[18] {
        MSG_OPEN => decode_open(frame).map(Received::Open),
        MSG_UPDATE => scan_update(body).map(Received::Update),
        MSG_NOTIFICATION => Ok(Received::Notification(Notification::new(
            body[0],
            body[1],
            &body[2..],
        ))),
        MSG_KEEPALIVE => Ok(Received::Keepalive),
        MSG_ROUTE_REFRESH => Ok(Received::RouteRefresh {
            afi: u16::from_be_bytes([body[0], body[1]]),
            subtype: body[2],
            safi: body[3],
        }),
        t => Err(Notification::new(err::HEADER, err::BAD_MESSAGE_TYPE, [t])),
    }
}

fn decode_open(frame: &[u8]) -> Result<PeerOpen, Notification> {
    let body = &frame[HEADER_LEN..];
    // Version first: an unsupported version gets its own subcode with the
    // highest version we support as data.
    if body[0] != 4 {
        return Err(Notification::new(
            err::OPEN,
            err::UNSUPPORTED_VERSION,
            4u16.to_be_bytes(),
        ));
    }
    // Hold time 1 or 2: its own subcode with the hold time as data (RFC
    // 4271 §6.2), not the parser's generic OPEN error.
    let hold_time = u16::from_be_bytes([body[3], body[4]]);
    if hold_time == 1 || hold_time == 2 {
        return Err(Notification::new(
            err::OPEN,
            err::UNACCEPTABLE_HOLD_TIME,
            hold_time.to_be_bytes(),
        ));
    }
    let mut ctx = BgpParsingContext::default();
    let msg = BgpMessage::parse(&mut SliceReader::new(frame), &mut ctx)
        .map_err(|e| Notification::new(err::OPEN, 0, format!("{e}").into_bytes()))?;
    let BgpMessage::Open(open) = msg else {
        return Err(Notification::new(err::OPEN, 0, []));
    };
    let mut out = PeerOpen {
        version: open.version(),
        my_as: open.my_as(),
        asn4: None,
        hold_time: open.hold_time(),
        bgp_id: open.bgp_id(),
        families: Vec::new(),
        mp_sent: false,
        route_refresh: false,
        graceful_restart: None,
    };
    for cap in open.capabilities() {
        match cap {
            BgpCapability::FourOctetAs(c) => out.asn4 = Some(c.asn4()),
            BgpCapability::MultiProtocolExtensions(c) => {
                out.mp_sent = true;
                if let Some(f) = Family::from_address_type(c.address_type()) {
                    if !out.families.contains(&f) {
                        out.families.push(f);
                    }
                }
            }
            BgpCapability::RouteRefresh | BgpCapability::CiscoRouteRefresh => {
                out.route_refresh = true
            }
            BgpCapability::GracefulRestartCapability(gr) => {
                out.graceful_restart = Some(PeerGracefulRestart {
                    restart_time: gr.time(),
                    restarted: gr.restart(),
                    notification: gr.graceful_notification(),
                    families: gr
                        .address_families()
                        .iter()
                        .filter_map(|af| {
                            Family::from_address_type(af.address_type())
                                .map(|f| (f, af.forwarding_state()))
                        })
                        .collect(),
                })
            }
            _ => {}
        }
    }
    if !out.mp_sent {
        out.families.push(Family::Ipv4);
    }
    Ok(out)
}

/// Walks an UPDATE body, counting routes without storing them (RFC 4271
/// §6.3 with RFC 7606 revisions).
pub fn scan_update(body: &[u8]) -> Result<UpdateSummary, Notification> {
    let malformed_list = || Notification::new(err::UPDATE, err::MALFORMED_ATTRIBUTE_LIST, []);
    let mut b = body;
    if b.len() < 4 {
        return Err(malformed_list());
    }
    let wlen = b.get_u16() as usize;
    if b.len() < wlen + 2 {
        return Err(malformed_list());
    }
    let withdrawn_field = &b[..wlen];
    b.advance(wlen);
    let alen = b.get_u16() as usize;
    if b.len() < alen {
        return Err(malformed_list());
    }
    let attrs = &b[..alen];
    let nlri = &b[alen..];
    let mut sum = UpdateSummary {
        withdrawn: count_prefixes(withdrawn_field, 32)
            .ok_or_else(|| Notification::new(err::UPDATE, err::INVALID_NETWORK_FIELD, []))?,
        announced: count_prefixes(nlri, 32)
            .ok_or_else(|| Notification::new(err::UPDATE, err::INVALID_NETWORK_FIELD, []))?,
        ..Default::default()
    };
    if wlen == 0 && alen == 0 && nlri.is_empty() {
        sum.end_of_rib = Some(Family::Ipv4);
        return Ok(sum);
    }
    // Attributes. RFC 7606 §4: if an attribute's length overruns the
    // attribute field, the attribute list is malformed; the NLRI can still
    // be located (it follows the field), so treat-as-withdraw applies.
    let mut a = attrs;
    let mut seen_mp_reach = false;
    let mut seen_mp_unreach = false;
    let mut mp_unreach_only: Option<Family> = None;
    let mut attr_count = 0;
    while !a.is_empty() {
        if a.len() < 3 {
            sum.malformed = Some("truncated attribute header".into());
            break;
        }
        let flags = a[0];
        let code = a[1];
        let (len, hdr) = if flags & 0x10 != 0 {
            if a.len() < 4 {
                sum.malformed = Some("truncated attribute header".into());
                break;
            }
            (u16::from_be_bytes([a[2], a[3]]) as usize, 4)
        } else {
            (a[2] as usize, 3)
        };
        if a.len() < hdr + len {
            sum.malformed = Some(format!(
                "attribute {code} length {len} overruns the attribute list"
            ));
            break;
        }
        let value = &a[hdr..hdr + len];
        attr_count += 1;
        // RFC 4271 §6.3 (RFC 7606 keeps it): a well-known attribute (optional
        // bit clear) of a type we do not know ends the session with 3/2 and
        // the attribute (type, length and value) as data.
        if flags & 0x80 == 0 && PathAttributeType::try_from(code).is_err() {
            return Err(Notification::new(
                err::UPDATE,
                err::UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE,
                &a[..hdr + len],
            ));
        }
        match code {
            // RFC 7606 §7: fixed-length well-known attributes with a wrong
            // length are treat-as-withdraw.
            1 if len != 1 => sum.malformed = Some(format!("ORIGIN length {len}")),
            3 if len != 4 => sum.malformed = Some(format!("NEXT_HOP length {len}")),
            4 if len != 4 => sum.malformed = Some(format!("MULTI_EXIT_DISC length {len}")),
            5 if len != 4 => sum.malformed = Some(format!("LOCAL_PREF length {len}")),
            8 if len % 4 != 0 => sum.malformed = Some(format!("COMMUNITIES length {len}")),
            32 if len % 12 != 0 => sum.malformed = Some(format!("LARGE_COMMUNITY length {len}")),
            14 => {
                if std::mem::replace(&mut seen_mp_reach, true) {
                    // RFC 7606 §3(g): a repeated MP_REACH resets the session.
                    return Err(malformed_list());
                }
                // RFC 7606 §7.11: a malformed MP_REACH means the NLRI cannot
                // be located: session reset.
                sum.announced += count_mp_reach(value).ok_or_else(|| {
                    Notification::new(err::UPDATE, err::OPTIONAL_ATTRIBUTE_ERROR, [])
                })?;
            }
            15 => {
                if value.len() < 3 {
                    return Err(Notification::new(
                        err::UPDATE,
                        err::OPTIONAL_ATTRIBUTE_ERROR,
                        [],
                    ));
                }
                if std::mem::replace(&mut seen_mp_unreach, true) {
                    // RFC 7606 §3(g): a repeated MP_UNREACH resets the session.
                    return Err(malformed_list());
                }
                let afi = u16::from_be_bytes([value[0], value[1]]);
                let n = match prefix_bits(afi, value[2]) {
                    Some(bits) => count_prefixes(&value[3..], bits).ok_or_else(|| {
                        Notification::new(err::UPDATE, err::OPTIONAL_ATTRIBUTE_ERROR, [])
                    })?,
                    None => 0,
                };
                sum.withdrawn += n;
                if n == 0 {
                    mp_unreach_only = Family::from_afi_safi(afi, value[2]);
                }
            }
            _ => {}
        }
        a = &a[hdr + len..];
    }
    if attr_count == 1 && !seen_mp_reach && wlen == 0 && nlri.is_empty() {
        sum.end_of_rib = mp_unreach_only;
    }
    Ok(sum)
}

/// Counts prefixes in an NLRI field; `None` if malformed.
fn count_prefixes(mut b: &[u8], max_bits: u8) -> Option<u32> {
    let mut n = 0u32;
    while let Some((&bits, rest)) = b.split_first() {
        if bits > max_bits {
            return None;
        }
        let bytes = bits.div_ceil(8) as usize;
        if rest.len() < bytes {
            return None;
        }
        b = &rest[bytes..];
        n += 1;
    }
    Some(n)
}

/// Maximum prefix length for the prefix-encoded (unicast/multicast)
/// AFI/SAFIs; `None` for others, whose NLRI we neither parse nor count.
fn prefix_bits(afi: u16, safi: u8) -> Option<u8> {
    match (afi, safi) {
        (1, 1 | 2) => Some(32),
        (2, 1 | 2) => Some(128),
        _ => None,
    }
}

fn count_mp_reach(v: &[u8]) -> Option<u32> {
    if v.len() < 5 {
        return None;
    }
    let afi = u16::from_be_bytes([v[0], v[1]]);
    let nh_len = v[3] as usize;
    let rest = v.get(4 + nh_len..)?;
    let (_reserved, nlri) = rest.split_first()?;
    match prefix_bits(afi, v[2]) {
        Some(bits) => count_prefixes(nlri, bits),
        None => Some(0),
    }
}

#[cfg(test)]
mod tests {
    use super::super::encode::encode_open;
    use super::super::frame::take_frame;
    use super::super::frame::tests::{frame_of, header};
    use super::super::message::LocalOpen;
    use super::*;
    use bytes::BytesMut;
    use std::net::Ipv4Addr;

    #[test]
    fn truncated_update_is_malformed_attribute_list() {
        // Withdrawn length says 10 bytes but the body has only 2 more.
        let body = [0u8, 10, 24, 192];
        assert_eq!(
            scan_update(&body).unwrap_err().subcode,
            err::MALFORMED_ATTRIBUTE_LIST
        );
        // Attribute length field larger than the remaining body.
        let body = [0u8, 0, 0, 40, 0x40, 1, 1, 0];
        assert_eq!(
            scan_update(&body).unwrap_err().subcode,
            err::MALFORMED_ATTRIBUTE_LIST
        );
    }

    #[test]
    fn wrong_attribute_length_is_treat_as_withdraw() {
        // ORIGIN with length 2, AS_PATH empty, NEXT_HOP, one NLRI.
        let attrs = [0x40u8, 1, 2, 0, 0, 0x40, 2, 0, 0x40, 3, 4, 192, 0, 2, 1];
        let mut body = vec![0, 0, 0, attrs.len() as u8];
        body.extend_from_slice(&attrs);
        body.extend_from_slice(&[24, 203, 0, 113]);
        let s = scan_update(&body).unwrap();
        assert_eq!(s.announced, 1);
        assert!(s.malformed.unwrap().contains("ORIGIN"));
        // An attribute overrunning the attribute list: also treat-as-withdraw.
        let body = [0u8, 0, 0, 4, 0x40, 1, 9, 0, 24, 203, 0, 113];
        let s = scan_update(&body).unwrap();
        assert!(s.malformed.is_some());
        assert_eq!(s.announced, 1);
    }

    #[test]
    fn unrecognized_well_known_attribute_is_3_2_with_the_attribute() {
        // ORIGIN, AS_PATH, NEXT_HOP, then type 99 with the optional bit
        // clear (0x40: well-known, transitive), one NLRI.
        let unknown = [0x40u8, 99, 2, 0xab, 0xcd];
        let mut attrs = vec![0x40u8, 1, 1, 0, 0x40, 2, 0, 0x40, 3, 4, 192, 0, 2, 1];
        attrs.extend_from_slice(&unknown);
        let mut body = vec![0, 0, 0, attrs.len() as u8];
        body.extend_from_slice(&attrs);
        body.extend_from_slice(&[24, 203, 0, 113]);
        let e = scan_update(&body).unwrap_err();
        assert_eq!((e.code, e.subcode), (3, 2));
        assert_eq!(e.data, unknown, "the attribute is the data");
        // Extended length: the data keeps the 2-byte length.
        let unknown_ext = [0x50u8, 99, 0, 1, 7];
        let body = [&[0u8, 0, 0, 5][..], &unknown_ext].concat();
        let e = scan_update(&body).unwrap_err();
        assert_eq!((e.code, e.subcode, e.data), (3, 2, unknown_ext.to_vec()));
        // The same type as optional (0xc0): ignored (optional transitive).
        let body = [0u8, 0, 0, 5, 0xc0, 99, 2, 0xab, 0xcd];
        assert!(scan_update(&body).is_ok());
        // Known well-known and optional types sent with the optional bit
        // clear are not "unrecognized".
        for code in [1u8, 2, 5, 6, 8, 16, 32] {
            let body = [0u8, 0, 0, 3, 0x40, code, 0];
            assert!(
                scan_update(&body).map_or_else(|e| e.subcode != 2, |_| true),
                "type {code}"
            );
        }
    }

    #[test]
    fn repeated_mp_reach_resets_and_unknown_afi_is_ignored() {
        // Two empty MP_UNREACH (IPv6): malformed attribute list.
        let body = [0u8, 0, 0, 12, 0x80, 15, 3, 0, 2, 1, 0x80, 15, 3, 0, 2, 1];
        assert_eq!(
            scan_update(&body).unwrap_err().subcode,
            err::MALFORMED_ATTRIBUTE_LIST
        );
        // MP_REACH for L2VPN/EVPN (25/70) with opaque NLRI: not counted, no error.
        let body = [
            0u8, 0, 0, 14, 0x80, 14, 11, 0, 25, 70, 4, 192, 0, 2, 1, 0, 2, 200,
        ];
        let s = scan_update(&body).unwrap();
        assert_eq!((s.announced, s.malformed), (0, None));
    }

    #[test]
    fn bad_nlri_prefix_length_is_invalid_network_field() {
        let body = [0u8, 0, 0, 0, 33, 1, 2, 3, 4, 5];
        assert_eq!(
            scan_update(&body).unwrap_err().subcode,
            err::INVALID_NETWORK_FIELD
        );
    }

    #[test]
    fn end_of_rib_detection() {
        assert_eq!(
            scan_update(&[0, 0, 0, 0]).unwrap().end_of_rib,
            Some(Family::Ipv4)
        );
        let body = [0u8, 0, 0, 6, 0x80, 15, 3, 0, 2, 1];
        assert_eq!(scan_update(&body).unwrap().end_of_rib, Some(Family::Ipv6));
    }

    proptest::proptest! {
        /// Arbitrary bytes after a valid header never panic the decoder.
        #[test]
        fn random_input_never_panics(typ in 1u8..=5, body in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let mut m = header((HEADER_LEN + body.len()) as u16, typ);
            m.extend_from_slice(&body);
            if let Ok(Some(f)) = frame_of(&m) {
                let _ = decode(&f);
            }
            let _ = decode(&body);
            let _ = scan_update(&body);
        }

        /// OPENs with random optional parameters never panic netgauze's
        /// parser or ours.
        #[test]
        fn random_open_parameters_never_panic(params in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            // One capabilities parameter (type 2) with random contents.
            let mut body = vec![4u8, 0xfd, 0xe9, 0, 9, 192, 0, 2, 1, params.len() as u8 + 2, 2, params.len() as u8];
            body.extend_from_slice(&params);
            let mut m = header((HEADER_LEN + body.len()) as u16, MSG_OPEN);
            m.extend_from_slice(&body);
            if let Ok(Some(f)) = frame_of(&m) {
                let _ = decode(&f);
            }
        }

        /// Random bytes as a stream never panic the framer.
        #[test]
        fn random_stream_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..100)) {
            let mut b = BytesMut::from(&bytes[..]);
            while let Ok(Some(f)) = take_frame(&mut b) {
                let _ = decode(&f);
            }
        }
    }

    fn open_bytes(hold_time: u16) -> Vec<u8> {
        encode_open(&LocalOpen {
            asn: 65001,
            hold_time,
            bgp_id: Ipv4Addr::new(192, 0, 2, 1),
            families: vec![Family::Ipv4],
            graceful_restart: None,
            restarted: false,
        })
        .unwrap()
    }

    #[test]
    fn unsupported_version() {
        let mut bytes = open_bytes(9);
        bytes[19] = 3;
        let e = decode(&frame_of(&bytes).unwrap().unwrap()).unwrap_err();
        assert_eq!((e.code, e.subcode, e.data), (2, 1, vec![0, 4]));
    }

    #[test]
    fn hold_time_one_or_two_is_unacceptable_hold_time() {
        // RFC 4271 §6.2: 2/6 with the offending hold time as data.
        for hold in [1u16, 2] {
            let bytes = open_bytes(hold);
            let e = decode(&frame_of(&bytes).unwrap().unwrap()).unwrap_err();
            assert_eq!(
                (e.code, e.subcode, e.data),
                (2, 6, hold.to_be_bytes().to_vec())
            );
        }
        for hold in [0u16, 3, 65535] {
            let Ok(Received::Open(o)) = decode(&frame_of(&open_bytes(hold)).unwrap().unwrap())
            else {
                panic!("hold time {hold} refused");
            };
            assert_eq!(o.hold_time, hold);
        }
    }
}
