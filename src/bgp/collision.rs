//! RFC 4271 §6.8 connection collision resolution, as pure decisions: when
//! both sides dial, or the peer dials while our session is being set up,
//! which TCP connection carries the session and which one is closed.
//!
//! The FSM ([`super::fsm`]) runs on one connection; the peer driver
//! ([`super::peer`]) asks these functions what to do with a second one
//! before anything reaches the FSM. A connection that loses is sent
//! Cease / Connection Collision Resolution (6/7) and closed.
//!
//! Pure: no I/O, no clock, no connection handles — only states, origins
//! and BGP identifiers.

use std::net::Ipv4Addr;

use super::fsm::State;

/// Which side opened a TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// We dialed the peer.
    Outgoing,
    /// The peer dialed us (accepted by the listener).
    Incoming,
}

/// What to do with a connection the listener accepted from the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnAccept {
    /// No connection in use: run the session on it (abandoning a dial in
    /// progress).
    Adopt,
    /// Keep the current connection; send Cease 6/7 on the new one and
    /// close it.
    Reject,
    /// Our OPEN is out on the connection we dialed but the peer's BGP
    /// identifier is not known yet: set the new connection aside until its
    /// OPEN arrives, then [`on_held_open`] decides. A connection already set
    /// aside is rejected.
    Hold,
    /// Close the current connection with Cease 6/7 and run the session on
    /// the new one.
    Replace,
}

/// What to do with the accepted connection set aside by [`OnAccept::Hold`]
/// once its OPEN arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnHeldOpen {
    /// Our connection wins: reject the held one (Cease 6/7).
    KeepCurrent,
    /// The held connection wins: close the current one with Cease 6/7, run
    /// the session on the held one and feed it the OPEN it carried.
    SwitchToHeld,
}

/// Whether the connection *we* initiated survives a collision: our BGP
/// identifier is the higher one (RFC 4271 §6.8, compared as unsigned
/// 32-bit integers).
pub fn keep_local_initiated(local_id: Ipv4Addr, remote_id: Ipv4Addr) -> bool {
    u32::from(local_id) > u32::from(remote_id)
}

/// Decides about a newly accepted connection.
///
/// `state` and `running` are the FSM's; `current` is the origin of the
/// connection in use (if any); `peer_id` the peer's BGP identifier when its
/// OPEN was received on the current connection.
pub fn on_accept(
    state: State,
    running: bool,
    current: Option<Origin>,
    peer_id: Option<Ipv4Addr>,
    local_id: Ipv4Addr,
) -> OnAccept {
    if !running {
        // Stopped: no session wanted.
        return OnAccept::Reject;
    }
    match state {
        State::Idle | State::Connect | State::Active => OnAccept::Adopt,
        // An established session wins every collision.
        State::Established => OnAccept::Reject,
        State::OpenConfirm => match (current, peer_id) {
            (Some(Origin::Outgoing), Some(id)) if !keep_local_initiated(local_id, id) => {
                OnAccept::Replace
            }
            _ => OnAccept::Reject,
        },
        State::OpenSent => match current {
            // The identifier comes with the new connection's OPEN.
            Some(Origin::Outgoing) => OnAccept::Hold,
            // The peer dialed again: it gave up on its first connection.
            Some(Origin::Incoming) | None => OnAccept::Replace,
        },
    }
}

/// Decides between the current connection and the held one whose OPEN
/// (from `remote_id`) just arrived.
pub fn on_held_open(
    state: State,
    has_current: bool,
    local_id: Ipv4Addr,
    remote_id: Ipv4Addr,
) -> OnHeldOpen {
    let ours_alive = has_current && matches!(state, State::OpenSent | State::OpenConfirm);
    if ours_alive && keep_local_initiated(local_id, remote_id) {
        OnHeldOpen::KeepCurrent
    } else {
        OnHeldOpen::SwitchToHeld
    }
}

/// Whether a completed dial is used: only when no connection is in use and
/// a session is wanted; otherwise it is closed without a word (the peer
/// has not sent anything on it).
pub fn use_dialed(running: bool, has_current: bool) -> bool {
    running && !has_current
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOW: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const HIGH: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    #[test]
    fn higher_identifier_keeps_its_connection() {
        assert!(keep_local_initiated(HIGH, LOW));
        assert!(!keep_local_initiated(LOW, HIGH));
        assert!(!keep_local_initiated(LOW, LOW));
        // Compared as integers, not per octet strings.
        assert!(keep_local_initiated(
            Ipv4Addr::new(10, 0, 0, 200),
            Ipv4Addr::new(10, 0, 0, 30)
        ));
    }

    #[test]
    fn accept_without_a_connection_adopts() {
        for s in [State::Idle, State::Connect, State::Active] {
            assert_eq!(on_accept(s, true, None, None, LOW), OnAccept::Adopt);
        }
    }

    #[test]
    fn accept_when_stopped_or_established_rejects() {
        assert_eq!(
            on_accept(State::Idle, false, None, None, LOW),
            OnAccept::Reject
        );
        for origin in [Origin::Outgoing, Origin::Incoming] {
            assert_eq!(
                on_accept(State::Established, true, Some(origin), Some(HIGH), LOW),
                OnAccept::Reject
            );
        }
    }

    #[test]
    fn accept_in_openconfirm_by_identifier() {
        // We dialed, the peer's identifier is higher: its connection wins.
        assert_eq!(
            on_accept(
                State::OpenConfirm,
                true,
                Some(Origin::Outgoing),
                Some(HIGH),
                LOW
            ),
            OnAccept::Replace
        );
        // Ours is higher: keep ours.
        assert_eq!(
            on_accept(
                State::OpenConfirm,
                true,
                Some(Origin::Outgoing),
                Some(LOW),
                HIGH
            ),
            OnAccept::Reject
        );
        // The current one is already the peer's: a third one loses.
        assert_eq!(
            on_accept(
                State::OpenConfirm,
                true,
                Some(Origin::Incoming),
                Some(HIGH),
                LOW
            ),
            OnAccept::Reject
        );
    }

    #[test]
    fn accept_in_opensent_holds_or_replaces() {
        assert_eq!(
            on_accept(State::OpenSent, true, Some(Origin::Outgoing), None, LOW),
            OnAccept::Hold
        );
        assert_eq!(
            on_accept(State::OpenSent, true, Some(Origin::Incoming), None, LOW),
            OnAccept::Replace
        );
    }

    #[test]
    fn held_open_by_identifier() {
        for s in [State::OpenSent, State::OpenConfirm] {
            assert_eq!(on_held_open(s, true, HIGH, LOW), OnHeldOpen::KeepCurrent);
            assert_eq!(on_held_open(s, true, LOW, HIGH), OnHeldOpen::SwitchToHeld);
        }
        // Our connection is gone (or never got anywhere): take the held one.
        assert_eq!(
            on_held_open(State::OpenSent, false, HIGH, LOW),
            OnHeldOpen::SwitchToHeld
        );
        assert_eq!(
            on_held_open(State::Idle, true, HIGH, LOW),
            OnHeldOpen::SwitchToHeld
        );
    }

    #[test]
    fn a_dial_is_used_only_without_a_connection() {
        assert!(use_dialed(true, false));
        assert!(!use_dialed(true, true));
        assert!(!use_dialed(false, false));
    }
}
