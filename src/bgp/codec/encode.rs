//! Encoding of the non-UPDATE messages we send: OPEN (with our
//! capabilities), KEEPALIVE, NOTIFICATION and ROUTE-REFRESH. Built as
//! netgauze-bgp-pkt values and serialized by it, so a field we get wrong is
//! caught by its types rather than by a router.
//!
//! Must not decide what to send; the FSM and the peer driver do.

use netgauze_bgp_pkt::capabilities::{
    BgpCapability, FourOctetAsCapability, GracefulRestartAddressFamily, GracefulRestartCapability,
    MultiProtocolExtensionsCapability,
};
use netgauze_bgp_pkt::notification::{
    BgpNotificationMessage, CeaseError, FiniteStateMachineError, HoldTimerExpiredError,
    MessageHeaderError, OpenMessageError, RouteRefreshError, UpdateMessageError,
};
use netgauze_bgp_pkt::open::{BgpOpenMessage, BgpOpenMessageParameter};
use netgauze_bgp_pkt::route_refresh::BgpRouteRefreshMessage;
use netgauze_bgp_pkt::BgpMessage;
use netgauze_parse_utils::WritablePdu;

use super::message::{Family, LocalOpen, Notification, AS_TRANS, MSG_KEEPALIVE};

/// Errors while encoding our own messages (a bug, never peer input).
#[derive(Debug, thiserror::Error)]
#[error("encoding BGP {what}: {detail}")]
pub struct EncodeError {
    pub what: &'static str,
    pub detail: String,
}

pub(crate) fn write_msg(msg: &BgpMessage, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    msg.write(out).map_err(|e| EncodeError {
        what: "message",
        detail: format!("{e:?}"),
    })
}

/// Encodes our OPEN.
pub fn encode_open(o: &LocalOpen) -> Result<Vec<u8>, EncodeError> {
    let mut caps: Vec<BgpCapability> = o
        .families
        .iter()
        .map(|f| {
            BgpCapability::MultiProtocolExtensions(MultiProtocolExtensionsCapability::new(
                f.address_type(),
            ))
        })
        .collect();
    caps.push(BgpCapability::RouteRefresh);
    caps.push(BgpCapability::FourOctetAs(FourOctetAsCapability::new(
        o.asn,
    )));
    if let Some(time) = o.graceful_restart {
        caps.push(BgpCapability::GracefulRestartCapability(
            GracefulRestartCapability::new(
                o.restarted,
                // RFC 8538 N bit: a NOTIFICATION (other than Hard Reset) keeps
                // the routes stale instead of flushing them.
                true,
                time.min(4095),
                o.families
                    .iter()
                    .map(|f| GracefulRestartAddressFamily::new(true, f.address_type()))
                    .collect::<Vec<_>>(),
            ),
        ));
    }
    let my_as = u16::try_from(o.asn).unwrap_or(AS_TRANS);
    let msg = BgpMessage::Open(BgpOpenMessage::new(
        my_as,
        o.hold_time,
        o.bgp_id,
        vec![BgpOpenMessageParameter::new_capabilities(caps)],
    ));
    let mut out = Vec::with_capacity(128);
    write_msg(&msg, &mut out)?;
    Ok(out)
}

pub fn encode_keepalive() -> Vec<u8> {
    let mut out = vec![0xff; 16];
    out.extend_from_slice(&19u16.to_be_bytes());
    out.push(MSG_KEEPALIVE);
    out
}

