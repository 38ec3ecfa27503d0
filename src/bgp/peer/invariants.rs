//! The peer driver's invariants, checked after every input: by the
//! property test of [`super`] and by the `bgp_peer` fuzz target (`fuzz/`).
//! Compiled for tests and fuzzing only.
//!
//! - it only refers to connections it was given and has not closed, and
//!   closes each at most once;
//! - it keeps at most one connection for the session plus one held; an
//!   established session has its connection and none held;
//! - never Established without our OPEN sent, and the peer's OPEN then a
//!   KEEPALIVE received, on the session's connection;
//! - an established session with a non-zero hold time has its hold timer
//!   armed;
//! - `Done` comes once, only after a stop or shutdown, with every
//!   connection closed, and nothing follows it.
//!
//! It feeds inputs the way the socket task does (a connection id is never
//! handed out twice, nothing is fed after `Done`) and must not decide what
//! to feed.

use tokio::time::Instant;

use super::{ConnId, Input, Message, Output, Peer, State};
use crate::bgp::codec::Received;

/// What one connection has seen of the OPEN exchange.
#[derive(Debug, Default, Clone, Copy)]
struct Exchange {
    open_sent: bool,
    open_received: bool,
    keepalive_after_open: bool,
}

/// Feeds inputs to a [`Peer`] and checks every invariant after each one.
#[derive(Debug, Default)]
pub struct Checker {
    /// Connections the driver was given and has not closed.
    open_conns: Vec<ConnId>,
    /// Every connection id handed out.
    given: Vec<ConnId>,
    exchanges: Vec<(ConnId, Exchange)>,
    stopped: bool,
    done: bool,
}

impl Checker {
    pub fn new() -> Checker {
        Checker::default()
    }

    /// Whether `Output::Done` came.
    pub fn done(&self) -> bool {
        self.done
    }

    fn exchange(&mut self, c: ConnId) -> &mut Exchange {
        let i = match self.exchanges.iter().position(|(id, _)| *id == c) {
            Some(i) => i,
            None => {
                self.exchanges.push((c, Exchange::default()));
                self.exchanges.len() - 1
            }
        };
        &mut self.exchanges[i].1
    }

    /// Feeds `input` at `now` and checks the invariants. `Ok(None)`: the
    /// socket task would not feed it (a connection id handed out before,
    /// or the driver is done); `Err`: the violation in words.
    pub fn handle(
        &mut self,
        p: &mut Peer,
        input: Input,
        now: Instant,
    ) -> Result<Option<Vec<Output>>, String> {
        if self.done {
            return Ok(None);
        }
        match &input {
            Input::Dialed { conn, .. } | Input::Accepted { conn, .. } => {
                if self.given.contains(conn) {
                    return Ok(None);
                }
                self.given.push(*conn);
                self.open_conns.push(*conn);
            }
            Input::Message(c, Received::Open(_)) => self.exchange(*c).open_received = true,
            Input::Message(c, Received::Keepalive) => {
                let e = self.exchange(*c);
                e.keepalive_after_open |= e.open_received;
            }
            Input::Stop { .. } | Input::Shutdown { .. } => self.stopped = true,
            _ => {}
        }
        let outs = p.handle(input.clone(), now);
        self.check(p, &outs)
            .map_err(|e| format!("{e}, after {input:?}: {outs:?}"))?;
        Ok(Some(outs))
    }

    fn check(&mut self, p: &Peer, outs: &[Output]) -> Result<(), String> {
        for o in outs {
            if self.done {
                return Err(format!("output after Done: {o:?}"));
            }
            match o {
                Output::Send(c, _) | Output::HalfClose(c) if !self.open_conns.contains(c) => {
                    return Err(format!("{o:?} on a connection not open"));
                }
                Output::Send(c, Message::Open(_)) => self.exchange(*c).open_sent = true,
                Output::Close(c) => {
                    if !self.open_conns.contains(c) {
                        return Err(format!("closed twice or unknown: {c:?}"));
                    }
                    self.open_conns.retain(|x| x != c);
                }
                Output::Done => {
                    if !self.stopped {
                        return Err("Done without a stop".into());
                    }
                    self.done = true;
                }
                _ => {}
            }
        }
        let in_use = usize::from(p.conn.is_some()) + usize::from(p.held.is_some());
        if in_use > 2 {
            return Err(format!("{in_use} connections in use"));
        }
        if p.state() == State::Established {
            let (Some(link), None) = (p.conn, p.held) else {
                return Err(format!(
                    "established with connection {:?} and held {:?}",
                    p.conn, p.held
                ));
            };
            let e = *self.exchange(link.id);
            if !(e.open_sent && e.open_received && e.keepalive_after_open) {
                return Err(format!(
                    "established on {} without an OPEN exchange: {e:?}",
                    link.id
                ));
            }
            let Some(n) = p.negotiated() else {
                return Err("established without a negotiated session".into());
            };
            if n.hold_time > 0 && p.fsm.timers().hold.is_none() {
                return Err(format!("hold time {} but no hold timer", n.hold_time));
            }
        }
        if self.done && !self.open_conns.is_empty() {
            return Err(format!("done with open connections {:?}", self.open_conns));
        }
        Ok(())
    }
}
