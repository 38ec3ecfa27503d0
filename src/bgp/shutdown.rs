//! How a session ends on purpose: what is sent, in which order, and which
//! NOTIFICATION, when the process stops (SIGTERM, per `bgp.shutdown`).
//!
//! The NOTIFICATION decides what the router does with our routes once
//! graceful restart (RFC 4724) is in play: where both sides set the RFC 8538
//! "N" bit, a NOTIFICATION (other than Hard Reset) keeps our routes as stale
//! for the restart time; without it a NOTIFICATION flushes them and only a
//! closed TCP connection keeps them.
//!
//! After the last message the connection is half-closed and read until the
//! peer closes it (bounded), so the kernel never answers unread data with a
//! TCP reset that would make the router drop what it has not read yet (our
//! withdrawals, our NOTIFICATION). That linger is carried out by the peer
//! driver ([`super::peer`]) and the socket task; this module only decides.
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
///   with the message.
/// - `graceful_restart`: withdraw nothing; where the N bit was negotiated
///   send the Cease (which keeps our routes stale for the restart time),
///   elsewhere close without a NOTIFICATION (a NOTIFICATION would flush our
///   routes, a closed TCP connection starts the router's graceful-restart
///   helper).
///
/// Without a session (OpenSent, OpenConfirm) there are no routes: the Cease
/// goes out.
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
            notification: Some(cease),
        },
        ShutdownMode::GracefulRestart => Plan {
            withdraw_all: false,
            notification: graceful_notification.then_some(cease),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &str = "anypop shutting down";

    #[test]
    fn withdraw_mode_withdraws_then_ceases() {
        for n_bit in [false, true] {
            let p = on_shutdown(ShutdownMode::Withdraw, true, n_bit, MSG);
            assert!(p.withdraw_all);
            let n = p.notification.unwrap();
            assert_eq!((n.code, n.subcode), (6, 2));
            assert_eq!(n.shutdown_message().as_deref(), Some(MSG));
        }
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
}