/// Encodes a NOTIFICATION through netgauze's typed representation.
pub fn encode_notification(n: &Notification) -> Result<Vec<u8>, EncodeError> {
    let value: Box<[u8]> = n.data.clone().into();
    let m =
        match (n.code, n.subcode) {
            (1, 1) => BgpNotificationMessage::MessageHeaderError(
                MessageHeaderError::ConnectionNotSynchronized { value },
            ),
            (1, 2) => {
                BgpNotificationMessage::MessageHeaderError(MessageHeaderError::BadMessageLength {
                    value,
                })
            }
            (1, 3) => {
                BgpNotificationMessage::MessageHeaderError(MessageHeaderError::BadMessageType {
                    value,
                })
            }
            (1, _) => {
                BgpNotificationMessage::MessageHeaderError(MessageHeaderError::Unspecific { value })
            }
            (2, 1) => BgpNotificationMessage::OpenMessageError(
                OpenMessageError::UnsupportedVersionNumber { value },
            ),
            (2, 2) => {
                BgpNotificationMessage::OpenMessageError(OpenMessageError::BadPeerAs { value })
            }
            (2, 3) => {
                BgpNotificationMessage::OpenMessageError(OpenMessageError::BadBgpIdentifier {
                    value,
                })
            }
            (2, 4) => BgpNotificationMessage::OpenMessageError(
                OpenMessageError::UnsupportedOptionalParameter { value },
            ),
            (2, 6) => {
                BgpNotificationMessage::OpenMessageError(OpenMessageError::UnacceptableHoldTime {
                    value,
                })
            }
            (2, 7) => {
                BgpNotificationMessage::OpenMessageError(OpenMessageError::UnsupportedCapability {
                    value,
                })
            }
            (2, _) => {
                BgpNotificationMessage::OpenMessageError(OpenMessageError::Unspecific { value })
            }
            (3, 1) => BgpNotificationMessage::UpdateMessageError(
                UpdateMessageError::MalformedAttributeList { value },
            ),
            (3, 2) => BgpNotificationMessage::UpdateMessageError(
                UpdateMessageError::UnrecognizedWellKnownAttribute { value },
            ),
            (3, 9) => BgpNotificationMessage::UpdateMessageError(
                UpdateMessageError::OptionalAttributeError { value },
            ),
            (3, 10) => BgpNotificationMessage::UpdateMessageError(
                UpdateMessageError::InvalidNetworkField { value },
            ),
            (3, _) => {
                BgpNotificationMessage::UpdateMessageError(UpdateMessageError::Unspecific { value })
            }
            (4, s) => {
                BgpNotificationMessage::HoldTimerExpiredError(HoldTimerExpiredError::Unspecific {
                    sub_code: s,
                    value,
                })
            }
            (5, 1) => BgpNotificationMessage::FiniteStateMachineError(
                FiniteStateMachineError::ReceiveUnexpectedMessageInOpenSentState { value },
            ),
            (5, 2) => BgpNotificationMessage::FiniteStateMachineError(
                FiniteStateMachineError::ReceiveUnexpectedMessageInOpenConfirmState { value },
            ),
            (5, 3) => BgpNotificationMessage::FiniteStateMachineError(
                FiniteStateMachineError::ReceiveUnexpectedMessageInEstablishedState { value },
            ),
            (5, _) => BgpNotificationMessage::FiniteStateMachineError(
                FiniteStateMachineError::Unspecific { value },
            ),
            (6, s) => BgpNotificationMessage::CeaseError(match s {
                1 => CeaseError::MaximumNumberOfPrefixesReached { value },
                3 => CeaseError::PeerDeConfigured { value },
                4 => CeaseError::AdministrativeReset { value },
                5 => CeaseError::ConnectionRejected { value },
                6 => CeaseError::OtherConfigurationChange { value },
                7 => CeaseError::ConnectionCollisionResolution { value },
                8 => CeaseError::OutOfResources { value },
                9 => CeaseError::HardReset { value },
                10 => CeaseError::BfdDown { value },
                _ => CeaseError::AdministrativeShutdown { value },
            }),
            (7, _) => {
                BgpNotificationMessage::RouteRefreshError(RouteRefreshError::InvalidMessageLength {
                    value,
                })
            }
            _ => BgpNotificationMessage::CeaseError(CeaseError::AdministrativeReset { value }),
        };
    let mut out = Vec::with_capacity(21 + n.data.len());
    write_msg(&BgpMessage::Notification(m), &mut out)?;
    Ok(out)
}

