//! How a session ends on purpose: what is sent, in which order, and which
//! NOTIFICATION, when the process stops (SIGTERM, per `bgp.shutdown`) or a
//! peer is removed or changed by a reload.
//!
//! The NOTIFICATION decides what the router does with our routes once
//! graceful restart (RFC 4724) is in play. Where both sides set the RFC 8538
//! "N" bit, *any* NOTIFICATION other than a Hard Reset keeps our routes as
//! stale for the restart time; so a stop that must remove the routes sends
//! its Cease wrapped in a Hard Reset (Cease subcode 9, the original code,
//! subcode and data inside), for the Cease subcodes RFC 8538 §5.1 marks
//! "Hard Reset": Maximum Number of Prefixes Reached (1), Administrative
//! Shutdown (2), Peer De-configured (3) — and Hard Reset itself. The others
//! (Administrative Reset, which RFC 8538 leaves to the operator,
//! Other Configuration Change, Connection Collision Resolution, ...) keep
//! graceful-restart behaviour: the router keeps our routes while the session
//! comes back.
//!
//! After the last message the connection is read until the peer closes it
//! (bounded by the stop deadline), so the kernel never answers late data
//! from the router with a TCP reset that would make it drop what it has not
//! read yet (our withdrawals, our NOTIFICATION). After a NOTIFICATION our
//! side sends no FIN until then: FRR acts on a FIN as soon as its I/O
//! thread reads it, ahead of the messages still queued for processing
//! (measured: with 100,000 withdrawals queued it processed ten UPDATEs,
//! saw the FIN and kept the other 95,000 routes stale for two minutes).
//! Without a NOTIFICATION (graceful restart without the N bit) the close
//! itself is the message: half-closed at once. That linger is carried out
//! by the peer driver ([`super::peer`]) and the socket task; this module
//! only decides.
//!
//! Pure: no I/O, no clock.

use super::codec::{err, Notification};
use crate::model::ShutdownMode;

/// What to send before the connection closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Withdraw every route of the Adj-RIB-Out first.
    pub withdraw_all: bool,
    /// The NOTIFICATION to send last; `None`: close without one.
    pub notification: Option<Notification>,
}

/// The process is stopping (SIGTERM) with `mode`; `established` tells
/// whether a session is up, `graceful_notification` whether both sides set
/// the RFC 8538 N bit. `message` is the RFC 8203 shutdown communication.
///
/// - `withdraw`: withdraw everything, then Cease / Administrative Shutdown
///   with the message — as a Hard Reset where the N bit was negotiated, so
///   nothing is left stale on the router.
/// - `graceful_restart`: withdraw nothing; where the N bit was negotiated
///   send the plain Cease (which keeps our routes stale for the restart
///   time), elsewhere close without a NOTIFICATION (a NOTIFICATION would
///   flush our routes, a closed TCP connection starts the router's
///   graceful-restart helper).
///
/// Without a session (OpenSent, OpenConfirm) there are no routes: the plain
/// Cease goes out.
pub fn on_shutdown(
    mode: ShutdownMode,
    established: bool,
    graceful_notification: bool,
    message: &str,
) -> Plan {
    let cease = Notification::cease_with_message(err::CEASE_ADMIN_SHUTDOWN, message);
    if !established {
        return Plan {
            withdraw_all: false,
            notification: Some(cease),
        };
    }
    match mode {
        ShutdownMode::Withdraw => Plan {
            withdraw_all: true,
            notification: Some(for_stop(cease, graceful_notification)),
        },
        ShutdownMode::GracefulRestart => Plan {
            withdraw_all: false,
            notification: graceful_notification.then_some(cease),
        },
    }
}

/// The NOTIFICATION for a stop with `n` (a peer removed: Cease 6/3; changed:
/// 6/6) on an established session: wrapped in a Hard Reset where the N bit
/// was negotiated and RFC 8538 asks for one, else `n` itself.
pub fn for_stop(n: Notification, graceful_notification: bool) -> Notification {
    if graceful_notification && hard_reset_suggested(&n) {
        hard_reset(&n)
    } else {
        n
    }
}

