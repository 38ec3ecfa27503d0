use super::*;
use proptest::prelude::*;

const LOCAL: u32 = 0x1111;
const REMOTE: u32 = 0x2222;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn params(tx: u64, rx: u64, mult: u8) -> Params {
    Params {
        min_tx: ms(tx),
        min_rx: ms(rx),
        multiplier: mult,
    }
}

/// A packet from the peer (FRR-like: 300 ms / 300 ms / 3 once Up).
fn peer(state: State, your: u32) -> Control {
    Control {
        diag: Diag::None,
        state,
        poll: false,
        final_: false,
        cpi: false,
        demand: false,
        detect_mult: 3,
        my_discr: REMOTE,
        your_discr: your,
        desired_min_tx_us: 300_000,
        required_min_rx_us: 300_000,
        required_min_echo_rx_us: 0,
    }
}

fn sent(a: &[Action]) -> Vec<Control> {
    a.iter()
        .filter_map(|x| match x {
            Action::Send(c) => Some(*c),
            _ => None,
        })
        .collect()
}

fn changes(a: &[Action]) -> Vec<(State, State, Diag)> {
    a.iter()
        .filter_map(|x| match x {
            Action::StateChanged { from, to, diag } => Some((*from, *to, *diag)),
            _ => None,
        })
        .collect()
}

/// A session brought Up by the three-way handshake; returns it and the clock.
fn up() -> (Fsm, Instant) {
    let t = Instant::now();
    let mut f = Fsm::new(params(100, 100, 3), LOCAL, 7, t);
    let first = sent(&f.handle(Event::Tick, t));
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].state, State::Down);
    assert_eq!(first[0].your_discr, 0);
    assert_eq!(first[0].desired_min_tx_us, 1_000_000, "slow start");
    assert_eq!(first[0].required_min_rx_us, 100_000);
    let a = f.handle(Event::Received(peer(State::Down, 0)), t);
    assert_eq!(changes(&a), vec![(State::Down, State::Init, Diag::None)]);
    assert_eq!(sent(&a)[0].your_discr, REMOTE);
    let a = f.handle(Event::Received(peer(State::Up, LOCAL)), t);
    assert_eq!(changes(&a), vec![(State::Init, State::Up, Diag::None)]);
    let p = sent(&a)[0];
    assert!(p.poll, "leaving slow start starts a Poll Sequence");
    assert_eq!(p.desired_min_tx_us, 100_000);
    assert_eq!(f.state(), State::Up);
    (f, t)
}

#[test]
fn three_way_handshake_and_down_init_up() {
    up();
    // Down + received Init goes straight to Up.
    let t = Instant::now();
    let mut f = Fsm::new(Params::DEFAULT, LOCAL, 1, t);
    let a = f.handle(Event::Received(peer(State::Init, LOCAL)), t);
    assert_eq!(changes(&a), vec![(State::Down, State::Up, Diag::None)]);
    // Init + received Down stays Init; Up + received Init/Up stays Up.
    let mut f = Fsm::new(Params::DEFAULT, LOCAL, 1, t);
    f.handle(Event::Received(peer(State::Down, 0)), t);
    assert!(changes(&f.handle(Event::Received(peer(State::Down, LOCAL)), t)).is_empty());
    assert_eq!(f.state(), State::Init);
}

#[test]
fn poll_final_moves_to_the_fast_interval() {
    let (mut f, t) = up();
    // The peer wants 300 ms: the interval is max(our 100 ms, its 300 ms).
    assert_eq!(f.tx_interval(), Some(ms(300)));
    // Our poll stays on periodic packets until the Final.
    let t1 = f.next_deadline().unwrap();
    let p = sent(&f.handle(Event::Tick, t1));
    assert!(p[0].poll);
    let mut fin = peer(State::Up, LOCAL);
    fin.final_ = true;
    fin.desired_min_tx_us = 100_000;
    fin.required_min_rx_us = 100_000;
    assert!(sent(&f.handle(Event::Received(fin), t1)).is_empty());
    assert_eq!(f.tx_interval(), Some(ms(100)));
    let t2 = f.next_deadline().unwrap();
    let p = sent(&f.handle(Event::Tick, t2));
    assert!(!p[0].poll && !p[0].final_);
    // Detection: 3 × max(100, 100) ms.
    assert_eq!(f.detection_time(), Some(ms(300)));
    let _ = t;
}

