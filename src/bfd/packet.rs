//! BFD Control packets (RFC 5880 §4.1): the 24-byte mandatory section,
//! encoded and decoded with the reception checks of RFC 5880 §6.8.6 that do
//! not depend on a session (version, length, detect multiplier, multipoint
//! bit, my discriminator, Poll and Final together).
//!
//! It must not know about sessions, sockets or time: the discriminator
//! checks that need a session live in [`super::fsm`]. Authentication is not
//! supported; a packet with the A bit set is rejected here, which is what
//! §6.8.6 demands of a session without authentication.

use std::fmt;

/// UDP destination port of single-hop BFD Control packets (RFC 5881 §4).
pub const PORT: u16 = 3784;
/// Source ports must come from this range (RFC 5881 §4).
pub const SOURCE_PORTS: std::ops::RangeInclusive<u16> = 49152..=65535;
/// Length of the mandatory section, the only one we send.
pub const LEN: usize = 24;
/// Version number of RFC 5880.
pub const VERSION: u8 = 1;

/// Session state as carried in the Sta field (RFC 5880 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum State {
    AdminDown,
    Down,
    Init,
    Up,
}

impl State {
    fn from_bits(b: u8) -> State {
        match b & 3 {
            0 => State::AdminDown,
            1 => State::Down,
            2 => State::Init,
            _ => State::Up,
        }
    }

    fn bits(self) -> u8 {
        match self {
            State::AdminDown => 0,
            State::Down => 1,
            State::Init => 2,
            State::Up => 3,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::AdminDown => "admin_down",
            State::Down => "down",
            State::Init => "init",
            State::Up => "up",
        })
    }
}

/// Diagnostic code (RFC 5880 §4.1): why the sender's session last left Up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Diag {
    None,
    ControlDetectionTimeExpired,
    EchoFunctionFailed,
    NeighborSignaledSessionDown,
    ForwardingPlaneReset,
    PathDown,
    ConcatenatedPathDown,
    AdministrativelyDown,
    ReverseConcatenatedPathDown,
    /// 9–31, reserved: kept as received, never rejected.
    Reserved(u8),
}

impl Diag {
    pub fn from_code(c: u8) -> Diag {
        match c & 0x1f {
            0 => Diag::None,
            1 => Diag::ControlDetectionTimeExpired,
            2 => Diag::EchoFunctionFailed,
            3 => Diag::NeighborSignaledSessionDown,
            4 => Diag::ForwardingPlaneReset,
            5 => Diag::PathDown,
            6 => Diag::ConcatenatedPathDown,
            7 => Diag::AdministrativelyDown,
            8 => Diag::ReverseConcatenatedPathDown,
            n => Diag::Reserved(n),
        }
    }

    pub fn code(self) -> u8 {
        match self {
            Diag::None => 0,
            Diag::ControlDetectionTimeExpired => 1,
            Diag::EchoFunctionFailed => 2,
            Diag::NeighborSignaledSessionDown => 3,
            Diag::ForwardingPlaneReset => 4,
            Diag::PathDown => 5,
            Diag::ConcatenatedPathDown => 6,
            Diag::AdministrativelyDown => 7,
            Diag::ReverseConcatenatedPathDown => 8,
            Diag::Reserved(n) => n & 0x1f,
        }
    }
}

impl fmt::Display for Diag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Diag::None => f.write_str("none"),
            Diag::ControlDetectionTimeExpired => f.write_str("control detection time expired"),
            Diag::EchoFunctionFailed => f.write_str("echo function failed"),
            Diag::NeighborSignaledSessionDown => f.write_str("neighbor signaled session down"),
            Diag::ForwardingPlaneReset => f.write_str("forwarding plane reset"),
            Diag::PathDown => f.write_str("path down"),
            Diag::ConcatenatedPathDown => f.write_str("concatenated path down"),
            Diag::AdministrativelyDown => f.write_str("administratively down"),
            Diag::ReverseConcatenatedPathDown => f.write_str("reverse concatenated path down"),
            Diag::Reserved(n) => write!(f, "reserved diagnostic {n}"),
        }
    }
}

/// The mandatory section of a BFD Control packet. Intervals are in
/// microseconds, as on the wire. The Authentication Present and Multipoint
/// bits are not fields: we never send them and reject them on receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Control {
    pub diag: Diag,
    pub state: State,
    pub poll: bool,
    pub final_: bool,
    /// Control Plane Independent (C bit).
    pub cpi: bool,
    /// Demand mode (D bit).
    pub demand: bool,
    pub detect_mult: u8,
    pub my_discr: u32,
    pub your_discr: u32,
    pub desired_min_tx_us: u32,
    pub required_min_rx_us: u32,
    pub required_min_echo_rx_us: u32,
}