/// Whether RFC 8538 §5.1 suggests a Hard Reset for this NOTIFICATION.
pub fn hard_reset_suggested(n: &Notification) -> bool {
    n.code == err::CEASE
        && matches!(
            n.subcode,
            err::CEASE_MAX_PREFIXES
                | err::CEASE_ADMIN_SHUTDOWN
                | err::CEASE_PEER_DECONFIGURED
                | err::CEASE_HARD_RESET
        )
}

/// Wraps `inner` in a Cease / Hard Reset (RFC 8538 §3): its data is the
/// inner error code, subcode and data. A Hard Reset is not wrapped again.
pub fn hard_reset(inner: &Notification) -> Notification {
    if inner.code == err::CEASE && inner.subcode == err::CEASE_HARD_RESET {
        return inner.clone();
    }
    let mut data = Vec::with_capacity(2 + inner.data.len());
    data.push(inner.code);
    data.push(inner.subcode);
    data.extend_from_slice(&inner.data);
    Notification::new(err::CEASE, err::CEASE_HARD_RESET, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &str = "anypop shutting down";

    #[test]
    fn withdraw_mode_withdraws_then_hard_resets_where_n_bit() {
        let p = on_shutdown(ShutdownMode::Withdraw, true, true, MSG);
        assert!(p.withdraw_all);
        let n = p.notification.unwrap();
        assert_eq!((n.code, n.subcode), (6, 9));
        // The inner Cease 6/2 with its RFC 8203 text.
        assert_eq!(&n.data[..2], &[6, 2]);
        let inner = Notification::new(n.data[0], n.data[1], &n.data[2..]);
        assert_eq!(inner.shutdown_message().as_deref(), Some(MSG));
        // No N bit: the plain Cease (it flushes our routes anyway).
        let p = on_shutdown(ShutdownMode::Withdraw, true, false, MSG);
        assert!(p.withdraw_all);
        let n = p.notification.unwrap();
        assert_eq!((n.code, n.subcode), (6, 2));
        assert_eq!(n.shutdown_message().as_deref(), Some(MSG));
    }

    #[test]
    fn graceful_restart_mode_keeps_routes() {
        let p = on_shutdown(ShutdownMode::GracefulRestart, true, true, MSG);
        assert!(!p.withdraw_all);
        let n = p.notification.unwrap();
        assert_eq!(
            (n.code, n.subcode),
            (6, 2),
            "plain Cease: routes stay stale"
        );
        let p = on_shutdown(ShutdownMode::GracefulRestart, true, false, MSG);
        assert_eq!(
            p,
            Plan {
                withdraw_all: false,
                notification: None
            },
            "without the N bit only a bare close keeps the routes"
        );
    }

    #[test]
    fn without_a_session_the_plain_cease() {
        for mode in [ShutdownMode::Withdraw, ShutdownMode::GracefulRestart] {
            for n_bit in [false, true] {
                let p = on_shutdown(mode, false, n_bit, MSG);
                assert!(!p.withdraw_all);
                assert_eq!(p.notification.map(|n| (n.code, n.subcode)), Some((6, 2)));
            }
        }
    }

    #[test]
    fn stop_notifications_follow_rfc_8538() {
        let deconfigured = Notification::new(err::CEASE, err::CEASE_PEER_DECONFIGURED, []);
        assert_eq!(
            for_stop(deconfigured.clone(), true),
            Notification::new(6, 9, [6, 3])
        );
        assert_eq!(for_stop(deconfigured.clone(), false), deconfigured);
        // A changed peer comes back: the router may keep our routes.
        let changed = Notification::new(err::CEASE, err::CEASE_OTHER_CONFIG_CHANGE, []);
        assert_eq!(for_stop(changed.clone(), true), changed);
        for sub in [1, 2, 3, 9] {
            assert!(hard_reset_suggested(&Notification::new(6, sub, [])));
        }
        for sub in [0, 4, 5, 6, 7, 8, 10] {
            assert!(!hard_reset_suggested(&Notification::new(6, sub, [])));
        }
        assert!(!hard_reset_suggested(&Notification::new(4, 0, [])));
        // Never wrapped twice.
        let hr = hard_reset(&deconfigured);
        assert_eq!(hard_reset(&hr), hr);
    }
}