#[test]
fn answers_a_poll_at_once_with_final_and_no_poll() {
    let (mut f, t) = up();
    let mut p = peer(State::Up, LOCAL);
    p.poll = true;
    let a = sent(&f.handle(Event::Received(p), t + ms(10)));
    assert_eq!(a.len(), 1);
    assert!(a[0].final_ && !a[0].poll, "{a:?}");
}

#[test]
fn detection_time_expiry_takes_the_session_down_and_blocks_the_client() {
    let (mut f, t) = up();
    let t1 = t + ms(50);
    f.handle(Event::Received(peer(State::Up, LOCAL)), t1);
    // 3 × max(our 100 ms, its 300 ms) = 900 ms.
    assert_eq!(f.detection_time(), Some(ms(900)));
    let mut now = t1;
    // Ticks before the deadline keep it Up.
    while now < t1 + ms(899) {
        now = f.next_deadline().unwrap().min(t1 + ms(899));
        f.handle(Event::Tick, now);
        assert_eq!(f.state(), State::Up);
    }
    let a = f.handle(Event::Tick, t1 + ms(900));
    assert_eq!(
        changes(&a),
        vec![(State::Up, State::Down, Diag::ControlDetectionTimeExpired)]
    );
    assert!(f.blocks_client());
    assert_eq!(f.failures(), 1);
    assert_eq!(
        f.remote_discr(),
        0,
        "§6.8.1: forgotten after a Detection Time"
    );
    let s = f.status(t1 + ms(900));
    assert_eq!(s.local_diag, Diag::ControlDetectionTimeExpired);
    // Back to slow start while Down.
    let d = f.next_deadline().unwrap();
    let p = sent(&f.handle(Event::Tick, d));
    assert_eq!(p[0].desired_min_tx_us, 1_000_000);
    assert_eq!(p[0].state, State::Down);
    assert_eq!(p[0].diag, Diag::ControlDetectionTimeExpired);
    // It comes back (first failure: no hold) and unblocks.
    f.handle(Event::Received(peer(State::Down, 0)), d);
    f.handle(Event::Received(peer(State::Up, LOCAL)), d);
    assert_eq!(f.state(), State::Up);
    assert!(!f.blocks_client());
}

#[test]
fn neighbor_down_is_a_failure_neighbor_admin_down_is_not() {
    let (mut f, t) = up();
    let mut p = peer(State::Down, LOCAL);
    p.diag = Diag::ControlDetectionTimeExpired;
    let a = f.handle(Event::Received(p), t);
    assert_eq!(
        changes(&a),
        vec![(State::Up, State::Down, Diag::NeighborSignaledSessionDown)]
    );
    assert!(f.blocks_client());
    assert_eq!(f.status(t).remote_diag, Diag::ControlDetectionTimeExpired);

    let (mut f, t) = up();
    let mut p = peer(State::AdminDown, LOCAL);
    p.diag = Diag::AdministrativelyDown;
    let a = f.handle(Event::Received(p), t);
    assert_eq!(
        changes(&a),
        vec![(State::Up, State::Down, Diag::NeighborSignaledSessionDown)]
    );
    assert!(!f.blocks_client(), "RFC 5882 §3.2: not a path failure");
    assert_eq!(f.failures(), 0);
    // AdminDown also unblocks a client held after an earlier failure.
    let (mut f, t) = up();
    f.handle(Event::Received(peer(State::Down, LOCAL)), t);
    assert!(f.blocks_client());
    f.handle(Event::Received(peer(State::AdminDown, 0)), t);
    assert!(!f.blocks_client());
}

#[test]
fn session_checks_on_discriminators() {
    let (mut f, t) = up();
    let before = f.status(t).discarded;
    let a = f.handle(Event::Received(peer(State::Down, LOCAL + 1)), t);
    assert!(a.is_empty());
    let a = f.handle(Event::Received(peer(State::Up, 0)), t);
    assert!(a.is_empty());
    let a = f.handle(Event::Received(peer(State::Init, 0)), t);
    assert!(a.is_empty());
    assert_eq!(f.state(), State::Up);
    assert_eq!(f.status(t).discarded, before + 3);
}