/// Why a received packet was discarded (RFC 5880 §6.8.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("packet of {0} bytes is shorter than the 24-byte mandatory section")]
    Truncated(usize),
    #[error("version {0}, expected 1")]
    Version(u8),
    #[error("length field {field} is invalid (minimum {min}, payload {payload} bytes)")]
    Length { field: u8, min: u8, payload: usize },
    #[error("authentication present, but no authentication is configured")]
    Authentication,
    #[error("multipoint bit set")]
    Multipoint,
    #[error("detect multiplier is zero")]
    ZeroDetectMult,
    #[error("my discriminator is zero")]
    ZeroMyDiscriminator,
    #[error("poll and final bits both set")]
    PollAndFinal,
}

const F_POLL: u8 = 0x20;
const F_FINAL: u8 = 0x10;
const F_CPI: u8 = 0x08;
const F_AUTH: u8 = 0x04;
const F_DEMAND: u8 = 0x02;
const F_MULTIPOINT: u8 = 0x01;

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl Control {
    /// Encodes the 24-byte mandatory section (version 1, no authentication).
    pub fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0] = (VERSION << 5) | self.diag.code();
        let mut flags = self.state.bits() << 6;
        for (on, bit) in [
            (self.poll, F_POLL),
            (self.final_, F_FINAL),
            (self.cpi, F_CPI),
            (self.demand, F_DEMAND),
        ] {
            if on {
                flags |= bit;
            }
        }
        b[1] = flags;
        b[2] = self.detect_mult;
        b[3] = LEN as u8;
        for (i, v) in [
            self.my_discr,
            self.your_discr,
            self.desired_min_tx_us,
            self.required_min_rx_us,
            self.required_min_echo_rx_us,
        ]
        .into_iter()
        .enumerate()
        {
            b[4 + 4 * i..8 + 4 * i].copy_from_slice(&v.to_be_bytes());
        }
        b
    }

    /// Decodes a UDP payload with the session-independent checks of RFC
    /// 5880 §6.8.6. Bytes beyond the Length field are ignored.
    pub fn decode(b: &[u8]) -> Result<Control, DecodeError> {
        if b.len() < LEN {
            return Err(DecodeError::Truncated(b.len()));
        }
        let version = b[0] >> 5;
        if version != VERSION {
            return Err(DecodeError::Version(version));
        }
        let flags = b[1];
        let auth = flags & F_AUTH != 0;
        let length = b[3];
        let min = if auth { LEN as u8 + 2 } else { LEN as u8 };
        if length < min || usize::from(length) > b.len() {
            return Err(DecodeError::Length {
                field: length,
                min,
                payload: b.len(),
            });
        }
        if auth {
            return Err(DecodeError::Authentication);
        }
        if b[2] == 0 {
            return Err(DecodeError::ZeroDetectMult);
        }
        if flags & F_MULTIPOINT != 0 {
            return Err(DecodeError::Multipoint);
        }
        let my_discr = be32(b, 4);
        if my_discr == 0 {
            return Err(DecodeError::ZeroMyDiscriminator);
        }
        if flags & F_POLL != 0 && flags & F_FINAL != 0 {
            return Err(DecodeError::PollAndFinal);
        }
        Ok(Control {
            diag: Diag::from_code(b[0]),
            state: State::from_bits(flags >> 6),
            poll: flags & F_POLL != 0,
            final_: flags & F_FINAL != 0,
            cpi: flags & F_CPI != 0,
            demand: flags & F_DEMAND != 0,
            detect_mult: b[2],
            my_discr,
            your_discr: be32(b, 8),
            desired_min_tx_us: be32(b, 12),
            required_min_rx_us: be32(b, 16),
            required_min_echo_rx_us: be32(b, 20),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Control {
        Control {
            diag: Diag::ControlDetectionTimeExpired,
            state: State::Up,
            poll: true,
            final_: false,
            cpi: false,
            demand: false,
            detect_mult: 3,
            my_discr: 0x0102_0304,
            your_discr: 0x0a0b_0c0d,
            desired_min_tx_us: 100_000,
            required_min_rx_us: 300_000,
            required_min_echo_rx_us: 0,
        }
    }

    #[test]
    fn encodes_the_rfc_layout() {
        let b = sample().encode();
        assert_eq!(
            b,
            [
                0x21, 0xe0, 3, 24, 1, 2, 3, 4, 0x0a, 0x0b, 0x0c, 0x0d, 0, 1, 0x86, 0xa0, 0, 4,
                0x93, 0xe0, 0, 0, 0, 0
            ]
        );
        assert_eq!(Control::decode(&b), Ok(sample()));
    }

    /// A packet FRR 8.4.4 bfdd sent while Down (captured with tcpdump in
    /// a lab namespace): version 1, diag 0, state Down, mult 3, my
    /// discriminator set, your discriminator 0, 1 s / 1 s / 50 ms echo.
    #[test]
    fn decodes_an_frr_down_packet() {
        let b = [
            0x20, 0x40, 0x03, 0x18, 0x33, 0xb4, 0xf0, 0x30, 0, 0, 0, 0, 0x00, 0x0f, 0x42, 0x40,
            0x00, 0x0f, 0x42, 0x40, 0x00, 0x00, 0xc3, 0x50,
        ];
        let c = Control::decode(&b).unwrap();
        assert_eq!(c.state, State::Down);
        assert_eq!(c.diag, Diag::None);
        assert_eq!((c.detect_mult, c.your_discr), (3, 0));
        assert_eq!(c.my_discr, 0x33b4_f030);
        assert_eq!(
            (
                c.desired_min_tx_us,
                c.required_min_rx_us,
                c.required_min_echo_rx_us
            ),
            (1_000_000, 1_000_000, 50_000)
        );
        assert!(!c.poll && !c.final_ && !c.cpi && !c.demand);
        assert_eq!(c.encode(), b, "re-encoding gives the same bytes");
    }

    #[test]
    fn every_reception_check_of_6_8_6() {
        let good = sample().encode();
        let bad = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut b = good.to_vec();
            f(&mut b);
            Control::decode(&b)
        };
        assert_eq!(bad(&|b| b.truncate(23)), Err(DecodeError::Truncated(23)));
        assert_eq!(bad(&|b| b[0] = (2 << 5) | 1), Err(DecodeError::Version(2)));
        assert_eq!(bad(&|b| b[0] = 1), Err(DecodeError::Version(0)));
        assert!(matches!(
            bad(&|b| b[3] = 23),
            Err(DecodeError::Length { field: 23, .. })
        ));
        assert!(matches!(
            bad(&|b| b[3] = 25),
            Err(DecodeError::Length { field: 25, .. })
        ));
        // A set with a length that cannot hold the auth section.
        assert!(matches!(
            bad(&|b| b[1] |= F_AUTH),
            Err(DecodeError::Length { min: 26, .. })
        ));
        assert_eq!(
            bad(&|b| {
                b[1] |= F_AUTH;
                b[3] = 28;
                b.extend_from_slice(&[1, 4, 0, 0]);
            }),
            Err(DecodeError::Authentication)
        );
        assert_eq!(bad(&|b| b[2] = 0), Err(DecodeError::ZeroDetectMult));
        assert_eq!(bad(&|b| b[1] |= F_MULTIPOINT), Err(DecodeError::Multipoint));
        assert_eq!(
            bad(&|b| b[4..8].copy_from_slice(&[0; 4])),
            Err(DecodeError::ZeroMyDiscriminator)
        );
        assert_eq!(bad(&|b| b[1] |= F_FINAL), Err(DecodeError::PollAndFinal));
        // Trailing bytes beyond Length are ignored; reserved diagnostics kept.
        let mut b = good.to_vec();
        b.extend_from_slice(&[9, 9]);
        b[0] = 0x20 | 17;
        assert_eq!(Control::decode(&b).unwrap().diag, Diag::Reserved(17));
    }

    fn arb_control() -> impl Strategy<Value = Control> {
        (
            (0u8..32, 0u8..4, any::<[bool; 4]>(), 1u8..=255),
            (
                1u32..,
                any::<u32>(),
                any::<u32>(),
                any::<u32>(),
                any::<u32>(),
            ),
        )
            .prop_map(|((d, s, f, m), (my, your, tx, rx, echo))| Control {
                diag: Diag::from_code(d),
                state: State::from_bits(s),
                poll: f[0] && !f[1],
                final_: f[1],
                cpi: f[2],
                demand: f[3],
                detect_mult: m,
                my_discr: my,
                your_discr: your,
                desired_min_tx_us: tx,
                required_min_rx_us: rx,
                required_min_echo_rx_us: echo,
            })
    }

    proptest! {
        #[test]
        fn round_trip(c in arb_control()) {
            prop_assert_eq!(Control::decode(&c.encode()), Ok(c));
        }

        #[test]
        fn random_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(c) = Control::decode(&b) {
                prop_assert!(c.detect_mult > 0 && c.my_discr != 0 && !(c.poll && c.final_));
                prop_assert_eq!(b[0] >> 5, VERSION);
            }
        }
    }
}