/// Encodes a ROUTE-REFRESH request for `family` (normal request).
pub fn encode_route_refresh(family: Family) -> Result<Vec<u8>, EncodeError> {
    let msg = BgpMessage::RouteRefresh(BgpRouteRefreshMessage::new(
        family.address_type(),
        netgauze_bgp_pkt::iana::RouteRefreshSubcode::NormalRequest,
    ));
    let mut out = Vec::with_capacity(23);
    write_msg(&msg, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::decode::decode;
    use super::super::frame::tests::frame_of;
    use super::super::message::{err, Received};
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn open_round_trips_with_capabilities() {
        let local = LocalOpen {
            asn: 4_200_000_001,
            hold_time: 90,
            bgp_id: Ipv4Addr::new(192, 0, 2, 9),
            families: vec![Family::Ipv4, Family::Ipv6],
            graceful_restart: Some(120),
            restarted: true,
        };
        let bytes = encode_open(&local).unwrap();
        let frame = frame_of(&bytes).unwrap().unwrap();
        let Received::Open(o) = decode(&frame).unwrap() else {
            panic!("not an OPEN")
        };
        assert_eq!(o.my_as, AS_TRANS);
        assert_eq!(o.asn(), 4_200_000_001);
        assert_eq!(o.hold_time, 90);
        assert_eq!(o.bgp_id, Ipv4Addr::new(192, 0, 2, 9));
        assert_eq!(o.families, vec![Family::Ipv4, Family::Ipv6]);
        assert!(o.route_refresh);
        let gr = o.graceful_restart.unwrap();
        assert_eq!(gr.restart_time, 120);
        assert!(gr.restarted && gr.notification);
        assert_eq!(
            gr.families,
            vec![(Family::Ipv4, true), (Family::Ipv6, true)]
        );
    }

    #[test]
    fn notification_round_trip_and_shutdown_message() {
        let n = Notification::cease_with_message(err::CEASE_ADMIN_SHUTDOWN, "maintenance ✓");
        let bytes = encode_notification(&n).unwrap();
        let Received::Notification(back) = decode(&frame_of(&bytes).unwrap().unwrap()).unwrap()
        else {
            panic!("not a notification")
        };
        assert_eq!(back, n);
        assert_eq!(back.shutdown_message().as_deref(), Some("maintenance ✓"));
        let long = "é".repeat(200);
        let n = Notification::cease_with_message(err::CEASE_ADMIN_SHUTDOWN, &long);
        assert!(n.data[0] as usize <= 255 && n.shutdown_message().is_some());
        for (code, sub) in [
            (1, 1),
            (1, 2),
            (1, 3),
            (2, 1),
            (2, 2),
            (2, 6),
            (3, 1),
            (3, 2),
            (3, 9),
            (3, 10),
            (4, 0),
            (5, 1),
            (5, 2),
            (5, 3),
            (6, 7),
        ] {
            let n = Notification::new(code, sub, [1, 2]);
            let bytes = encode_notification(&n).unwrap();
            let Received::Notification(back) = decode(&frame_of(&bytes).unwrap().unwrap()).unwrap()
            else {
                panic!("not a notification")
            };
            assert_eq!(back, n);
        }
    }

    #[test]
    fn hard_reset_round_trip_shows_the_inner_cease() {
        let inner = Notification::cease_with_message(err::CEASE_ADMIN_SHUTDOWN, "bye");
        let mut data = vec![6, 2];
        data.extend_from_slice(&inner.data);
        let n = Notification::new(err::CEASE, err::CEASE_HARD_RESET, data);
        let bytes = encode_notification(&n).unwrap();
        assert_eq!(&bytes[19..23], &[6, 9, 6, 2]);
        let Received::Notification(back) = decode(&frame_of(&bytes).unwrap().unwrap()).unwrap()
        else {
            panic!("not a notification")
        };
        assert_eq!(back, n);
        assert_eq!(back.hard_reset_inner(), Some(inner));
        assert_eq!(back.shutdown_message().as_deref(), Some("bye"));
        assert_eq!(
            back.to_string(),
            "cease / hard reset (6/9) of cease / administrative shutdown (6/2): \"bye\""
        );
        // Too short to carry an inner NOTIFICATION.
        assert_eq!(Notification::new(6, 9, [6]).hard_reset_inner(), None);
    }

    #[test]
    fn route_refresh_round_trip() {
        let bytes = encode_route_refresh(Family::Ipv6).unwrap();
        assert_eq!(
            decode(&frame_of(&bytes).unwrap().unwrap()).unwrap(),
            Received::RouteRefresh {
                afi: 2,
                safi: 1,
                subtype: 0
            }
        );
    }
}