#[test]
fn local_admin_down_and_up() {
    let (mut f, t) = up();
    let a = f.handle(Event::AdminDown, t);
    assert_eq!(
        changes(&a),
        vec![(State::Up, State::AdminDown, Diag::AdministrativelyDown)]
    );
    let p = sent(&a)[0];
    assert_eq!(
        (p.state, p.diag),
        (State::AdminDown, Diag::AdministrativelyDown)
    );
    assert!(!f.blocks_client());
    // Packets are ignored, and no detection timer runs.
    assert!(changes(&f.handle(Event::Received(peer(State::Down, 0)), t)).is_empty());
    assert_eq!(f.state(), State::AdminDown);
    for _ in 0..10 {
        let d = f.next_deadline().unwrap();
        let a = f.handle(Event::Tick, d);
        assert!(sent(&a).iter().all(|p| p.state == State::AdminDown));
        assert_eq!(f.state(), State::AdminDown);
    }
    let a = f.handle(Event::AdminUp, t);
    assert_eq!(
        changes(&a),
        vec![(State::AdminDown, State::Down, Diag::None)]
    );
}

#[test]
fn jitter_stays_within_75_to_100_percent_and_90_with_multiplier_1() {
    for (mult, lo, hi) in [(3u8, 750u64, 1000u64), (1, 750, 900)] {
        let t = Instant::now();
        let mut f = Fsm::new(params(1000, 1000, mult), LOCAL, 42, t);
        let mut now = t;
        f.handle(Event::Tick, now);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..500 {
            let d = f.next_deadline().unwrap();
            let gap = (d - now).as_millis() as u64;
            assert!((lo..=hi).contains(&gap), "mult {mult}: {gap} ms");
            seen.insert(gap);
            now = d;
            f.handle(Event::Tick, now);
        }
        assert!(seen.len() > 20, "jitter varies: {seen:?}");
    }
}

#[test]
fn zero_remote_min_rx_stops_periodic_packets_but_polls_are_answered() {
    let (mut f, t) = up();
    let mut p = peer(State::Up, LOCAL);
    p.required_min_rx_us = 0;
    f.handle(Event::Received(p), t);
    assert_eq!(f.tx_interval(), None);
    let mut now = t;
    for _ in 0..5 {
        now = f.next_deadline().unwrap().min(now + ms(500));
        let a = f.handle(Event::Tick, now);
        assert!(sent(&a).is_empty(), "{a:?}");
        f.handle(Event::Received(p), now);
    }
    p.poll = true;
    let a = sent(&f.handle(Event::Received(p), now));
    assert!(a.len() == 1 && a[0].final_);
}

#[test]
fn remote_demand_mode_stops_periodic_packets_while_both_up() {
    let (mut f, t) = up();
    let mut p = peer(State::Up, LOCAL);
    p.demand = true;
    f.handle(Event::Received(p), t);
    assert_eq!(f.tx_interval(), None);
    p.demand = false;
    f.handle(Event::Received(p), t);
    assert!(f.tx_interval().is_some());
}

#[test]
fn timer_changes_while_up_wait_for_the_final() {
    let (mut f, t) = up();
    let mut fin = peer(State::Up, LOCAL);
    fin.final_ = true;
    fin.desired_min_tx_us = 50_000;
    fin.required_min_rx_us = 50_000;
    f.handle(Event::Received(fin), t);
    assert_eq!(f.tx_interval(), Some(ms(100)));
    assert_eq!(f.detection_time(), Some(ms(300)));
    // Slower TX, faster RX: both wait for the Final.
    let a = f.handle(Event::SetParams(params(500, 20, 3)), t);
    let p = sent(&a);
    assert!(p[0].poll);
    assert_eq!(
        (p[0].desired_min_tx_us, p[0].required_min_rx_us),
        (500_000, 20_000)
    );
    assert_eq!(f.tx_interval(), Some(ms(100)), "old TX until the Final");
    assert_eq!(f.detection_time(), Some(ms(300)), "old RX until the Final");
    let mut plain = fin;
    plain.final_ = false;
    f.handle(Event::Received(plain), t);
    assert_eq!(f.tx_interval(), Some(ms(100)));
    f.handle(Event::Received(fin), t);
    assert_eq!(f.tx_interval(), Some(ms(500)));
    assert_eq!(f.detection_time(), Some(ms(150)));
    // Unchanged parameters: nothing to do.
    assert!(f.handle(Event::SetParams(params(500, 20, 3)), t).is_empty());
}

#[test]
fn repeated_failures_hold_the_session_down() {
    let (mut f, mut now) = up();
    let mut holds = Vec::new();
    for round in 0..4 {
        // The peer says Down: a failure.
        f.handle(Event::Received(peer(State::Down, LOCAL)), now);
        assert_eq!(f.state(), State::Down);
        let held = f.status(now).held_for;
        holds.push(held);
        if let Some(h) = held {
            // While held, the peer's Down and Init do not bring it up.
            for s in [State::Down, State::Init] {
                f.handle(Event::Received(peer(s, LOCAL)), now + h - ms(1));
                assert_eq!(f.state(), State::Down, "round {round}");
            }
            assert!(f.blocks_client());
            now += h;
        }
        f.handle(Event::Received(peer(State::Init, LOCAL)), now);
        assert_eq!(f.state(), State::Up, "round {round}");
        now += ms(100);
    }
    assert_eq!(
        holds,
        vec![None, Some(ms(2000)), Some(ms(4000)), Some(ms(8000))]
    );
}

// ---- property test: random packet and timer sequences ----

#[derive(Debug, Clone)]
enum Step {
    Packet(Control),
    Advance(u64),
    AdminDown,
    AdminUp,
    Params(Params),
}

fn arb_state() -> impl Strategy<Value = State> {
    prop_oneof![
        Just(State::AdminDown),
        Just(State::Down),
        Just(State::Init),
        Just(State::Up)
    ]
}

fn arb_step() -> impl Strategy<Value = Step> {
    let packet = (
        arb_state(),
        any::<[bool; 3]>(),
        1u8..=5,
        prop_oneof![Just(0u32), Just(LOCAL), Just(LOCAL + 1)],
        prop_oneof![Just(0u32), 1u32..2_000_000, Just(u32::MAX)],
        prop_oneof![Just(0u32), 1u32..2_000_000, Just(u32::MAX)],
    )
        .prop_map(|(state, [p, fin, d], mult, your, tx, rx)| {
            let mut c = peer(state, your);
            c.poll = p && !fin;
            c.final_ = fin;
            c.demand = d;
            c.detect_mult = mult;
            c.desired_min_tx_us = tx;
            c.required_min_rx_us = rx;
            c
        });
    prop_oneof![
        6 => packet.prop_map(Step::Packet),
        4 => (0u64..3_000).prop_map(Step::Advance),
        1 => Just(Step::AdminDown),
        1 => Just(Step::AdminUp),
        1 => (1u64..2_000, 1u64..2_000, 1u8..=10).prop_map(|(a, b, m)| Step::Params(params(a, b, m))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn random_sequences_keep_the_invariants(steps in proptest::collection::vec(arb_step(), 1..200)) {
        let t0 = Instant::now();
        let mut f = Fsm::new(params(100, 100, 3), LOCAL, 9, t0);
        let mut now = t0;
        let mut admin = false;
        for step in steps {
            let held_before = f.damp.held(now);
            let (acts, polled) = match step {
                Step::Packet(c) => {
                    let accepted = (c.your_discr == 0 || c.your_discr == LOCAL)
                        && (c.your_discr != 0 || matches!(c.state, State::Down | State::AdminDown))
                        && f.state() != State::AdminDown;
                    (f.handle(Event::Received(c), now), accepted && c.poll)
                }
                Step::Advance(ms_) => {
                    now += ms(ms_);
                    let a = f.handle(Event::Tick, now);
                    if let Some(d) = f.next_deadline() {
                        prop_assert!(d > now, "a deadline at or before now after a Tick");
                    }
                    (a, false)
                }
                Step::AdminDown => { admin = true; (f.handle(Event::AdminDown, now), false) }
                Step::AdminUp => { admin = false; (f.handle(Event::AdminUp, now), false) }
                Step::Params(p) => (f.handle(Event::SetParams(p), now), false),
            };
            for a in &acts {
                match a {
                    Action::Send(c) => {
                        prop_assert_eq!(Control::decode(&c.encode()), Ok(*c));
                        prop_assert_eq!(c.my_discr, LOCAL);
                        prop_assert!(!c.cpi);
                        prop_assert_eq!(c.state, f.state());
                        if c.state != State::Up {
                            prop_assert!(c.desired_min_tx_us >= 1_000_000, "slow start: {:?}", c);
                        }
                    }
                    Action::StateChanged { from, to, .. } => {
                        prop_assert_ne!(from, to);
                        if *from == State::Down && matches!(to, State::Init | State::Up) {
                            prop_assert!(!held_before, "came up while held");
                        }
                    }
                }
            }
            if polled {
                prop_assert!(sent(&acts).iter().any(|c| c.final_ && !c.poll), "Poll unanswered");
            }
            prop_assert_eq!(f.state() == State::AdminDown, admin);
            prop_assert!(!(f.blocks_client() && f.state() == State::Up));
            prop_assert!(f.next_deadline().is_some());
        }
    }
}
